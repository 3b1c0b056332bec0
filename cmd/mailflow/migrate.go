package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/migrate"
)

const migrateHelp = `Usage: mailflow migrate --from pop3s://USER@HOST[:PORT] --to smtp://[USER@]HOST[:PORT]
                        --rcpt ADDRESS [--password-env VAR | --password-file FILE]
                        [--keep] [--since DATE] [--rate 10/s] [--dry-run]
       mailflow migrate --from imaps://USER@HOST --to imaps://USER@HOST
                        [--folders 'INBOX,Archive/*'] [--folder-map 'Sent=Sent Items']
                        [--to-password-env VAR | --to-password-file FILE] [--dry-run]
                        [--parallel 4] [--max-bytes-per-second N] [--add-message-id]
                        [--delete-source]
       mailflow migrate -c FILE
       mailflow migrate --batch MAILBOXES.csv [--parallel 4] [--max-per-host 2]

Moves every message of a POP3 mailbox to an SMTP server, or of an IMAP
mailbox (every folder, or those --folders names) or a POP3 mailbox into an
IMAP mailbox, byte for byte (Date, Message-ID, every header kept; into IMAP
with its folder, flags and date), with a progress bar. An IMAP source is
left as it is (--delete-source empties it, only after a verification that
found nothing missing). Into IMAP, a message the destination folder holds
already (same Message-ID; without one, same Date, From, Subject and size)
is not copied again, and the run ends with a verification, folder by
folder, that every message of the source is at the destination. It is
resumable: interrupt it (Ctrl-C) or kill it, run the same command again,
and it goes on where it stopped. It ends with a report and exits 1 if
anything is still on the old server to be retried, 3 if all that did not
move was refused by the new server or quarantined ("mailflow quarantine
resend" with the id the report gives).

` + inDoubtNote + `

URLs: pop3:// uses STLS, pop3s:// implicit TLS (port 995); imap:// STARTTLS,
imaps:// implicit TLS (993); smtp:// STARTTLS (port 587), smtps:// implicit
TLS (465). Add ?tls=none only for a server you reach in clear on purpose
(with --allow-plaintext-auth to send a password that way). A user in the
--to URL logs in with AUTH.

What was moved is recorded in --state (by default a directory under
$XDG_STATE_HOME/mailflow/migrate named after --from, --to and --rcpt).
With -c FILE, the inputs of FILE are polled once instead, with the same
progress and report. --report-json FILE also writes the report as JSON.
`

// migrateFlags are the flags that make a migrate.Plan.
func migrateFlags(fs *flag.FlagSet, p *migrate.Plan) (since, folders, folderMap *string) {
	fs.StringVar(&p.From.URL, "from", "", "the mailbox `URL` to move from (pop3://, pop3s://, imap://, imaps://)")
	fs.StringVar(&p.To.URL, "to", "", "the `URL` to move to (smtp://, smtps://, imap://, imaps://)")
	fs.StringVar(&p.Rcpt, "rcpt", "", "SMTP destination: the envelope recipient `ADDRESS` at the new server")
	fs.StringVar(&p.From.PasswordEnv, "password-env", "", "environment `VAR` holding the source's password (default MAILFLOW_PASSWORD)")
	fs.StringVar(&p.From.PasswordFile, "password-file", "", "`FILE` holding the source's password")
	fs.StringVar(&p.To.PasswordEnv, "to-password-env", "", "environment `VAR` holding the destination's password")
	fs.StringVar(&p.To.PasswordFile, "to-password-file", "", "`FILE` holding the destination's password")
	fs.BoolVar(&p.Keep, "keep", false, "POP3 source: leave the messages on the old server (default: delete each once it was accepted)")
	since = fs.String("since", "", "move only messages dated on or after `DATE` (2006-01-02); older ones stay")
	fs.StringVar(&p.Rate, "rate", "", "SMTP destination: send at most this many messages per second or minute (`10/s`, 100/m)")
	fs.StringVar(&p.StateDir, "state", "", "`DIR` for the record of what was moved (for resuming)")
	fs.StringVar(&p.CAFile, "ca-file", "", "PEM `FILE` of the CA that signed the servers' certificates (private CAs)")
	fs.BoolVar(&p.AllowPlaintextAuth, "allow-plaintext-auth", false, "allow passwords over a connection without TLS (?tls=none)")
	fs.Int64Var(&p.MaxMessageSize, "max-message-size", 0, "leave messages larger than this many `BYTES` on the old server (0: no limit)")
	folders = fs.String("folders", "*", "IMAP source: the folders to move, as comma-separated LIST `PATTERNS`")
	folderMap = fs.String("folder-map", "", "IMAP destination: rename folders, `FROM=TO,...` (\"Sent=Sent Items,Archive/*=Old/*\")")
	fs.IntVar(&p.Parallel, "parallel", 4, "IMAP: `N` folders fetched and N messages stored at once")
	fs.Int64Var(&p.MaxBytesPerSecond, "max-bytes-per-second", 0, "IMAP destination: upload at most `N` bytes per second (0: no limit)")
	fs.BoolVar(&p.AddMessageID, "add-message-id", false, "IMAP destination: give a message without a Message-ID one (made from Date, From, Subject, size)")
	fs.BoolVar(&p.DeleteSource, "delete-source", false, "IMAP source: delete the moved messages, once the verification found none missing")
	return since, folders, folderMap
}

func cmdMigrate(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "status" {
		return cmdMigrateStatus(args[1:], stdout, stderr)
	}
	for i, a := range args {
		switch {
		case a == "--child":
			return cmdMigrateChild(args[i+1:], stdout, stderr)
		case a == "--batch" || a == "-batch":
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "mailflow migrate: --batch needs a CSV file")
				return exitConfig
			}
			return cmdMigrateBatch(args[i+1], args, stdout, stderr)
		case strings.HasPrefix(a, "--batch="):
			return cmdMigrateBatch(strings.TrimPrefix(a, "--batch="), args, stdout, stderr)
		}
	}
	var c common
	var p migrate.Plan
	fs := newFlags("migrate", migrateHelp, stderr, &c)
	since, folders, folderMap := migrateFlags(fs, &p)
	dryRun := fs.Bool("dry-run", false, "list what would move, and the total size; send nothing")
	progress := fs.String("progress", "auto", "bar, log (a line every 5 s), none, or auto (bar on a terminal)")
	reportJSON := fs.String("report-json", "", "also write the report as JSON to `FILE` (- for stdout)")
	if code, stop := parseFlags(fs, args, stdout); stop {
		return code
	}
	if !levelSet(fs) {
		// One line per message would drown the progress bar; the report
		// at the end says what happened. --log-level info brings them back.
		c.logLevel = "warn"
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	if err := planFromFlags(&p, c.config, *since, *folders, *folderMap); err != nil {
		fmt.Fprintln(stderr, "mailflow migrate:", err)
		return exitConfig
	}
	ctx, stop := stopOnSignal(log, 30*time.Second)
	defer stop()
	if *dryRun {
		return printDryRun(ctx, stdout, stderr, p, log)
	}
	prog := newProgress(*progress, stderr)
	if prog.p != nil {
		// Log lines go above the bar instead of through it.
		log, _ = c.logger(prog.p)
	}
	r := migrate.Run(ctx, p, migrate.Options{Log: log, Observer: prog})
	prog.finish()
	if r.Class() == migrate.ClassPlan {
		fmt.Fprintln(stderr, "mailflow migrate:", r.Errors[0].Message)
		return exitConfig
	}
	printReport(stdout, r, configPath(c.config, r.StateDir))
	if *reportJSON != "" {
		if err := writeJSON(*reportJSON, stdout, r); err != nil {
			fmt.Fprintln(stderr, "mailflow migrate: --report-json:", err)
		}
	}
	return exitCode(r.Result())
}

// planFromFlags fills in what the flags give as text.
func planFromFlags(p *migrate.Plan, config, since, folders, folderMap string) (err error) {
	p.Config = config
	if since != "" {
		if p.Since, err = migrate.ParseSince(since); err != nil {
			return err
		}
	}
	if folders != "*" {
		p.Folders = migrate.ParseList(folders)
	}
	p.FolderMap, err = migrate.ParseFolderMap(folderMap)
	return err
}

// cmdMigrateChild is one mailbox of a batch or a fleet: the plan comes as
// JSON on stdin, the progress and the report go out as JSON lines on
// stdout (migrate.Child is the other side).
func cmdMigrateChild(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("migrate --child", "Usage: mailflow migrate --child (run by a batch or a worker)\n", stderr, &c)
	if code, stop := parseFlags(fs, args, stdout); stop {
		return code
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	ctx, stop := stopOnSignal(log, 30*time.Second)
	defer stop()
	if err := migrate.ServeChild(ctx, os.Stdin, stdout, log); err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --child:", err)
		return exitFailed
	}
	return exitOK
}

func exitCode(r migrate.Result) int {
	return [...]int{exitOK, exitQuarantined, exitFailed}[r]
}

// configPath is the -c to give "mailflow quarantine" for a run's state.
func configPath(config, state string) string {
	if config != "" {
		return config
	}
	return state
}

func levelSet(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "log-level" {
			set = true
		}
	})
	return set
}

// printReport prints what a run did, in the words of its summary.
func printReport(w io.Writer, r *migrate.Report, conf string) {
	fmt.Fprintf(w, "moved:                  %d (%s in %v)\n", r.Moved, humanBytes(r.MovedBytes), time.Duration(r.Seconds*float64(time.Second)).Round(time.Millisecond))
	fmt.Fprintf(w, "skipped, already moved: %d\n", r.AlreadyMoved)
	if r.AlreadyThere > 0 {
		fmt.Fprintf(w, "  of the moved, found at the destination already and not copied again: %d\n", r.AlreadyThere)
	}
	if r.Left > 0 {
		fmt.Fprintf(w, "left, older than --since: %d\n", r.Left)
	}
	if r.InDoubt > 0 {
		fmt.Fprintf(w, "in doubt, sent again:   %d (they were being sent when mailflow was stopped, or the reply was lost; an IMAP destination is searched for each Message-ID first, an SMTP one may hold two copies)\n", r.InDoubt)
	}
	fmt.Fprintf(w, "too large:              %d\n", r.TooLarge)
	fmt.Fprintf(w, "refused or quarantined: %d\n", len(r.Refused))
	for _, q := range r.Refused {
		fmt.Fprintf(w, "  %s <%s>: %s (mailflow quarantine resend -c %s %s)\n", q.SourceID, q.MessageID, oneLine(q.Reason), conf, q.QuarantineID)
	}
	if r.Deferred > 0 {
		fmt.Fprintf(w, "deferred, still on the old server: %d (run again to retry)\n", r.Deferred)
	}
	for _, v := range r.Verifications {
		if v.Error != "" {
			fmt.Fprintf(w, "verification of %s → %s failed: %s\n", v.Input, v.Output, v.Error)
			continue
		}
		fmt.Fprintf(w, "verification, %s → %s, by Message-ID (without one: by Date, From, Subject and size):\n", v.Input, v.Output)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FOLDER\tAT SOURCE\tFOUND\tMISSING\tWITHOUT MESSAGE-ID\tNOT CHECKED")
		for _, c := range v.Folders {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\n", c.Folder, c.Source, c.Found, len(c.Missing), c.Made, c.Unnamed)
		}
		tw.Flush()
		for _, c := range v.Folders {
			for _, id := range c.Missing {
				fmt.Fprintf(w, "  missing in %s: <%s>\n", c.Folder, id)
			}
		}
	}
	if r.Deleted > 0 || r.DeletedMovedFirst > 0 {
		fmt.Fprintf(w, "deleted at the source:  %d", r.Deleted)
		if r.DeletedMovedFirst > 0 {
			fmt.Fprintf(w, " (%d of them arrived during the run and were moved first)", r.DeletedMovedFirst)
		}
		fmt.Fprintln(w)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "not done (%s): %s\n", e.Class, e.Message)
	}
}

// printDryRun lists what would move.
func printDryRun(ctx context.Context, stdout, stderr io.Writer, p migrate.Plan, log *slog.Logger) int {
	list, totals, err := migrate.DryRun(ctx, p, log)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate:", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%-6s %10s  %-16s  %-16s  %-28s  %s\n", "#", "SIZE", "DATE", "FOLDER", "FROM", "SUBJECT")
	var stay migrate.Count
	for i, it := range list {
		note, date := "", ""
		if it.Stays != "" {
			note = "  [" + it.Stays + ": stays]"
		}
		if it.Stays == "dated before --since" {
			stay = migrate.Count{Messages: stay.Messages + 1, Bytes: stay.Bytes + it.Size}
		}
		if !it.Date.IsZero() {
			date = it.Date.UTC().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(stdout, "%-6d %10d  %-16s  %-16s  %-28s  %s%s\n", i+1, it.Size, date, clip(it.Folder, 16), clip(it.From, 28), clip(it.Subject, 50), note)
	}
	fmt.Fprintln(stdout)
	if len(totals.Folders) > 1 || totals.Folders[""].Messages == 0 {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "FOLDER\tTO MOVE\tSIZE\t")
		for _, f := range totals.FolderNames() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t\n", f, totals.Folders[f].Messages, humanBytes(totals.Folders[f].Bytes))
		}
		tw.Flush()
	}
	fmt.Fprintf(stdout, "\nwould move %d messages, %s; %d already moved, %d too large, %d dated before --since\n",
		totals.ToMove.Messages-stay.Messages, humanBytes(totals.ToMove.Bytes-stay.Bytes), totals.MovedEarlier.Messages, totals.TooLarge.Messages, stay.Messages)
	return exitOK
}

func clip(s string, n int) string {
	s = oneLine(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// humanBytes says a size in decimal units (a MB is 10^6 bytes), as disks
// and mail providers count.
func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// writeJSON writes v as indented JSON to path, or to stdout for "-".
func writeJSON(path string, stdout io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
