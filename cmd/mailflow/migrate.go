package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/quarantine"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/plugins"
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
resumable:
interrupt it (Ctrl-C) or kill it, run the same command again, and it goes on
where it stopped. It ends with a report and exits 1 if anything is still on
the old server to be retried, 3 if all that did not move was refused by the
new server or quarantined ("mailflow quarantine list -c STATE/migrate.toml").

` + inDoubtNote + `

URLs: pop3:// uses STLS, pop3s:// implicit TLS (port 995); smtp:// uses
STARTTLS (port 587), smtps:// implicit TLS (port 465). Add ?tls=none only for
a server you reach in clear on purpose (with --allow-plaintext-auth to send
a password that way). A user in the --to URL logs in with AUTH.

What was moved is recorded in --state (by default a directory under
$XDG_STATE_HOME/mailflow/migrate named after --from, --to and --rcpt).
With -c FILE, the inputs of FILE are polled once instead, with the same
progress and report.
`

type migrateFlags struct {
	from, to, rcpt            string
	passwordEnv, passwordFile string
	toPasswordEnv             string
	toPasswordFile            string
	keep, dryRun              bool
	since, rate, state        string
	caFile                    string
	plaintext                 bool
	maxSize                   int64
	progress                  string
	folders                   string
	folderMap                 string
	parallel                  int
	maxBytesPerSecond         int64
	addMessageID              bool
	deleteSource              bool
	verified                  bool // set once the verification passed: the config then deletes at the source
}

func cmdMigrate(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "status" {
		return cmdMigrateStatus(args[1:], stdout, stderr)
	}
	for i, a := range args {
		if a == "--batch" || a == "-batch" {
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "mailflow migrate: --batch needs a CSV file")
				return exitConfig
			}
			return cmdMigrateBatch(args[i+1], args, stdout, stderr)
		}
		if v, ok := strings.CutPrefix(a, "--batch="); ok {
			return cmdMigrateBatch(v, args, stdout, stderr)
		}
	}
	var c common
	var f migrateFlags
	fs := newFlags("migrate", migrateHelp, stderr, &c)
	fs.StringVar(&f.from, "from", "", "the POP3 mailbox `URL` to move from")
	fs.StringVar(&f.to, "to", "", "the SMTP server `URL` to send to")
	fs.StringVar(&f.rcpt, "rcpt", "", "the envelope recipient `ADDRESS` at the new server")
	fs.StringVar(&f.passwordEnv, "password-env", "", "environment `VAR` holding the POP3 password (default MAILFLOW_PASSWORD)")
	fs.StringVar(&f.passwordFile, "password-file", "", "`FILE` holding the POP3 password")
	fs.StringVar(&f.toPasswordEnv, "to-password-env", "", "environment `VAR` holding the SMTP AUTH password")
	fs.StringVar(&f.toPasswordFile, "to-password-file", "", "`FILE` holding the SMTP AUTH password")
	fs.BoolVar(&f.keep, "keep", false, "leave the messages on the old server (default: delete each once it was accepted)")
	fs.StringVar(&f.since, "since", "", "move only messages dated on or after `DATE` (2006-01-02); older ones stay")
	fs.StringVar(&f.rate, "rate", "", "send at most this many messages per second or minute (`10/s`, 100/m)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "list what would move, and the total size; send nothing")
	fs.StringVar(&f.state, "state", "", "`DIR` for the record of what was moved (for resuming)")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM `FILE` of the CA that signed the servers' certificates (private CAs)")
	fs.BoolVar(&f.plaintext, "allow-plaintext-auth", false, "allow passwords over a connection without TLS (?tls=none)")
	fs.Int64Var(&f.maxSize, "max-message-size", 0, "leave messages larger than this many `BYTES` on the old server (0: no limit)")
	fs.StringVar(&f.progress, "progress", "auto", "bar, log (a line every 5 s), none, or auto (bar on a terminal)")
	fs.StringVar(&f.folders, "folders", "*", "IMAP source: the folders to move, as comma-separated LIST `PATTERNS`")
	fs.StringVar(&f.folderMap, "folder-map", "", "IMAP destination: rename folders, `FROM=TO,...` (\"Sent=Sent Items,Archive/*=Old/*\")")
	fs.IntVar(&f.parallel, "parallel", 4, "IMAP: `N` folders fetched and N messages stored at once")
	fs.Int64Var(&f.maxBytesPerSecond, "max-bytes-per-second", 0, "IMAP destination: upload at most `N` bytes per second (0: no limit)")
	fs.BoolVar(&f.addMessageID, "add-message-id", false, "IMAP destination: give a message without a Message-ID one (made from Date, From, Subject, size)")
	fs.BoolVar(&f.deleteSource, "delete-source", false, "IMAP source: delete the moved messages, once the verification found none missing")
	if code, stop := parseFlags(fs, args, stdout); stop {
		return code
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	if !levelSet(fs) {
		// One line per message would drown the progress bar; the report
		// at the end says what happened. --log-level info brings them back.
		log, _ = (&common{logFormat: c.logFormat, logLevel: "warn"}).logger(stderr)
	}

	confPath := c.config
	if confPath == "" {
		var err error
		if confPath, err = writeMigrateConfig(&f); err != nil {
			fmt.Fprintln(stderr, "mailflow migrate:", err)
			return exitConfig
		}
	}
	cfg, err := config.Load(confPath, plugins.Default)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	// The progress bar is made once the survey knows the totals; the
	// engine tells whichever is set.
	obs := &swappable{}
	e, err := engine.Open(cfg, plugins.Default, log, engine.WithObserver(obs))
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	defer e.Close()
	ctx, stop := stopOnSignal(log, cfg.ShutdownTimeout)
	defer stop()

	// Survey every input first: totals for the progress bar, and what an
	// earlier run already moved.
	var since time.Time
	if f.since != "" {
		since, _ = parseSince(f.since)
	}
	var sv survey
	for _, ic := range cfg.Inputs {
		if f.deleteSource && ic.Type != "imap" {
			fmt.Fprintf(stderr, "mailflow migrate: --delete-source is for an IMAP source; input %q is %s (a POP3 source is emptied as it goes unless --keep)\n", ic.Name, ic.Type)
			return exitConfig
		}
		peek := engine.PeekNone
		if f.dryRun {
			peek = engine.PeekUnsettled
		}
		items, err := e.Survey(ctx, ic.Name, peek)
		if err != nil {
			fmt.Fprintf(stderr, "mailflow migrate: %s: %v\n", ic.Name, err)
			return exitFailed
		}
		sv.add(items)
		if f.dryRun {
			sv.stay = sv.stay.plus(dryRun(stdout, items, since))
		}
	}
	if f.dryRun {
		fmt.Fprintln(stdout)
		sv.printFolders(stdout)
		fmt.Fprintf(stdout, "\nwould move %d messages, %s; %d already moved, %d too large, %d dated before --since\n",
			sv.todo-sv.stay.n, humanBytes(sv.todoBytes-sv.stay.bytes), sv.done, sv.tooLarge, sv.stay.n)
		return exitOK
	}
	fmt.Fprintf(stderr, "moving %d messages (%s); %d already moved earlier; record in %s\n",
		sv.todo, humanBytes(sv.todoBytes), sv.done, cfg.StateDir)

	prog := newProgress(f.progress, stderr, sv)
	obs.set(prog)
	if prog.bar != nil {
		// Log lines go above the bar instead of through it.
		log, _ = (&common{logFormat: c.logFormat, logLevel: levelOf(fs, c.logLevel)}).logger(prog.p)
		e.Log = log
	}
	start := time.Now()
	stats, runErr := e.RunOnce(ctx)
	prog.finish()

	var total engine.Stats
	for _, s := range stats {
		total.Add(s)
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "moved:                  %d (%s in %v)\n", total.Delivered, humanBytes(prog.moved.Load()), took.Round(time.Millisecond))
	fmt.Fprintf(stdout, "skipped, already moved: %d\n", total.Skipped)
	if there := alreadyThere(cfg); there > 0 {
		fmt.Fprintf(stdout, "  of the moved, found at the destination already and not copied again: %d\n", there)
	}
	if total.Left > 0 {
		fmt.Fprintf(stdout, "left, older than --since: %d\n", total.Left)
	}
	if total.InDoubt > 0 {
		fmt.Fprintf(stdout, "in doubt, sent again:   %d (they were being sent when mailflow was stopped, or the reply was lost; an IMAP destination is searched for each Message-ID first, an SMTP one may hold two copies)\n", total.InDoubt)
	}
	fmt.Fprintf(stdout, "too large:              %d\n", sv.tooLarge)
	entries, _ := e.Quarantine.List()
	var refused []quarantine.Entry
	for _, q := range entries {
		if !q.At.Before(start) {
			refused = append(refused, q)
		}
	}
	fmt.Fprintf(stdout, "refused or quarantined: %d\n", len(refused))
	for _, q := range refused {
		fmt.Fprintf(stdout, "  %s <%s>: %s (mailflow quarantine resend -c %s %s)\n", q.SourceID, q.MessageID, oneLine(q.Reason), confPath, q.ID)
	}
	if total.Deferred > 0 {
		fmt.Fprintf(stdout, "deferred, still on the old server: %d (run again to retry)\n", total.Deferred)
	}
	if runErr != nil {
		fmt.Fprintf(stdout, "stopped early: %v\n", runErr)
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "interrupted: run the same command again to go on where it stopped")
		}
	}
	missing := verifyMigration(ctx, e, cfg, stdout)
	failed := runErr != nil || total.Deferred > 0 || sv.tooLarge > 0 || missing > 0
	if f.deleteSource {
		if failed {
			fmt.Fprintln(stdout, "--delete-source: the source is left as it is, since not everything was verified at the destination")
		} else if err := deleteSource(ctx, e, &f, confPath, stdout); err != nil {
			fmt.Fprintf(stdout, "--delete-source: %v (run the same command again to finish)\n", err)
			failed = true
		}
	}
	switch {
	case failed:
		return exitFailed
	case len(refused) > 0 || total.Held > 0:
		return exitQuarantined
	}
	return exitOK
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

func levelOf(fs *flag.FlagSet, level string) string {
	if levelSet(fs) {
		return level
	}
	return "warn"
}

// writeMigrateConfig turns the flags into a config in the state directory,
// so that a resumed run uses the same ledger, and errors point at a file.
func writeMigrateConfig(f *migrateFlags) (string, error) {
	if f.from == "" || f.to == "" {
		return "", errors.New("--from and --to are needed (or -c FILE); see --help")
	}
	from, err := url.Parse(f.from)
	if err != nil {
		return "", fmt.Errorf("--from: %v", err)
	}
	to, err := url.Parse(f.to)
	if err != nil {
		return "", fmt.Errorf("--to: %v", err)
	}
	in, err := endpoint(from, map[string]endpointKind{"pop3": {"starttls", "110"}, "pop3s": {"implicit", "995"},
		"imap": {"starttls", "143"}, "imaps": {"implicit", "993"}})
	if err != nil {
		return "", fmt.Errorf("--from: %v", err)
	}
	out, err := endpoint(to, map[string]endpointKind{"smtp": {"starttls", "587"}, "smtps": {"implicit", "465"},
		"imap": {"starttls", "143"}, "imaps": {"implicit", "993"}})
	if err != nil {
		return "", fmt.Errorf("--to: %v", err)
	}
	inType, outType := strings.TrimSuffix(from.Scheme, "s"), strings.TrimSuffix(to.Scheme, "s")
	if in.user == "" {
		return "", fmt.Errorf("--from needs the user name: %s://USER@HOST", from.Scheme)
	}
	if outType == "smtp" && (strings.ContainsAny(f.rcpt, " <>\r\n") || !strings.Contains(f.rcpt, "@")) {
		return "", fmt.Errorf("--rcpt %q is not an address (an SMTP destination needs one)", f.rcpt)
	}
	if outType == "imap" && out.user == "" {
		return "", fmt.Errorf("--to needs the user name: %s://USER@HOST", to.Scheme)
	}
	since := time.Time{}
	if f.since != "" {
		if since, err = parseSince(f.since); err != nil {
			return "", err
		}
	}

	state := f.state
	if state == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no --state given and no home directory: %v", err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		id := sha256.Sum256([]byte(redact(from) + "\x00" + redact(to) + "\x00" + f.rcpt))
		state = filepath.Join(base, "mailflow", "migrate", fmt.Sprintf("%s-%x", in.host, id[:6]))
	}
	state, err = filepath.Abs(state)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", err
	}

	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "# Written by mailflow migrate; the record of what was moved is beside it.\n")
	fmt.Fprintf(&b, "state_dir = %s\nmax_in_flight = 8\n", q(state))
	if f.maxSize > 0 {
		fmt.Fprintf(&b, "max_message_size = %d\n", f.maxSize)
	}
	fmt.Fprintf(&b, "\n[[input]]\nname = \"old\"\ntype = %s\npipeline = \"migrate\"\n", q(inType))
	fmt.Fprintf(&b, "address = %s\ntls = %s\nusername = %s\n", q(in.host), q(in.tls), q(in.user))
	switch {
	case f.passwordFile != "":
		fmt.Fprintf(&b, "password_file = %s\n", q(absPath(f.passwordFile)))
	case f.passwordEnv != "":
		fmt.Fprintf(&b, "password_env = %s\n", q(f.passwordEnv))
	default:
		fmt.Fprintf(&b, "password_env = \"MAILFLOW_PASSWORD\"\n")
	}
	if inType == "imap" {
		// An IMAP mailbox being migrated is kept: the verification at the
		// end compares it with the destination.
		onSettled := "keep"
		if f.deleteSource && f.verified {
			onSettled = "delete"
		}
		fmt.Fprintf(&b, "folders = [%s]\non_settled = %s\nparallel = %d\n", quoteList(f.folders), q(onSettled), max(1, f.parallel))
	} else {
		fmt.Fprintf(&b, "delete = %v\n", !f.keep)
	}
	if f.plaintext {
		fmt.Fprintf(&b, "allow_plaintext_auth = true\n")
	}
	if f.caFile != "" {
		fmt.Fprintf(&b, "tls_ca_file = %s\n", q(absPath(f.caFile)))
	}

	fmt.Fprintf(&b, "\n[[pipeline]]\nname = \"migrate\"\noutputs = [\"new\"]\n")
	if !since.IsZero() {
		script := filepath.Join(state, "since.lua")
		src := fmt.Sprintf("-- Written by mailflow migrate --since %s.\n"+
			"-- Messages dated before it stay on the old server; undated ones move.\n"+
			"local since = %d\n"+
			"function filter(msg)\n"+
			"  if msg.date and msg.date < since then\n"+
			"    return leave(\"dated before --since\")\n"+
			"  end\n"+
			"end\n", f.since, since.Unix())
		if err := os.WriteFile(script, []byte(src), 0o600); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "scripts = [%s]\n", q(script))
	}

	fmt.Fprintf(&b, "\n[[output]]\nname = \"new\"\ntype = %s\n", q(outType))
	fmt.Fprintf(&b, "address = %s\ntls = %s\n", q(out.host), q(out.tls))
	if outType == "smtp" {
		fmt.Fprintf(&b, "to = [%s]\n", q(f.rcpt))
	}
	if outType == "imap" && f.folderMap != "" {
		var pairs []string
		for _, p := range strings.Split(f.folderMap, ",") {
			a, b, ok := strings.Cut(p, "=")
			if !ok {
				return "", fmt.Errorf("--folder-map %q: give FROM=TO pairs, comma-separated", f.folderMap)
			}
			pairs = append(pairs, q(strings.TrimSpace(a))+" = "+q(strings.TrimSpace(b)))
		}
		fmt.Fprintf(&b, "folder_map = { %s }\n", strings.Join(pairs, ", "))
	}
	if outType == "imap" {
		// A migration run again with a fresh --state, or one that took over
		// from another machine, copies nothing twice.
		fmt.Fprintf(&b, "skip_existing = true\nmax_connections = %d\n", max(1, f.parallel))
		if f.addMessageID {
			fmt.Fprintf(&b, "add_message_id = true\n")
		}
		if f.maxBytesPerSecond > 0 {
			fmt.Fprintf(&b, "max_bytes_per_second = %d\n", f.maxBytesPerSecond)
		}
	} else if f.addMessageID || f.maxBytesPerSecond > 0 {
		return "", errors.New("--add-message-id and --max-bytes-per-second are for an IMAP destination")
	}
	if out.user != "" {
		fmt.Fprintf(&b, "username = %s\n", q(out.user))
		switch {
		case f.toPasswordFile != "":
			fmt.Fprintf(&b, "password_file = %s\n", q(absPath(f.toPasswordFile)))
		case f.toPasswordEnv != "":
			fmt.Fprintf(&b, "password_env = %s\n", q(f.toPasswordEnv))
		default:
			return "", errors.New("--to names a user: give its password with --to-password-env or --to-password-file")
		}
	}
	if f.plaintext {
		fmt.Fprintf(&b, "allow_plaintext_auth = true\n")
	}
	if f.caFile != "" {
		fmt.Fprintf(&b, "tls_ca_file = %s\n", q(absPath(f.caFile)))
	}
	if f.rate != "" && outType == "smtp" {
		fmt.Fprintf(&b, "rate = %s\n", q(f.rate))
	}
	path := filepath.Join(state, "migrate.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

type endpointKind struct{ tls, port string }

type endpointSpec struct{ host, user, tls string }

func endpoint(u *url.URL, kinds map[string]endpointKind) (endpointSpec, error) {
	k, ok := kinds[u.Scheme]
	if !ok {
		var names []string
		for s := range kinds {
			names = append(names, s+"://")
		}
		return endpointSpec{}, fmt.Errorf("%q: the scheme must be one of %s", u.Redacted(), strings.Join(names, ", "))
	}
	if u.Hostname() == "" {
		return endpointSpec{}, fmt.Errorf("%q has no host", u.Redacted())
	}
	if _, set := u.User.Password(); set {
		return endpointSpec{}, errors.New("put no password in the URL (it would show in ps and shell history); use --password-env or --password-file")
	}
	port := u.Port()
	if port == "" {
		port = k.port
	}
	tls := k.tls
	if t := u.Query().Get("tls"); t != "" {
		if t != "none" && t != "starttls" && t != "implicit" {
			return endpointSpec{}, fmt.Errorf("?tls=%s: must be none, starttls or implicit", t)
		}
		tls = t
	}
	return endpointSpec{host: u.Hostname() + ":" + port, user: u.User.Username(), tls: tls}, nil
}

func redact(u *url.URL) string { c := *u; c.User = url.User(u.User.Username()); return c.String() }

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func parseSince(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: give a date like 2024-01-31 (or RFC 3339)", s)
}

// quoteList makes a TOML array's items of a comma-separated list.
func quoteList(s string) string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, strconv.Quote(x))
		}
	}
	return strings.Join(out, ", ")
}

// verifyMigration compares, folder by folder, what each input's source
// holds with what each of its outputs that can say what it holds (IMAP)
// has, by Message-ID, and prints the result. It returns how many are
// missing.
func verifyMigration(ctx context.Context, e *engine.Engine, cfg *config.Config, w io.Writer) int {
	missing := 0
	for _, ic := range cfg.Inputs {
		pc := cfg.Pipeline(ic.Pipeline)
		if pc == nil {
			continue
		}
		for _, out := range pc.Outputs {
			if _, ok := cfg.Output(out).Plugin.(plugin.Finder); !ok {
				continue
			}
			checks, err := e.Verify(ctx, ic.Name, out)
			if err != nil {
				fmt.Fprintf(w, "verification of %s → %s failed: %v\n", ic.Name, out, err)
				missing++
				continue
			}
			fmt.Fprintf(w, "verification, %s → %s, by Message-ID (without one: by Date, From, Subject and size):\n", ic.Name, out)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  FOLDER\tAT SOURCE\tFOUND\tMISSING\tWITHOUT MESSAGE-ID\tNOT CHECKED")
			for _, c := range checks {
				fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\n", c.Folder, c.Source, c.Found, len(c.Missing), c.Made, c.Unnamed)
				missing += len(c.Missing)
			}
			tw.Flush()
			for _, c := range checks {
				for _, id := range c.Missing {
					fmt.Fprintf(w, "  missing in %s: <%s>\n", c.Folder, id)
				}
			}
		}
	}
	return missing
}

// alreadyThere sums, over the outputs that count them, the messages that
// were found at the destination and not copied again.
func alreadyThere(cfg *config.Config) int64 {
	var n int64
	for _, oc := range cfg.Outputs {
		if c, ok := oc.Plugin.(interface{ AlreadyThere() int64 }); ok {
			n += c.AlreadyThere()
		}
	}
	return n
}

// deleteSource empties the IMAP source of what was moved and verified: the
// config is written again with on_settled = "delete" and the inputs polled
// once more. Every message the ledger has as settled is deleted on its id
// (an IMAP UID is never reused); one that arrived meanwhile is moved first.
func deleteSource(ctx context.Context, e *engine.Engine, f *migrateFlags, confPath string, w io.Writer) error {
	if f.from == "" {
		return errors.New("with -c FILE, set on_settled = \"delete\" in the file instead")
	}
	f.verified = true
	if _, err := writeMigrateConfig(f); err != nil {
		return err
	}
	if _, err := e.Reload(); err != nil {
		return err
	}
	stats, err := e.RunOnce(ctx)
	var total engine.Stats
	for _, s := range stats {
		total.Add(s)
	}
	fmt.Fprintf(w, "deleted at the source:  %d", total.Skipped+total.Delivered)
	if total.Delivered > 0 {
		fmt.Fprintf(w, " (%d of them arrived during the run and were moved first)", total.Delivered)
	}
	fmt.Fprintln(w)
	if err == nil && total.Deferred > 0 {
		err = fmt.Errorf("%d messages could not be moved or deleted", total.Deferred)
	}
	return err
}
