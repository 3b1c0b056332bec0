// Command mailflow moves e-mail through a scriptable pipeline.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/quarantine"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/metrics"
	"github.com/mailflow/mailflow/plugins"
	_ "github.com/mailflow/mailflow/plugins/all"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // something did not go through (messages left to retry, a poll failed)
	exitConfig  = 2 // bad usage or config, or the state_dir in use
	exitUnknown = 2
	// exitQuarantined: everything was settled, but some messages went to
	// the quarantine (or were held): a person should look (quarantine list).
	exitQuarantined = 3
)

const usage = `mailflow moves e-mail through a scriptable pipeline: inputs (Maildir, POP3,
IMAP) fetch mail, Lua filter scripts rewrite, route or drop it, outputs
(Maildir, SMTP, IMAP) deliver it. A message leaves its source only after every
output it was routed to accepted it.

Usage:
  mailflow run [--once] -c FILE     run every input on its schedule (or once)
  mailflow check -c FILE            check a config and its scripts, run nothing
  mailflow test -c FILE [--pipeline NAME | --script F.lua] MSG.eml|DIR
                                    show what the filter chain would do
  mailflow migrate --from pop3s://USER@HOST --to smtp://HOST:587 --rcpt ADDR
  mailflow migrate --from imaps://USER@HOST --to imaps://USER@HOST
                                    move a mailbox, resumably, with progress
                                    and (into IMAP) a closing verification
  mailflow migrate --batch FILE.csv [--parallel N] [--queue nats://HOST]
  mailflow worker --queue nats://HOST
  mailflow migrate status --queue nats://HOST
                                    many mailboxes: on this machine, or as
                                    jobs in NATS JetStream for workers on many
  mailflow quarantine list|show|resend|delete -c FILE [ID...]
                                    list, look at, resend or delete quarantined
                                    messages (also while "run" runs)
  mailflow ledger stats|compact -c FILE
                                    what the delivery ledger holds, per input
  mailflow auth login|status|logout -c FILE [NAME]
                                    log an auth = "oauth2" connector in once
                                    (Gmail, Microsoft 365), see its tokens
  mailflow version                  print the version

Run "mailflow COMMAND --help" for a command's options.
Exit codes: 0 all went through; 1 something failed and stays at its source to
be retried; 2 bad usage or configuration, or the state_dir in use; 3 all was
settled but some messages went to the quarantine ("mailflow quarantine list").
`

func main() {
	stop := profileFromEnv()
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "quarantine":
		return cmdQuarantine(rest, stdout, stderr)
	case "test":
		return cmdTest(rest, stdout, stderr)
	case "migrate":
		return cmdMigrate(rest, stdout, stderr)
	case "worker":
		return cmdWorker(rest, stdout, stderr)
	case "ledger":
		return cmdLedger(rest, stdout, stderr)
	case "auth":
		return cmdAuth(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "mailflow %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "mailflow: unknown command %q\n\n%s", cmd, usage)
	return exitUnknown
}

// common holds the flags every command that reads a config has.
type common struct {
	config    string
	logFormat string
	logLevel  string
}

func newFlags(name, help string, stderr io.Writer, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.config, "c", "", "the config `FILE` (mailflow.toml)")
	fs.StringVar(&c.config, "config", "", "the config `FILE` (same as -c)")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), help)
		fmt.Fprintln(fs.Output(), "\nOptions:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; asked for help (-h, --help), it prints the help to
// stdout and says to exit 0. stop is true when the command should return
// code now.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, stop bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, true
		}
	}
	if err := fs.Parse(args); err != nil {
		return exitConfig, true
	}
	return exitOK, false
}

func (c *common) logger(stderr io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", c.logFormat)
}

// load makes the logger and reads the -c config, saying what is wrong.
func (c *common) load(stderr io.Writer) (*config.Config, *slog.Logger, int) {
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return nil, nil, exitConfig
	}
	if c.config == "" {
		fmt.Fprintln(stderr, "mailflow: -c FILE is required")
		return nil, nil, exitConfig
	}
	cfg, err := config.Load(c.config, plugins.Default)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return nil, nil, exitConfig
	}
	return cfg, log, exitOK
}

// inDoubtNote is the delivery contract's one unknowable case, said the same
// way in README.md, "run --help" and "migrate --help".
const inDoubtNote = `One case no mail program can rule out: when the connection is lost after a
message was sent but before the server's reply to it (or mailflow is killed
at that instant), the server may have kept it, and SMTP gives no way to ask.
mailflow then sends it again rather than risk losing it, and reports it as
in doubt: a log line with its Message-ID, and in_doubt in the summary.`

const runHelp = `Usage: mailflow run [--once] -c FILE

Runs every input of FILE on its schedule until SIGINT or SIGTERM. On the
first signal it fetches nothing more, gives back to their sources the
messages no output has been handed yet, lets the deliveries under way finish,
commits what settled, and exits; after shutdown_timeout (default 30s), or on
a second signal, it exits at once, and a delivery still under way is then in
doubt (reported when it is sent again). SIGHUP reloads the config and
scripts; a config that does not build is logged and the running one stays.

` + inDoubtNote + `

With --once, each input is polled once, a summary line per input is printed,
and mailflow exits: 0 when every message was delivered or dropped, 1 when
some were left at their source to be retried or a poll failed, 2 when the
config is wrong or the state_dir is in use, 3 when all was settled but some
messages went to the quarantine (so that cron notices).
`

func cmdRun(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("run", runHelp, stderr, &c)
	once := fs.Bool("once", false, "poll each input once, print a summary, exit")
	watch := fs.Bool("watch", true, "reload when the config file or a script changes")
	if code, stop := parseFlags(fs, args, stdout); stop {
		return code
	}
	cfg, log, code := c.load(stderr)
	if cfg == nil {
		return code
	}
	var opts []engine.Option
	var e *engine.Engine
	if listen := cfg.Metrics.Listen; listen != "" {
		m := metrics.New()
		srv, err := m.Serve(listen)
		if err != nil {
			log.Error("metrics: cannot listen", "listen", listen, "err", err)
			return exitConfig
		}
		defer srv.Close()
		opts = append(opts, engine.WithObserver(m))
		m.SetAuth(func() []metrics.AuthStatus { return authStatuses(e.Config()) })
		log.Info("serving metrics", "url", "http://"+listen+"/metrics", "health", "http://"+listen+"/healthz")
	}
	e, err := engine.Open(cfg, plugins.Default, log, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	defer e.Close()
	ctx, stop := stopOnSignal(log, e.Config().ShutdownTimeout)
	defer stop()

	if *once {
		start := time.Now()
		stats, err := e.RunOnce(ctx)
		printSummary(stdout, stats, time.Since(start))
		if err != nil {
			log.Error("run failed", "err", err)
			return exitFailed
		}
		code := exitOK
		for _, s := range stats {
			if s.Deferred > 0 {
				return exitFailed
			}
			if s.Quarantined > 0 || s.Held > 0 {
				code = exitQuarantined
			}
		}
		return code
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := func(why string) {
		if ok, err := e.Reload(); err != nil {
			log.Error("reload failed; the running config stays in force", "why", why, "err", err)
		} else if ok {
			log.Info("config reloaded", "why", why)
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload("SIGHUP")
			}
		}
	}()
	if *watch {
		w, err := config.Watch(ctx, e.Config, log, func() { reload("file changed") })
		if err != nil {
			log.Warn("cannot watch the config for changes; SIGHUP still reloads", "err", err)
		} else {
			defer w.Close()
		}
	}
	log.Info("mailflow running", "config", c.config, "version", version)
	err = e.Run(ctx)
	log.Info("mailflow stopped")
	if err != nil {
		log.Error("run", "err", err)
		return exitFailed
	}
	return exitOK
}

func printSummary(w io.Writer, stats map[string]engine.Stats, took time.Duration) {
	names := make([]string, 0, len(stats))
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "%s: %s\n", n, stats[n])
	}
	_ = took
}

const checkHelp = `Usage: mailflow check -c FILE

Reads FILE, checks every key, every name it refers to and every schedule,
provisions every plugin and compiles every script, then exits without
running anything: 0 when all is well, 2 with "file:line: problem" when not.
`

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("check", checkHelp, stderr, &c)
	if code, stop := parseFlags(fs, args, stdout); stop {
		return code
	}
	cfg, log, code := c.load(stderr)
	if cfg == nil {
		return code
	}
	s, err := engine.Build(cfg, plugins.Default, log, nil)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	s.Close()
	scripts := 0
	for _, p := range cfg.Pipelines {
		scripts += len(p.Scripts)
	}
	fmt.Fprintf(stdout, "%s: ok (%d inputs, %d pipelines, %d outputs, %d scripts)\n",
		c.config, len(cfg.Inputs), len(cfg.Pipelines), len(cfg.Outputs), scripts)
	return exitOK
}

const quarantineHelp = `Usage: mailflow quarantine list -c FILE
       mailflow quarantine show -c FILE ID
       mailflow quarantine resend -c FILE ID...
       mailflow quarantine delete -c FILE ID...

list shows every quarantined message: its id, when, where from, size and why.
show prints one entry's record, then the message exactly as it was kept.
resend puts each message back through its pipeline; recipients that had
already accepted it are not sent it again. It leaves the quarantine once it
is delivered or dropped (or is quarantined anew, with a new id).
delete removes entries for good.

All four work while "mailflow run" runs on the same config: the quarantine
is plain files in STATE_DIR/quarantine/ (ID.eml, the original message byte
for byte, and ID.json, the record), and an entry being resent or deleted is
locked against a second resend or delete.
`

func cmdQuarantine(args []string, stdout, stderr io.Writer) int {
	verbs := []string{"list", "show", "resend", "delete"}
	if len(args) == 0 || !slices.Contains(verbs, args[0]) {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprint(stdout, quarantineHelp)
			return exitOK
		}
		fmt.Fprint(stderr, quarantineHelp)
		return exitConfig
	}
	verb := args[0]
	var c common
	fs := newFlags("quarantine "+verb, quarantineHelp, stderr, &c)
	if code, stop := parseFlags(fs, args[1:], stdout); stop {
		return code
	}
	cfg, log, code := c.load(stderr)
	if cfg == nil {
		return code
	}
	if verb != "list" && fs.NArg() == 0 {
		fmt.Fprintf(stderr, "mailflow: quarantine %s needs an ID (see quarantine list)\n", verb)
		return exitConfig
	}
	// The quarantine is files beside the ledger, not in it: these commands
	// never take the state_dir lock that "mailflow run" holds.
	q, err := quarantine.Open(filepath.Join(cfg.StateDir, "quarantine"))
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitFailed
	}
	switch verb {
	case "list":
		entries, err := q.List()
		if err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitFailed
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tWHEN\tINPUT\tSIZE\tMESSAGE-ID\tREASON")
		for _, e := range entries {
			reason := oneLine(e.Reason)
			if e.Held {
				reason = "[source keeps it] " + reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", e.ID, e.At.Local().Format(time.DateTime), e.Input, e.Size, e.MessageID, reason)
		}
		tw.Flush()
		return exitOK
	case "show":
		entry, msg, err := q.Get(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitFailed
		}
		defer msg.Close()
		b, _ := json.MarshalIndent(entry, "", "  ")
		fmt.Fprintf(stdout, "%s\n\n", b)
		if _, err := io.Copy(stdout, msg.Original()); err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitFailed
		}
		return exitOK
	}
	var e *engine.Engine
	if verb == "resend" {
		if e, err = engine.OpenForResend(cfg, plugins.Default, log); err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitConfig
		}
		defer e.Close()
	}
	failed := false
	for _, id := range fs.Args() {
		outcome := "deleted"
		if verb == "resend" {
			outcome, err = e.Resend(context.Background(), id)
		} else {
			err = deleteEntry(q, id)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", id, err)
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", id, outcome)
	}
	if failed {
		return exitFailed
	}
	return exitOK
}

// deleteEntry removes a quarantined message once no resend holds it.
func deleteEntry(q *quarantine.Store, id string) error {
	release, err := q.Claim(id)
	if err != nil {
		return err
	}
	defer release()
	return q.Remove(id)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// stopOnSignal returns a context cancelled by the first SIGINT or SIGTERM:
// the engine then fetches nothing more and releases what no output has yet.
// If the process is still running timeout later, or a second signal comes,
// it exits at once: waiting longer for a server would only hold the user up,
// and the journal already marks what was being sent as in doubt.
func stopOnSignal(log *slog.Logger, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			log.Info("stopping: no more fetching; finishing the deliveries under way (a second signal stops at once)", "signal", sig.String(), "shutdown_timeout", timeout)
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			log.Warn("stopped at once by a second signal; deliveries under way are in doubt and reported when sent again")
		case <-time.After(timeout):
			log.Warn("shutdown_timeout passed; stopping at once; deliveries under way are in doubt and reported when sent again")
		case <-done:
			return
		}
		os.Exit(exitFailed)
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
