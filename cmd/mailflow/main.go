// Command mailflow moves e-mail through a scriptable pipeline. This package
// parses the command line (spf13/cobra), calls the libraries that do the
// work, and prints what they return.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/internal/buildinfo"
	"github.com/mailflow/mailflow/internal/manpage"
	"github.com/mailflow/mailflow/internal/profile"
	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/plugins"
	_ "github.com/mailflow/mailflow/plugins/all"
)

// version is set at build time with -ldflags "-X main.version=..."; if not,
// init makes it the module version Go stamped in the binary (buildinfo).
var version string

func init() { version = buildinfo.Read(version).Version }

// Exit codes, the same for every command.
const (
	exitOK     = 0
	exitFailed = 1 // something did not go through (messages left to retry, a poll failed)
	exitConfig = 2 // bad usage or config, or the state_dir in use
	// exitQuarantined: everything was settled, but some messages went to
	// the quarantine (or were held): a person should look (quarantine list).
	exitQuarantined = 3
	// exitPending: migrate status found mailboxes still queued or running.
	exitPending = 4
)

const exitCodes = `Exit codes: 0 all went through; 1 something failed and stays at its source to
be retried; 2 bad usage or configuration, or the state_dir in use; 3 all was
settled but some messages went to the quarantine ("mailflow quarantine list");
4 (migrate status) mailboxes still queued or running.`

// exitError ends a command with a code. Its message, if any, was printed.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	stop := profile.FromEnv()
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	root := newRoot(g)
	root.SetArgs(legacyArgs(args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	var code exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	}
	// cobra's own: an unknown command or flag, a wrong number of arguments.
	fmt.Fprintf(stderr, "mailflow: %v\n", err)
	return exitConfig
}

// legacyArgs keeps the command lines of earlier versions working:
// "migrate --batch FILE" is "migrate batch FILE".
func legacyArgs(args []string) []string {
	if len(args) == 0 || args[0] != "migrate" {
		return args
	}
	for i, a := range args {
		if a == "--batch" && i+1 < len(args) {
			return append(append([]string{"migrate", "batch", args[i+1]}, args[1:i]...), args[i+2:]...)
		}
		if v, ok := strings.CutPrefix(a, "--batch="); ok {
			return append(append([]string{"migrate", "batch", v}, args[1:i]...), args[i+1:]...)
		}
	}
	return args
}

// globals are the flags every command takes, before or after its name.
type globals struct {
	config    string
	logFormat string
	logLevel  string
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "mailflow",
		Short: "Move e-mail through a scriptable pipeline",
		Long: `mailflow moves e-mail through a scriptable pipeline: inputs (POP3, IMAP,
Maildir, mbox, or mail received over SMTP and LMTP) take mail in, Lua filter
scripts rewrite, route or drop it, outputs (SMTP, IMAP, Maildir, mbox, the
Gmail API) deliver it. A message leaves its source only after every output it
was routed to accepted it.

` + exitCodes,
		Version:           version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false}, // "mailflow completion bash" etc.
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			cmd.Help()
			return exitError(exitConfig)
		},
	}
	root.SetVersionTemplate("mailflow {{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetHelpTemplate("{{.UsageString}}")
	pf := root.PersistentFlags()
	pf.StringVarP(&g.config, "config", "c", "", "the config `FILE` (default: $MAILFLOW_CONFIG, ./mailflow.toml, ~/.config/mailflow/mailflow.toml, /etc/mailflow/mailflow.toml)")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(runCmd(g), checkCmd(g), statusCmd(g), testCmd(g), migrateCmd(g), workerCmd(g),
		quarantineCmd(g), ledgerCmd(g), authCmd(g), manpage.Command(), &cobra.Command{
			Use: "version", Short: "Print the version and the commit it was built from", Args: cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) { fmt.Fprint(cmd.OutOrStdout(), buildinfo.Read(version)) },
		})
	return root
}

// usageTemplate is every command's help: the usage line first, as
// mailflow's commands always printed it, then what it does, its
// subcommands and its options, its own apart from the global ones.
const usageTemplate = `Usage: {{if and .Runnable .HasParent}}{{.UseLine}}{{if .HasAvailableSubCommands}}
       {{.CommandPath}} COMMAND{{end}}{{else}}{{.CommandPath}} COMMAND [flags]{{end}}{{with (or .Long .Short)}}

{{. | trimTrailingWhitespaces}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Options:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global options (before or after the command):
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Run "{{.CommandPath}} COMMAND --help" for a command's options.{{end}}
`

// logger is the log the flags ask for, written to w.
func (g *globals) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", g.logFormat)
}

// load makes the logger and reads the -c config, saying what is wrong.
// -c may name a migration's state directory: its config is the plan kept
// there (for "mailflow quarantine" on what a migration quarantined).
func (g *globals) load(cmd *cobra.Command) (*config.Config, *slog.Logger, error) {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, failed(cmd, exitConfig, err)
	}
	if _, err := g.configPath(); err != nil {
		return nil, nil, failed(cmd, exitConfig, err)
	}
	var cfg *config.Config
	if st, serr := os.Stat(g.config); serr == nil && st.IsDir() {
		cfg, err = migrate.LoadConfig(g.config)
	} else {
		cfg, err = config.Load(g.config, plugins.Default)
	}
	if err != nil {
		return nil, nil, failed(cmd, exitConfig, err)
	}
	return cfg, log, nil
}

// configPath is -c, or the first config found where fetchmail's users
// would look (config.Places).
func (g *globals) configPath() (string, error) {
	var err error
	if g.config == "" {
		g.config, err = config.Find()
	}
	return g.config, err
}

// failed prints err and ends the command with code.
func failed(cmd *cobra.Command, code int, err error) error {
	fmt.Fprintln(cmd.ErrOrStderr(), "mailflow:", err)
	return exitError(code)
}

// inDoubtNote is the delivery contract's one unknowable case, said the same
// way in README.md, "run --help" and "migrate --help".
const inDoubtNote = `One case no mail program can rule out: when the connection is lost after a
message was sent but before the server's reply to it (or mailflow is killed
at that instant), the server may have kept it, and SMTP gives no way to ask.
mailflow then sends it again rather than risk losing it, and reports it as
in doubt: a log line with its Message-ID, and in_doubt in the summary.`

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
