package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-message/charset"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/plugins"
)

const migrateHelp = `Usage: mailflow migrate --from pop3s://USER@HOST[:PORT] --to smtp://[USER@]HOST[:PORT]
                        --rcpt ADDRESS [--password-env VAR | --password-file FILE]
                        [--keep] [--since DATE] [--rate 10/s] [--dry-run]
       mailflow migrate --from imaps://USER@HOST --to imaps://USER@HOST
                        [--folders 'INBOX,Archive/*'] [--folder-map 'Sent=Sent Items']
                        [--to-password-env VAR | --to-password-file FILE] [--dry-run]
       mailflow migrate -c FILE

Moves every message of a POP3 mailbox to an SMTP server, or of an IMAP
mailbox (every folder, or those --folders names) or a POP3 mailbox into an
IMAP mailbox, byte for byte (Date, Message-ID, every header kept; into IMAP
with its folder, flags and date), with a progress bar. An IMAP source is
left as it is; into IMAP, the run ends with a verification, folder by folder,
that every message of the source is at the destination (by Message-ID). It
is resumable:
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
}

func cmdMigrate(args []string, stdout, stderr io.Writer) int {
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
	cfg, err := engine.LoadConfig(confPath, plugins.Default)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	e, err := engine.Open(cfg, plugins.Default, log)
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
		fmt.Fprintf(stdout, "\nwould move %d messages, %s; %d already moved, %d too large, %d dated before --since\n",
			sv.todo-sv.stay.n, humanBytes(sv.todoBytes-sv.stay.bytes), sv.done, sv.tooLarge, sv.stay.n)
		return exitOK
	}
	fmt.Fprintf(stderr, "moving %d messages (%s); %d already moved earlier; record in %s\n",
		sv.todo, humanBytes(sv.todoBytes), sv.done, cfg.StateDir)

	prog := newProgress(f.progress, stderr, sv.todo, sv.todoBytes)
	e.Observer = prog
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
	if total.Left > 0 {
		fmt.Fprintf(stdout, "left, older than --since: %d\n", total.Left)
	}
	if total.InDoubt > 0 {
		fmt.Fprintf(stdout, "in doubt, sent again:   %d (they were being sent when mailflow was stopped, or the reply was lost; an IMAP destination is searched for each Message-ID first, an SMTP one may hold two copies)\n", total.InDoubt)
	}
	fmt.Fprintf(stdout, "too large:              %d\n", sv.tooLarge)
	entries, _ := e.Quarantine.List()
	var refused []engine.QuarantineEntry
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
	switch {
	case runErr != nil || total.Deferred > 0 || sv.tooLarge > 0 || missing > 0:
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
		fmt.Fprintf(&b, "folders = [%s]\non_settled = \"keep\"\n", quoteList(f.folders))
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

// survey sums up what the POP3 inputs hold.
type survey struct {
	todo, done, tooLarge int
	todoBytes            int64
	stay                 counted // dated before --since (dry run only)
}

type counted struct {
	n     int
	bytes int64
}

func (c counted) plus(o counted) counted { return counted{c.n + o.n, c.bytes + o.bytes} }

func (s *survey) add(items []engine.SurveyItem) {
	for _, it := range items {
		switch {
		case it.Settled:
			s.done++
		case it.TooLarge:
			s.tooLarge++
		default:
			s.todo++
			s.todoBytes += it.Size
		}
	}
}

var headerDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// dryRun lists the messages that would move; it returns those that stay
// because they are dated before since.
func dryRun(w io.Writer, items []engine.SurveyItem, since time.Time) (stay counted) {
	fmt.Fprintf(w, "%-6s %10s  %-16s  %-28s  %s\n", "#", "SIZE", "DATE", "FROM", "SUBJECT")
	for i, it := range items {
		note := ""
		switch {
		case it.Settled:
			continue
		case it.TooLarge:
			note = "  [too large: stays]"
		}
		var date, from, subject string
		if m, err := mail.ReadMessage(strings.NewReader(string(it.Header) + "\r\n")); err == nil {
			if t, err := m.Header.Date(); err == nil {
				date = t.UTC().Format("2006-01-02 15:04")
				if !since.IsZero() && t.Before(since) && !it.TooLarge {
					note = "  [before --since: stays]"
					stay = stay.plus(counted{1, it.Size})
				}
			}
			from, _ = headerDecoder.DecodeHeader(m.Header.Get("From"))
			subject, _ = headerDecoder.DecodeHeader(m.Header.Get("Subject"))
		}
		fmt.Fprintf(w, "%-6d %10d  %-16s  %-28s  %s%s\n", i+1, it.Size, date, clip(from, 28), clip(subject, 50), note)
	}
	return stay
}

func clip(s string, n int) string {
	s = oneLine(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// progress shows how far a migration is: a bar on a terminal, or a log line
// every few seconds. It is the engine's Observer during the run.
type progress struct {
	total      int
	totalBytes int64
	msgs       atomic.Int64
	bytes      atomic.Int64 // of every message read
	moved      atomic.Int64 // of the delivered ones
	start      time.Time

	p    *mpb.Progress
	bar  *mpb.Bar
	w    io.Writer
	stop chan struct{}
	wg   sync.WaitGroup
}

func newProgress(mode string, w io.Writer, total int, totalBytes int64) *progress {
	pr := &progress{total: total, totalBytes: totalBytes, start: time.Now(), w: w, stop: make(chan struct{})}
	if mode == "auto" {
		mode = "log"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		pr.bar = pr.p.AddBar(max(totalBytes, 1),
			mpb.PrependDecorators(
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("%d/%d msgs", pr.msgs.Load(), pr.total)
				}, decor.WCSyncSpaceR),
				decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
				decor.Any(func(decor.Statistics) string {
					if s := time.Since(pr.start).Seconds(); s > 0 {
						return fmt.Sprintf("%.0f msg/s", float64(pr.msgs.Load())/s)
					}
					return ""
				}, decor.WCSyncSpace),
				decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO),
			),
		)
	case "log":
		pr.wg.Add(1)
		go func() {
			defer pr.wg.Done()
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-pr.stop:
					return
				case <-t.C:
					fmt.Fprintln(w, pr.line())
				}
			}
		}()
	}
	return pr
}

func (pr *progress) line() string {
	n, b := pr.msgs.Load(), pr.bytes.Load()
	el := time.Since(pr.start)
	rate := float64(n) / el.Seconds()
	eta := "?"
	if b > 0 && pr.totalBytes > b {
		eta = (time.Duration(float64(el) * float64(pr.totalBytes-b) / float64(b))).Round(time.Second).String()
	}
	return fmt.Sprintf("progress: %d/%d messages, %s/%s, %.1f msg/s, ETA %s",
		n, pr.total, humanBytes(b), humanBytes(pr.totalBytes), rate, eta)
}

func (pr *progress) MessageSettled(input, outcome string, bytes int64, d time.Duration) {
	pr.msgs.Add(1)
	pr.bytes.Add(bytes)
	if outcome == "delivered" {
		pr.moved.Add(bytes)
	}
	if pr.bar != nil {
		pr.bar.EwmaIncrInt64(bytes, d)
	}
}
func (pr *progress) OutputResult(string, error, int64, time.Duration) {}
func (pr *progress) PollDone(string, error)                           {}
func (pr *progress) Reloaded(error)                                   {}

func (pr *progress) finish() {
	close(pr.stop)
	pr.wg.Wait()
	if pr.bar != nil {
		pr.bar.SetTotal(-1, true)
		pr.p.Wait()
	} else if pr.w != nil && pr.total > 0 {
		fmt.Fprintln(pr.w, pr.line())
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

var _ engine.Observer = (*progress)(nil)

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
func verifyMigration(ctx context.Context, e *engine.Engine, cfg *engine.Config, w io.Writer) int {
	missing := 0
	for _, ic := range cfg.Inputs {
		pc := cfg.Pipeline(ic.Pipeline)
		if pc == nil {
			continue
		}
		for _, out := range pc.Outputs {
			if _, ok := cfg.Output(out).Plugin.(engine.Finder); !ok {
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
