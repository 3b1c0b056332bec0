package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/batch"
)

const batchHelp = `Usage: mailflow migrate --batch FILE.csv [--parallel 4] [--max-per-host 2]
                        [--retries 3] [--retry-wait 10s] [--state DIR] [--report FILE.csv]

FILE.csv has a header row and one row per mailbox. Columns (from and to are
required; the rest as --from, --to and the options of mailflow migrate):

  from, to, rcpt, password_env, password_file, to_password_env,
  to_password_file, folders, folder_map, since, keep, add_message_id,
  max_bytes_per_second, ca_file, allow_plaintext_auth

Secrets are given by the name of an environment variable or a file, never
inline (a "password" column is refused). Each mailbox is resumable: kill
the batch, run it again, and each goes on where it stopped. A mailbox that
fails is tried again while its error may pass by itself (a server down, a
login refused, messages left to retry), not when its row is wrong. The
batch ends with a report (human, and CSV in --report) and exits 1 if any
mailbox failed, 3 if some messages were quarantined.

Across machines (NATS JetStream):
  mailflow migrate --batch FILE.csv --queue nats://HOST:4222 [--name NAME]
      [--ack-wait 1m] [--replicas N] [--wait]
                       queue one job per mailbox (publishing the same batch
                       again adds nothing; a failed mailbox is queued again)
  mailflow worker --queue nats://HOST:4222 [--parallel 4]
                       on each machine: take jobs and run them
  mailflow migrate status --queue nats://HOST:4222 [--name NAME] [--wait]
                       where every mailbox of the fleet stands
NATS credentials: --queue-creds FILE, --queue-user NAME with
--queue-password-file FILE, or --queue-token-file FILE; TLS (tls://) is
verified, against --queue-ca FILE if given.
`

func cmdMigrateBatch(file string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate --batch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, batchHelp) }
	fs.String("batch", "", "the CSV `FILE` of mailboxes")
	r := batch.Runner{}
	fs.IntVar(&r.Parallel, "parallel", 4, "mailboxes migrated at once")
	fs.IntVar(&r.PerHost, "max-per-host", 2, "mailboxes at once on one server (source or destination)")
	fs.IntVar(&r.Retries, "retries", 3, "tries of a failing mailbox before it is reported failed")
	fs.DurationVar(&r.RetryWait, "retry-wait", 10*time.Second, "wait before the first retry (doubling after each)")
	fs.StringVar(&r.StateDir, "state", "", "`DIR` for each mailbox's record (default under $XDG_STATE_HOME/mailflow)")
	report := fs.String("report", "", "write the final report as CSV to `FILE` (default STATE/report.csv)")
	progress := fs.String("progress", "auto", "table (redrawn on a terminal), lines, or auto")
	var q queueFlags
	q.register(fs)
	name := fs.String("name", "", "with --queue: the batch's `NAME` in the fleet (default: the file's name)")
	ackWait := fs.Duration("ack-wait", time.Minute, "with --queue: how long a job may go without a worker's heartbeat before another worker gets it")
	replicas := fs.Int("replicas", 0, "with --queue: copies of the jobs and their state in the NATS cluster (default 3 on a cluster, 1 on one server)")
	wait := fs.Bool("wait", false, "with --queue: follow the batch until every mailbox is done or failed, then report as a local batch does")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	jobs, err := batch.Read(file)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitConfig
	}
	if q.URL != "" {
		return queueBatch(file, jobs, &q, queueOptions{name: *name, ackWait: *ackWait, replicas: *replicas,
			retries: max(1, r.Retries), retryWait: r.RetryWait, wait: *wait}, stdout, stderr)
	}
	if r.StateDir == "" {
		abs, _ := filepath.Abs(file)
		sum := sha256.Sum256([]byte(abs))
		r.StateDir = filepath.Join(migrate.StateHome(), "mailflow", "batch-"+hex.EncodeToString(sum[:6]))
	}
	if *report == "" {
		*report = filepath.Join(r.StateDir, "report.csv")
	}
	if err := os.MkdirAll(r.StateDir, 0o700); err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitConfig
	}
	if r.Child, err = childCommand(); err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitConfig
	}
	ctx, stop := stopOnSignal(slog.New(slog.NewTextHandler(stderr, nil)), time.Minute)
	defer stop()
	table := *progress == "table" || *progress == "auto" && isTerminal(stderrFile(stderr))
	if !table {
		r.Changed = func(j *batch.Job) {
			fmt.Fprintf(stderr, "%s  %s: %s\n", time.Now().Format("15:04:05"), j.Name, jobLine(j))
		}
	}
	fmt.Fprintf(stderr, "migrating %d mailboxes, %d at once (at most %d per server); state in %s\n", len(jobs), max(1, r.Parallel), max(1, r.PerHost), r.StateDir)
	done := make(chan struct{})
	if table {
		go func() {
			for {
				drawBatch(stderr, &r, jobs)
				select {
				case <-done:
					drawBatch(stderr, &r, jobs)
					return
				case <-time.After(time.Second):
				}
			}
		}()
	}
	r.Run(ctx, jobs)
	close(done)

	failed, quarantined := printBatchSummary(stdout, jobs)
	if err := batch.WriteReport(*report, jobs); err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch: report:", err)
	} else {
		fmt.Fprintf(stdout, "report: %s\n", *report)
	}
	switch {
	case failed > 0 || ctx.Err() != nil:
		return exitFailed
	case quarantined > 0:
		return exitQuarantined
	}
	return exitOK
}

// childCommand is how a batch or a worker runs one mailbox: this program,
// as "mailflow migrate --child".
func childCommand() (migrate.Child, error) {
	self, err := os.Executable()
	return migrate.Child{Command: []string{self, "migrate", "--child", "--log-level", "warn"}}, err
}

func stderrFile(w io.Writer) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return nil
}

// jobLine says how a job stands, in a line.
func jobLine(j *batch.Job) string {
	switch {
	case j.State == batch.Running:
		return fmt.Sprintf("running (try %d)", j.Tries)
	case j.State == batch.Done:
		return fmt.Sprintf("done: moved %d, verified: %s", j.Report.Moved, j.Report.Verified())
	case j.State == batch.Retrying:
		return fmt.Sprintf("failed (%s); retrying in %v", j.Error(), j.RetryIn())
	}
	return fmt.Sprintf("%s: %s", j.State, j.Error())
}

// drawBatch redraws the table of every mailbox on the terminal.
func drawBatch(w io.Writer, r *batch.Runner, jobs []*batch.Job) {
	r.Lock()
	defer r.Unlock()
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "%-44s %-9s %15s %9s  %s\n", "MAILBOX", "STATE", "MESSAGES", "MSG/S", "ERROR")
	for _, j := range jobs {
		fmt.Fprintf(&b, "%-44s %-9s %15s %9.1f  %s\n", clip(j.Name, 44), j.State,
			fmt.Sprintf("%d/%d", j.Progress.Done.Messages, j.Progress.Total.Messages), j.Progress.Rate, clip(j.Error(), 60))
	}
	io.WriteString(w, b.String())
}

// printBatchSummary prints the final report and counts the failed and
// quarantined.
func printBatchSummary(w io.Writer, jobs []*batch.Job) (failed, quarantined int) {
	fmt.Fprintf(w, "\n%-44s %-7s %6s %8s %9s %8s  %s\n", "MAILBOX", "STATE", "TRIES", "MOVED", "VERIFIED", "TIME", "ERROR")
	done := 0
	for _, j := range jobs {
		moved, verified := "", ""
		if j.Report != nil {
			moved, verified = fmt.Sprint(j.Report.Moved), j.Report.Verified()
		}
		fmt.Fprintf(w, "%-44s %-7s %6d %8s %9s %8s  %s\n", clip(j.Name, 44), j.State, j.Tries, moved, verified, j.Took.Round(time.Second), j.Error())
		switch {
		case j.State != batch.Done:
			failed++
		case j.Report.Result() == migrate.DoneQuarantined:
			quarantined++
			done++
		default:
			done++
		}
	}
	fmt.Fprintf(w, "\n%d mailboxes: %d done, %d failed\n", len(jobs), done, failed)
	return failed, quarantined
}
