package main

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// mailflow migrate --batch FILE runs many single-mailbox migrations, each
// exactly `mailflow migrate` for one row (resumable, verified), as a child
// process of its own: one that fails or dies takes nothing else with it,
// and its state (what it moved) lives in a directory of its own under the
// batch's state. Rows run --parallel at once, at most --max-per-host on
// one server (servers throttle), a failed one is retried with back-off and
// then reported while the others go on.

const batchHelp = `Usage: mailflow migrate --batch FILE.csv [--parallel 4] [--max-per-host 2]
                        [--retries 3] [--retry-wait 10s] [--state DIR] [--report FILE.csv]

FILE.csv has a header row and one row per mailbox. Columns (from and to are
required; the rest as --from, --to and the options of mailflow migrate):

  from, to, rcpt, password_env, password_file, to_password_env,
  to_password_file, folders, folder_map, since, keep, add_message_id,
  max_bytes_per_second, ca_file, allow_plaintext_auth

Secrets are given by the name of an environment variable or a file, never
inline (a "password" column is refused). Each mailbox is resumable: kill
the batch, run it again, and each goes on where it stopped. The batch ends
with a report (human, and CSV in --report) and exits 1 if any mailbox
failed, 3 if some messages were quarantined.

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

// batchColumns maps CSV columns to the migrate flags they become.
var batchColumns = map[string]string{
	"from": "--from", "to": "--to", "rcpt": "--rcpt",
	"password_env": "--password-env", "password_file": "--password-file",
	"to_password_env": "--to-password-env", "to_password_file": "--to-password-file",
	"folders": "--folders", "folder_map": "--folder-map", "since": "--since",
	"max_bytes_per_second": "--max-bytes-per-second", "ca_file": "--ca-file",
	"keep": "--keep", "add_message_id": "--add-message-id", "allow_plaintext_auth": "--allow-plaintext-auth",
}

// batchJob is one row and how it stands.
type batchJob struct {
	row      int
	name     string // the mailbox as shown: the source URL without a password
	args     []string
	hosts    []string
	state    string // waiting, running, retrying, done, failed
	attempts int
	done     int64
	total    int64
	rate     float64
	moved    string
	verified string // yes, no, or n/a (an SMTP destination cannot be searched)
	errText  string
	exit     int
	took     time.Duration
	next     time.Time // when a retry may start
}

func cmdMigrateBatch(file string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate --batch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, batchHelp) }
	var batchFlag string
	fs.StringVar(&batchFlag, "batch", "", "the CSV `FILE` of mailboxes")
	parallel := fs.Int("parallel", 4, "mailboxes migrated at once")
	perHost := fs.Int("max-per-host", 2, "mailboxes at once on one server (source or destination)")
	retries := fs.Int("retries", 3, "tries of a failing mailbox before it is reported failed")
	retryWait := fs.Duration("retry-wait", 10*time.Second, "wait before the first retry (doubling after each)")
	stateDir := fs.String("state", "", "`DIR` for each mailbox's record (default under $XDG_STATE_HOME/mailflow)")
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
	jobs, err := readBatch(file)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitConfig
	}
	if q.url != "" {
		return queueBatch(file, jobs, &q, queueOptions{name: batchName(file, *name), ackWait: *ackWait,
			replicas: *replicas, retries: max(1, *retries), retryWait: *retryWait, wait: *wait}, stdout, stderr)
	}
	if *stateDir == "" {
		abs, _ := filepath.Abs(file)
		sum := sha256.Sum256([]byte(abs))
		*stateDir = filepath.Join(stateHome(), "mailflow", "batch-"+hex.EncodeToString(sum[:6]))
	}
	if *report == "" {
		*report = filepath.Join(*stateDir, "report.csv")
	}
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitConfig
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "mailflow migrate --batch:", err)
		return exitConfig
	}
	for _, j := range jobs {
		sum := sha256.Sum256([]byte(strings.Join(j.args, "\x00")))
		j.args = append(j.args, "--state", filepath.Join(*stateDir, "box-"+hex.EncodeToString(sum[:8])), "--progress", "log")
	}
	ctx, stop := stopOnSignal(slog.New(slog.NewTextHandler(stderr, nil)), time.Minute)
	defer stop()

	r := &batchRun{jobs: jobs, self: self, parallel: max(1, *parallel), perHost: max(1, *perHost),
		retries: max(1, *retries), retryWait: *retryWait, out: stderr,
		table: *progress == "table" || *progress == "auto" && isTerminal(stderrFile(stderr))}
	fmt.Fprintf(stderr, "migrating %d mailboxes, %d at once (at most %d per server); state in %s\n", len(jobs), r.parallel, r.perHost, *stateDir)
	r.run(ctx)

	failed, quarantined := r.summary(stdout)
	if err := writeBatchReport(*report, jobs); err != nil {
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

func stderrFile(w io.Writer) *os.File {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return nil
}

// readBatch reads the CSV: a header row, then a row per mailbox.
func readBatch(file string) ([]*batchJob, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: no header row: %v", file, err)
	}
	for i, h := range header {
		header[i] = strings.ToLower(strings.TrimSpace(h))
		switch {
		case header[i] == "password" || header[i] == "to_password":
			return nil, fmt.Errorf("%s: column %q: give passwords by environment variable or file (password_env, password_file), never in the CSV", file, h)
		case batchColumns[header[i]] == "":
			return nil, fmt.Errorf("%s: unknown column %q", file, h)
		}
	}
	var jobs []*batchJob
	for row := 2; ; row++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		j := &batchJob{row: row, state: "waiting", args: []string{"migrate"}}
		for i, v := range rec {
			v = strings.TrimSpace(v)
			if i >= len(header) || v == "" {
				continue
			}
			flagName := batchColumns[header[i]]
			switch header[i] {
			case "keep", "add_message_id", "allow_plaintext_auth":
				if b, _ := strconv.ParseBool(v); b {
					j.args = append(j.args, flagName)
				}
				continue
			case "from", "to":
				u, err := url.Parse(v)
				if err != nil || u.Host == "" {
					return nil, fmt.Errorf("%s:%d: %s %q is not a URL", file, row, header[i], v)
				}
				if _, has := u.User.Password(); has {
					return nil, fmt.Errorf("%s:%d: %s has a password in it; use password_env or password_file", file, row, header[i])
				}
				j.hosts = append(j.hosts, u.Hostname())
				if header[i] == "from" {
					j.name = redact(u)
				}
			}
			j.args = append(j.args, flagName, v)
		}
		if len(j.hosts) < 2 {
			return nil, fmt.Errorf("%s:%d: from and to are required", file, row)
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("%s has no mailbox rows", file)
	}
	return jobs, nil
}

type batchRun struct {
	mu        sync.Mutex
	jobs      []*batchJob
	self      string
	parallel  int
	perHost   int
	retries   int
	retryWait time.Duration
	out       io.Writer
	table     bool
	running   map[string]int // per host
	active    int
}

// run starts jobs while slots allow until every job is done or failed.
func (r *batchRun) run(ctx context.Context) {
	r.running = map[string]int{}
	var wg sync.WaitGroup
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastDraw := time.Time{}
	for {
		r.mu.Lock()
		left := 0
		for _, j := range r.jobs {
			if j.state != "done" && j.state != "failed" {
				left++
			}
			if ctx.Err() != nil || r.active >= r.parallel || (j.state != "waiting" && j.state != "retrying") || time.Now().Before(j.next) || !r.hostsFree(j) {
				continue
			}
			r.start(ctx, j, &wg)
		}
		r.mu.Unlock()
		if r.table && time.Since(lastDraw) > time.Second {
			r.draw()
			lastDraw = time.Now()
		}
		if left == 0 || ctx.Err() != nil && r.activeNow() == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	if r.table {
		r.draw()
	}
}

func (r *batchRun) activeNow() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

func (r *batchRun) hostsFree(j *batchJob) bool {
	seen := map[string]bool{}
	for _, h := range j.hosts {
		if seen[h] {
			continue // from and to on one server count once
		}
		seen[h] = true
		if r.running[h] >= r.perHost {
			return false
		}
	}
	return true
}

// start runs one try of j in a child process. r.mu is held.
func (r *batchRun) start(ctx context.Context, j *batchJob, wg *sync.WaitGroup) {
	j.state, j.attempts = "running", j.attempts+1
	r.active++
	hosts := map[string]bool{}
	for _, h := range j.hosts {
		hosts[h] = true
	}
	for h := range hosts {
		r.running[h]++
	}
	r.change(j, fmt.Sprintf("running (try %d)", j.attempts))
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		res := r.try(ctx, j)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.active--
		for h := range hosts {
			r.running[h]--
		}
		j.took += time.Since(start)
		j.exit, j.moved, j.verified = res.code, res.moved, res.verified
		code, errText := res.code, res.errText
		switch {
		case code == exitOK || code == exitQuarantined:
			j.state, j.errText = "done", ""
			if code == exitQuarantined {
				j.errText = "some messages quarantined"
			}
			r.change(j, fmt.Sprintf("done: moved %s, verified: %s", j.moved, j.verified))
		case ctx.Err() != nil:
			j.state, j.errText = "failed", "interrupted: run the batch again to go on"
		case code == exitConfig || j.attempts >= r.retries:
			j.state, j.errText = "failed", errText
			r.change(j, "failed: "+errText)
		default:
			wait := r.retryWait << (j.attempts - 1)
			j.state, j.errText, j.next = "retrying", errText, time.Now().Add(wait)
			r.change(j, fmt.Sprintf("failed (%s); retrying in %v", errText, wait))
		}
	}()
}

// try runs `mailflow migrate` for j.
func (r *batchRun) try(ctx context.Context, j *batchJob) childResult {
	return runMigrateChild(ctx, r.self, j.args, func(done, total int64, rate float64) {
		r.mu.Lock()
		j.done, j.total, j.rate = done, total, rate
		r.mu.Unlock()
	})
}

// change tells of a job's new state: a line, unless the table shows it.
func (r *batchRun) change(j *batchJob, what string) {
	if !r.table {
		fmt.Fprintf(r.out, "%s  %s: %s\n", time.Now().Format("15:04:05"), j.name, what)
	}
}

// draw redraws the table of every mailbox on the terminal.
func (r *batchRun) draw() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "%-44s %-9s %15s %9s  %s\n", "MAILBOX", "STATE", "MESSAGES", "MSG/S", "ERROR")
	for _, j := range r.jobs {
		fmt.Fprintf(&b, "%-44s %-9s %15s %9.1f  %s\n", clip(j.name, 44), j.state, fmt.Sprintf("%d/%d", j.done, j.total), j.rate, clip(j.errText, 60))
	}
	io.WriteString(r.out, b.String())
}

// summary prints the final report and counts the failed and quarantined.
func (r *batchRun) summary(w io.Writer) (failed, quarantined int) {
	sort.SliceStable(r.jobs, func(a, b int) bool { return r.jobs[a].row < r.jobs[b].row })
	fmt.Fprintf(w, "\n%-44s %-7s %6s %8s %9s %8s  %s\n", "MAILBOX", "STATE", "TRIES", "MOVED", "VERIFIED", "TIME", "ERROR")
	done := 0
	for _, j := range r.jobs {
		fmt.Fprintf(w, "%-44s %-7s %6d %8s %9s %8s  %s\n", clip(j.name, 44), j.state, j.attempts, j.moved, j.verified, j.took.Round(time.Second), j.errText)
		switch {
		case j.state != "done":
			failed++
		case j.exit == exitQuarantined:
			quarantined++
			done++
		default:
			done++
		}
	}
	fmt.Fprintf(w, "\n%d mailboxes: %d done, %d failed\n", len(r.jobs), done, failed)
	return failed, quarantined
}

func writeBatchReport(path string, jobs []*batchJob) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"row", "mailbox", "state", "tries", "moved", "verified", "seconds", "exit", "error"})
	for _, j := range jobs {
		cw.Write([]string{strconv.Itoa(j.row), j.name, j.state, strconv.Itoa(j.attempts), j.moved,
			j.verified, strconv.FormatFloat(j.took.Seconds(), 'f', 1, 64), strconv.Itoa(j.exit), j.errText})
	}
	cw.Flush()
	return errors.Join(cw.Error(), f.Close())
}
