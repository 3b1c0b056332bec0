package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/bar"
	"github.com/mailflow/mailflow/status"
)

func migrateCmd(g *globals) *cobra.Command {
	var p migrate.Plan
	var since, folders, folderMap, progress, reportJSON, httpAddr string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "migrate --from URL --to URL [--rcpt ADDRESS] | -c FILE",
		Short: "Move a mailbox, resumably, with progress, a report and (into IMAP) a verification",
		Long: `Moves every message of a POP3 mailbox to an SMTP server, or of an IMAP
mailbox (every folder, or those --folders names), a POP3 mailbox or an mbox
file (a Google Takeout) into an IMAP mailbox or into Gmail through its API,
byte for byte (Date, Message-ID, every header kept; with its folder, flags
and date: into Gmail a folder is a label), with a progress bar. An IMAP
source is left as it is (--delete-source empties it, only after a
verification that found nothing missing). Into IMAP, a message the
destination folder holds already (same Message-ID; without one, same Date,
From, Subject and size) is not copied again, and the run ends with a
verification, folder by folder. It is resumable: interrupt it (Ctrl-C) or
kill it, run the same command again, and it goes on where it stopped. It
ends with a report and exits 1 if anything is still on the old server to be
retried, 2 if the new server refused a folder (the report names it: give it
another name with --folder-map), 3 if all that did not move was refused by
the new server or quarantined ("mailflow quarantine resend" with the id).

` + inDoubtNote + `

` + migrate.URLHelp + `

What was moved is recorded in --state (by default a directory under
$XDG_STATE_HOME/mailflow/migrate named after --from, --to and --rcpt).
With -c FILE, the inputs of FILE are polled once instead.`,
		Example: `  mailflow migrate --from pop3s://me@old.example --to smtp://mx.new.example --rcpt me@new.example
  mailflow migrate --from imaps://me@old.example --to imaps://me@new.example --to-password-env NEW_PW
  mailflow migrate --from mbox:///home/me/Takeout.mbox --to 'gmail://me@gmail.com?client_id=ID'
  mailflow migrate batch mailboxes.csv --parallel 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") {
				// One line per message would drown the progress bar; the
				// report says what happened. --log-level info brings them back.
				g.logLevel = "warn"
			}
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			if err := p.SetText(g.config, since, folders, folderMap); err != nil {
				return failed(cmd, exitConfig, err)
			}
			if resumed, err := p.Resume(); err != nil {
				return failed(cmd, exitConfig, err)
			} else if resumed {
				log.Info("options not given again are the saved plan's", "state", p.StateDir)
			}
			ctx, stop := stopOnSignal(log, 30*time.Second)
			defer stop()
			if dryRun {
				list, totals, err := migrate.DryRun(ctx, p, log)
				if err != nil {
					return failed(cmd, exitFailed, err)
				}
				migrate.WriteDryRun(cmd.OutOrStdout(), list, totals)
				return nil
			}
			prog := bar.New(progress, cmd.ErrOrStderr())
			log, _ = g.logger(prog.Logs())
			var obs migrate.Observer = prog
			if httpAddr != "" {
				page := &status.MailboxProgress{Title: "Migration of " + p.From.Redacted()}
				if err := status.ServeMigration(ctx, httpAddr, page, log); err != nil {
					return failed(cmd, exitConfig, err)
				}
				obs = migrate.Observers(prog, page)
			}
			r := migrate.Run(ctx, p, migrate.Options{Log: log, Observer: obs})
			prog.Finish()
			if r.Class() == migrate.ClassPlan && len(r.RefusedFolders) == 0 {
				return failed(cmd, exitConfig, errors.New(r.Errors[0].Message))
			}
			r.WriteText(cmd.OutOrStdout(), configPath(g.config, r.StateDir))
			if reportJSON != "" {
				if err := writeJSON(reportJSON, cmd.OutOrStdout(), r); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "mailflow: --report-json:", err)
				}
			}
			return exitError(exitCode(r))
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.From.URL, "from", "", "the mailbox `URL` to move from (pop3://, pop3s://, imap://, imaps://, mbox:///FILE)")
	f.StringVar(&p.To.URL, "to", "", "the `URL` to move to (smtp://, smtps://, imap://, imaps://, gmail://ADDRESS)")
	f.StringVar(&p.Rcpt, "rcpt", "", "SMTP destination: the envelope recipient `ADDRESS` at the new server")
	f.StringVar(&p.From.PasswordEnv, "password-env", "", "environment `VAR` holding the source's password (default MAILFLOW_PASSWORD)")
	f.StringVar(&p.From.PasswordFile, "password-file", "", "`FILE` holding the source's password")
	f.StringVar(&p.To.PasswordEnv, "to-password-env", "", "environment `VAR` holding the destination's password")
	f.StringVar(&p.To.PasswordFile, "to-password-file", "", "`FILE` holding the destination's password")
	f.BoolVar(&p.Keep, "keep", false, "POP3 source: leave the messages on the old server (default: delete each once it was accepted)")
	f.StringVar(&since, "since", "", "move only messages dated on or after `DATE` (2006-01-02); older ones stay")
	f.StringVar(&p.Rate, "rate", "", "SMTP or IMAP destination: send at most this many messages per second, minute or hour (`10/s`, 100/m)")
	f.StringVar(&p.StateDir, "state", "", "`DIR` for the record of what was moved (for resuming)")
	f.StringVar(&p.CAFile, "ca-file", "", "PEM `FILE` of the CA that signed the servers' certificates (private CAs)")
	f.BoolVar(&p.AllowPlaintextAuth, "allow-plaintext-auth", false, "allow passwords over a connection without TLS (?tls=none)")
	f.Int64Var(&p.MaxMessageSize, "max-message-size", 0, "leave messages larger than this many `BYTES` on the old server (0: no limit)")
	f.StringVar(&folders, "folders", "*", "IMAP source: the folders to move, as comma-separated LIST `PATTERNS`")
	f.StringVar(&folderMap, "folder-map", "", "IMAP destination: rename folders, `FROM=TO,...` (\"Sent=Sent Items,Archive/*=Old/*\")")
	f.IntVar(&p.Parallel, "parallel", 4, "IMAP: `N` folders fetched and N messages stored at once")
	f.Int64Var(&p.MaxBytesPerSecond, "max-bytes-per-second", 0, "IMAP destination: upload at most `N` bytes per second (0: no limit)")
	p.GmailFlags(f)
	f.BoolVar(&p.AddMessageID, "add-message-id", false, "IMAP destination: give a message without a Message-ID one (made from Date, From, Subject, size)")
	f.BoolVar(&p.DeleteSource, "delete-source", false, "IMAP source: delete the moved messages, once the verification found none missing")
	f.BoolVar(&p.SyncDeletes, "sync-deletes", false, "IMAP destination: delete there what an earlier run moved and was deleted at the source since")
	f.BoolVar(&dryRun, "dry-run", false, "list what would move, and the total size; send nothing")
	f.StringVar(&progress, "progress", "auto", "bar, log (a line every 5 s), none, or auto (bar on a terminal)")
	f.StringVar(&reportJSON, "report-json", "", "also write the report as JSON to `FILE` (- for stdout)")
	f.StringVar(&httpAddr, "http", "", "also show the progress per folder in a browser, at `ADDR` (127.0.0.1:8025)")
	cmd.AddCommand(batchCmd(g), fleetStatusCmd(), childCmd(g))
	return cmd
}

// childCmd is one mailbox of a batch or a fleet: the plan comes as JSON on
// stdin, the progress and the report go out as JSON lines on stdout
// (migrate.Child is the other side).
func childCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "child",
		Short:  "Run one mailbox of a batch or a worker (the plan on stdin, JSON lines out)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			ctx, stop := stopOnSignal(log, 30*time.Second)
			defer stop()
			if err := migrate.ServeChild(ctx, cmd.InOrStdin(), cmd.OutOrStdout(), log); err != nil {
				return failed(cmd, exitFailed, err)
			}
			return nil
		},
	}
}

func exitCode(r *migrate.Report) int {
	if r.Class() == migrate.ClassPlan {
		return exitConfig // a folder the destination refused: the plan must change
	}
	return [...]int{exitOK, exitQuarantined, exitFailed}[r.Result()]
}

// configPath is the -c to give "mailflow quarantine" for a run's state.
func configPath(config, state string) string {
	if config != "" {
		return config
	}
	return state
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
