package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/bar"
	"github.com/mailflow/mailflow/migrate/batch"
	"github.com/mailflow/mailflow/migrate/fleet"
	"github.com/mailflow/mailflow/status"
)

// queueFlags are how a command reaches NATS.
type queueFlags struct{ fleet.Conn }

// need checks that --queue was given.
func (q *queueFlags) need(cmd *cobra.Command) error {
	if q.URL == "" {
		return failed(cmd, exitConfig, errors.New("--queue is needed"))
	}
	return nil
}

type queueOptions struct {
	name      string
	ackWait   time.Duration
	replicas  int
	retries   int
	retryWait time.Duration
	wait      bool
}

// queueBatch puts a batch's mailboxes in the fleet's queue.
func queueBatch(cmd *cobra.Command, file string, jobs []*batch.Job, q *queueFlags, o queueOptions) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	ctx, stop := stopOnSignal(slog.New(slog.NewTextHandler(stderr, nil)), time.Minute)
	defer stop()
	nc, js, err := q.Connect(ctx, "mailflow migrate batch", 30*time.Second)
	if err != nil {
		return failed(cmd, exitFailed, err)
	}
	defer nc.Close()
	kv, err := fleet.SetUp(ctx, nc, js, o.replicas, o.ackWait)
	if err != nil {
		return failed(cmd, exitFailed, err)
	}
	name := fleet.BatchName(file, o.name)
	added, already, err := fleet.Publish(ctx, js, kv, fleet.JobsOf(name, jobs, o.retries, o.retryWait))
	fmt.Fprintf(stdout, "batch %s (%s): %d mailboxes queued, %d already in the queue\n", name, file, added, already)
	if err != nil {
		return failed(cmd, exitFailed, err)
	}
	if !o.wait {
		fmt.Fprintf(stdout, "workers take them (mailflow worker --queue %s); see where they stand with\n  mailflow migrate status --queue %s --name %s\n", q.URL, q.URL, name)
		return nil
	}
	return exitError(followStatus(ctx, kv, name, stdout, stderr))
}

func workerCmd(g *globals) *cobra.Command {
	var q queueFlags
	w := fleet.Worker{}
	cmd := &cobra.Command{
		Use:   "worker --queue nats://HOST:4222[,nats://HOST2:4222...]",
		Short: "Take the mailbox jobs of a batch queued in NATS JetStream and run them",
		Long: `Takes mailbox jobs that "mailflow migrate batch FILE --queue URL" put in
NATS JetStream and runs each exactly as "mailflow migrate" (resumable,
verified). While a mailbox runs the worker tells NATS it is in progress; it
acknowledges the job only after the mailbox was migrated and verified. A
worker that dies leaves its jobs unacknowledged: NATS gives each to another
worker after the ack wait, which resumes it (into IMAP the destination's own
dedup keeps every message once). A failing mailbox is retried with back-off
(the batch's --retries and --retry-wait) while its error may pass by
itself, then reported failed. Each mailbox's state is in the bucket
"mailflow migrate status" reads.

The password_env / password_file columns of the batch name variables and
files on the worker's machine. SIGINT or SIGTERM stops the running mailboxes
cleanly and hands their jobs back at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := q.need(cmd); err != nil {
				return err
			}
			if w.StateDir == "" {
				w.StateDir = filepath.Join(migrate.StateHome(), "mailflow", "worker")
			}
			if err := os.MkdirAll(w.StateDir, 0o700); err != nil {
				return failed(cmd, exitConfig, err)
			}
			var err error
			if w.Child, err = childCommand(); err != nil {
				return failed(cmd, exitConfig, err)
			}
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return failed(cmd, exitConfig, err)
			}
			w.Log = log.With("worker", w.Name)
			ctx, stop := stopOnSignal(w.Log, time.Minute)
			defer stop()
			q.Log = w.Log
			nc, js, err := q.Connect(ctx, "mailflow worker "+w.Name, time.Minute)
			if err != nil {
				return failed(cmd, exitFailed, err)
			}
			defer nc.Close()
			cons, kv, err := fleet.WaitForQueue(ctx, js, w.Log)
			if err != nil {
				return failed(cmd, exitFailed, err)
			}
			if ctx.Err() == nil {
				w.Run(ctx, cons, kv)
			}
			w.Log.Info("stopped")
			return nil
		},
	}
	f := cmd.Flags()
	q.Flags(f)
	f.IntVar(&w.Parallel, "parallel", 4, "mailboxes this worker migrates at once")
	f.IntVar(&w.PerHost, "max-per-host", 2, "mailboxes this worker runs at once on one server")
	f.StringVar(&w.StateDir, "state", "", "`DIR` for each mailbox's record on this machine (default under $XDG_STATE_HOME/mailflow/worker)")
	host, _ := os.Hostname()
	f.StringVar(&w.Name, "name", fmt.Sprintf("%s-%d", host, os.Getpid()), "this worker's `NAME` in the status")
	return cmd
}

func fleetStatusCmd() *cobra.Command {
	var q queueFlags
	var name, report, httpAddr string
	var wait bool
	cmd := &cobra.Command{
		Use:   "status --queue nats://HOST:4222 [--name BATCH] [--wait] [--report FILE.csv]",
		Short: "Where every mailbox of the fleet's batches stands",
		Long: `Shows where every mailbox of the fleet's batches stands (from the NATS
JetStream bucket the workers write): state, the worker that has or finished
it, messages done/total, verification and the last error. Exits 1 if any
mailbox failed, 4 if some are still queued or running, 0 when all are done.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := q.need(cmd); err != nil {
				return err
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			ctx, stop := stopOnSignal(slog.New(slog.NewTextHandler(stderr, nil)), time.Minute)
			defer stop()
			nc, js, err := q.Connect(ctx, "mailflow migrate status", 30*time.Second)
			if err != nil {
				return failed(cmd, exitFailed, err)
			}
			defer nc.Close()
			var kv jetstream.KeyValue
			if err := fleet.Retry(ctx, func(ctx context.Context) (err error) { kv, err = js.KeyValue(ctx, fleet.Bucket); return err }); err != nil {
				return failed(cmd, exitFailed, fmt.Errorf("no batch was queued here: %w", err))
			}
			code := exitOK
			if wait {
				page := &status.FleetProgress{}
				if httpAddr != "" {
					if err := status.ServeMigration(ctx, httpAddr, page, slog.New(slog.NewTextHandler(stderr, nil))); err != nil {
						return failed(cmd, exitConfig, err)
					}
				}
				code = followStatus(ctx, kv, name, stdout, stderr, page.Set)
			}
			all, err := fleet.ReadStatuses(ctx, kv, name)
			if err != nil {
				return failed(cmd, exitFailed, err)
			}
			if !wait {
				code = printStatuses(stdout, all)
			}
			if report != "" {
				if err := fleet.WriteReport(report, all); err != nil {
					fmt.Fprintln(stderr, "mailflow: report:", err)
				}
			}
			return exitError(code)
		},
	}
	f := cmd.Flags()
	q.Flags(f)
	f.StringVar(&name, "name", "", "only this batch")
	f.BoolVar(&wait, "wait", false, "redraw until every mailbox is done or failed")
	f.StringVar(&report, "report", "", "also write the table as CSV to `FILE`")
	f.StringVar(&httpAddr, "http", "", "with --wait: also show the fleet in a browser, at `ADDR` (127.0.0.1:8025)")
	return cmd
}

// followStatus shows the batch as it goes (a table redrawn on a
// terminal, else a line per change) until nothing is left to run, then
// prints it a last time.
func followStatus(ctx context.Context, kv jetstream.KeyValue, name string, stdout, stderr io.Writer, seen ...func(map[string]fleet.Status)) int {
	table := bar.IsTerminal(stderr)
	last := map[string]string{}
	all := fleet.Follow(ctx, kv, name, 2*time.Second, func(all map[string]fleet.Status, err error) {
		for _, fn := range seen {
			fn(all)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			fmt.Fprintln(stderr, "mailflow migrate status:", err)
		case table:
			var b strings.Builder
			b.WriteString("\x1b[H\x1b[2J")
			printStatuses(&b, all)
			io.WriteString(stderr, b.String())
		default:
			for key, st := range all {
				line := fmt.Sprintf("%s %s %d/%d", st.State, st.Worker, st.Done, st.Total)
				if last[key] != line {
					last[key] = line
					fmt.Fprintf(stderr, "%s  %s: %s (%s) %d/%d %s\n", time.Now().Format("15:04:05"), st.Mailbox, st.State, st.Worker, st.Done, st.Total, st.Error)
				}
			}
		}
	})
	return printStatuses(stdout, all)
}

// printStatuses prints the table and the counts, and returns the exit
// code they make.
func printStatuses(w io.Writer, all map[string]fleet.Status) int {
	switch t := fleet.WriteTable(w, all); {
	case t.Failed > 0:
		return exitFailed
	case t.Done < t.All:
		return exitPending
	}
	return exitOK
}
