package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/bar"
	"github.com/mailflow/mailflow/migrate/batch"
	"github.com/mailflow/mailflow/status"
)

func batchCmd(g *globals) *cobra.Command {
	r := batch.Runner{}
	var report, progress, httpAddr string
	var q queueFlags
	var o queueOptions
	cmd := &cobra.Command{
		Use:   "batch FILE.csv [--parallel 4] [--max-per-host 2] [--queue nats://HOST:4222]",
		Short: "Migrate many mailboxes: on this machine, or as jobs in NATS JetStream for workers",
		Long: `FILE.csv has a header row and one row per mailbox. Columns (from and to are
required; the rest as --from, --to and the options of mailflow migrate):

  ` + strings.Join(batch.Columns(), ", ") + `

Secrets are given by the name of an environment variable or a file, never
inline (a "password" column is refused). Each mailbox is resumable: kill
the batch, run it again, and each goes on where it stopped. A mailbox that
fails is tried again while its error may pass by itself (a server down, a
login refused, messages left to retry), not when its row is wrong. The
batch ends with a report (human, and CSV in --report) and exits 1 if any
mailbox failed, 3 if some messages were quarantined. "mailflow migrate
--batch FILE" is the same command.

With --queue, the batch goes to NATS JetStream, one job per mailbox, for
"mailflow worker" on any number of machines (see its help, and "mailflow
migrate status"); NATS credentials and TLS come from the --queue-* flags.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, stdout, stderr := args[0], cmd.OutOrStdout(), cmd.ErrOrStderr()
			jobs, err := batch.Read(file)
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			if q.URL != "" {
				o.retries, o.retryWait = max(1, r.Retries), r.RetryWait
				return queueBatch(cmd, file, jobs, &q, o)
			}
			if r.StateDir == "" {
				abs, _ := filepath.Abs(file)
				sum := sha256.Sum256([]byte(abs))
				r.StateDir = filepath.Join(migrate.StateHome(), "mailflow", "batch-"+hex.EncodeToString(sum[:6]))
			}
			if report == "" {
				report = filepath.Join(r.StateDir, "report.csv")
			}
			if err := os.MkdirAll(r.StateDir, 0o700); err != nil {
				return failed(cmd, exitConfig, err)
			}
			if r.Child, err = childCommand(); err != nil {
				return failed(cmd, exitConfig, err)
			}
			ctx, stop := stopOnSignal(slog.New(slog.NewTextHandler(stderr, nil)), time.Minute)
			defer stop()
			table := progress == "table" || progress == "auto" && bar.IsTerminal(stderr)
			if !table {
				r.Changed = func(j *batch.Job) {
					fmt.Fprintf(stderr, "%s  %s: %s\n", time.Now().Format("15:04:05"), j.Name, j.Line())
				}
			}
			fmt.Fprintf(stderr, "migrating %d mailboxes, %d at once (at most %d per server); state in %s\n", len(jobs), max(1, r.Parallel), max(1, r.PerHost), r.StateDir)
			done := make(chan struct{})
			drawn := make(chan struct{})
			go func() {
				defer close(drawn)
				for table {
					fmt.Fprint(stderr, "\x1b[H\x1b[2J")
					r.WriteTable(stderr, jobs)
					select {
					case <-done:
						fmt.Fprint(stderr, "\x1b[H\x1b[2J")
						r.WriteTable(stderr, jobs)
						return
					case <-time.After(time.Second):
					}
				}
			}()
			if httpAddr != "" {
				if err := status.ServeMigration(ctx, httpAddr, status.BatchProgress{Runner: &r, Jobs: jobs}, slog.New(slog.NewTextHandler(stderr, nil))); err != nil {
					return failed(cmd, exitConfig, err)
				}
			}
			r.Run(ctx, jobs)
			close(done)
			<-drawn
			failed, quarantined := batch.WriteSummary(stdout, jobs)
			if err := batch.WriteReport(report, jobs); err != nil {
				fmt.Fprintln(stderr, "mailflow: report:", err)
			} else {
				fmt.Fprintf(stdout, "report: %s\n", report)
			}
			switch {
			case failed > 0 || ctx.Err() != nil:
				return exitError(exitFailed)
			case quarantined > 0:
				return exitError(exitQuarantined)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&r.Parallel, "parallel", 4, "mailboxes migrated at once")
	f.IntVar(&r.PerHost, "max-per-host", 2, "mailboxes at once on one server (source or destination)")
	f.IntVar(&r.Retries, "retries", 3, "tries of a failing mailbox before it is reported failed")
	f.DurationVar(&r.RetryWait, "retry-wait", 10*time.Second, "wait before the first retry (doubling after each)")
	f.StringVar(&r.StateDir, "state", "", "`DIR` for each mailbox's record (default under $XDG_STATE_HOME/mailflow)")
	f.StringVar(&report, "report", "", "write the final report as CSV to `FILE` (default STATE/report.csv)")
	f.StringVar(&progress, "progress", "auto", "table (redrawn on a terminal), lines, or auto")
	f.StringVar(&httpAddr, "http", "", "also show every mailbox's progress in a browser, at `ADDR` (127.0.0.1:8025)")
	q.Flags(f)
	f.StringVar(&o.name, "name", "", "with --queue: the batch's `NAME` in the fleet (default: the file's name)")
	f.DurationVar(&o.ackWait, "ack-wait", time.Minute, "with --queue: how long a job may go without a worker's heartbeat before another worker gets it")
	f.IntVar(&o.replicas, "replicas", 0, "with --queue: copies of the jobs and their state in the NATS cluster (default 3 on a cluster, 1 on one server)")
	f.BoolVar(&o.wait, "wait", false, "with --queue: follow the batch until every mailbox is done or failed, then report as a local batch does")
	return cmd
}

// childCommand is how a batch or a worker runs one mailbox: this program,
// as "mailflow migrate --child".
func childCommand() (migrate.Child, error) {
	self, err := os.Executable()
	return migrate.Child{Command: []string{self, "migrate", "child", "--log-level", "warn"}}, err
}
