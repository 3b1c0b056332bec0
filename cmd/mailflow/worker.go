package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const workerHelp = `Usage: mailflow worker --queue nats://HOST:4222[,nats://HOST2:4222...]
                       [--parallel 4] [--max-per-host 2] [--state DIR] [--name NAME]

Takes mailbox jobs that "mailflow migrate --batch FILE --queue URL" put in
NATS JetStream and runs each exactly as "mailflow migrate" (resumable,
verified). While a mailbox runs the worker tells NATS it is in progress; it
acknowledges the job only after the mailbox was migrated and verified. A
worker that dies leaves its jobs unacknowledged: NATS gives each to another
worker after the ack wait, which resumes it (into IMAP the destination's own
dedup keeps every message once). A failing mailbox is retried with back-off
(the batch's --retries and --retry-wait), then reported failed. Each
mailbox's state is in the bucket "mailflow migrate status" reads.

The password_env / password_file columns of the batch name variables and
files on the worker's machine. SIGINT or SIGTERM stops the running mailboxes
cleanly and hands their jobs back at once.
`

func cmdWorker(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var q queueFlags
	q.register(fs)
	parallel := fs.Int("parallel", 4, "mailboxes this worker migrates at once")
	perHost := fs.Int("max-per-host", 2, "mailboxes this worker runs at once on one server")
	stateDir := fs.String("state", "", "`DIR` for each mailbox's record on this machine (default under $XDG_STATE_HOME/mailflow/worker)")
	host, _ := os.Hostname()
	name := fs.String("name", fmt.Sprintf("%s-%d", host, os.Getpid()), "this worker's `NAME` in the status")
	if code, ok := parseQueueCommand(fs, &q, args, "worker", workerHelp, stderr); !ok {
		return code
	}
	if *stateDir == "" {
		*stateDir = filepath.Join(stateHome(), "mailflow", "worker")
	}
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		fmt.Fprintln(stderr, "mailflow worker:", err)
		return exitConfig
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "mailflow worker:", err)
		return exitConfig
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("worker", *name)
	ctx, stop := stopOnSignal(log, time.Minute)
	defer stop()

	nc, js, err := q.connect(ctx, "mailflow worker "+*name, time.Minute)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow worker:", err)
		return exitFailed
	}
	defer nc.Close()
	var cons jetstream.Consumer
	var kv jetstream.KeyValue
	// The consumer and bucket are made by the first batch published; a
	// worker may start before it and waits.
	for {
		err = retry(ctx, func(ctx context.Context) (err error) {
			if cons, err = js.Consumer(ctx, queueStream, queueConsumer); err != nil {
				return err
			}
			kv, err = js.KeyValue(ctx, queueBucket)
			return err
		})
		if err == nil || ctx.Err() != nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrBucketNotFound) {
			fmt.Fprintln(stderr, "mailflow worker:", err)
			return exitFailed
		}
		log.Info("no batch published yet; waiting")
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return exitOK
	}
	w := &worker{name: *name, self: self, state: *stateDir, kv: kv, log: log,
		slots: make(chan struct{}, max(1, *parallel)), perHost: max(1, *perHost), running: map[string]int{}}
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		w.ackWait = info.Config.AckWait
	}
	log.Info("taking jobs", "queue", q.url, "parallel", cap(w.slots), "ack_wait", w.ackWait)
	w.run(ctx, cons)
	log.Info("stopped")
	return exitOK
}

// stateHome is $XDG_STATE_HOME, or ~/.local/state.
func stateHome() string {
	if base := os.Getenv("XDG_STATE_HOME"); base != "" {
		return base
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state")
}

type worker struct {
	name, self, state string
	kv                jetstream.KeyValue
	log               *slog.Logger
	ackWait           time.Duration
	slots             chan struct{}
	perHost           int

	mu      sync.Mutex
	running map[string]int // per host
	hostsCh chan struct{}  // closed and replaced when a host frees up
}

// run takes a job whenever a slot is free, until ctx ends; then it waits
// for the running mailboxes to stop.
func (w *worker) run(ctx context.Context, cons jetstream.Consumer) {
	if w.ackWait <= 0 {
		w.ackWait = 30 * time.Second
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			<-w.slots
			if !errors.Is(err, jetstream.ErrNoMessages) && !transient(err) && ctx.Err() == nil {
				w.log.Warn("taking a job", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-w.slots; wg.Done() }()
			w.handle(ctx, msg)
		}()
	}
}

// handle runs one job, telling NATS it is in progress until it settles.
func (w *worker) handle(ctx context.Context, msg jetstream.Msg) {
	var job queueJob
	if err := json.Unmarshal(msg.Data(), &job); err != nil || job.Key == "" || len(job.Args) == 0 {
		w.log.Error("a job that is not a mailflow job; dropped", "subject", msg.Subject(), "err", err)
		msg.TermWithReason("not a mailflow job")
		return
	}
	log := w.log.With("mailbox", job.Mailbox)
	var st jobStatus
	if _, err := getStatus(ctx, w.kv, job.Key, &st); err != nil {
		log.Warn("reading its status; handing it back", "err", err)
		msg.NakWithDelay(time.Second)
		return
	}
	if st.State == "done" {
		// Finished before, and the ack was lost (a node stopped): nothing
		// to do but to ack it now.
		msg.Ack()
		return
	}
	if st.State == "running" && st.Worker != w.name && time.Since(st.Updated) < w.ackWait/2 {
		// Its worker wrote its progress a moment ago, so it is alive: NATS
		// gave the job out again because a heartbeat was lost (a node
		// stopped). Two runs of one mailbox at once could both append a
		// message neither had seen there yet.
		log.Info("another worker is on it; handing the job back", "other", st.Worker)
		msg.NakWithDelay(w.ackWait)
		return
	}
	beat := time.NewTicker(max(w.ackWait/3, 100*time.Millisecond))
	defer beat.Stop()
	if !w.takeHosts(ctx, job.Hosts, msg, beat) {
		msg.Nak()
		return
	}
	defer w.giveHosts(job.Hosts)

	st.Batch, st.Row, st.Mailbox = job.Batch, job.Row, job.Mailbox
	st.State, st.Worker, st.Tries, st.Error, st.Updated = "running", w.name, st.Tries+1, "", time.Now().UTC()
	if err := putStatus(ctx, w.kv, job.Key, st); err != nil {
		log.Warn("writing its status", "err", err)
	}
	log.Info("migrating", "try", st.Tries)
	sum := sha256.Sum256([]byte(job.Key))
	args := append(append([]string{}, job.Args...), "--state", filepath.Join(w.state, "box-"+hex.EncodeToString(sum[:8])), "--progress", "log")

	var pmu sync.Mutex
	done := make(chan childResult, 1)
	start := time.Now()
	childCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- runMigrateChild(childCtx, w.self, args, func(d, t int64, rate float64) {
			pmu.Lock()
			st.Done, st.Total, st.Rate = d, t, rate
			pmu.Unlock()
		})
	}()
	var res childResult
	for waiting := true; waiting; {
		select {
		case res = <-done:
			waiting = false
		case <-beat.C:
			if err := msg.InProgress(); err != nil {
				log.Warn("telling NATS the job is in progress", "err", err)
			}
			pmu.Lock()
			snap := st
			pmu.Unlock()
			snap.Updated = time.Now().UTC()
			if err := putStatus(ctx, w.kv, job.Key, snap); err != nil {
				log.Warn("writing its progress", "err", err)
			}
		}
	}
	pmu.Lock()
	defer pmu.Unlock()
	st.Seconds += time.Since(start).Seconds()
	st.Exit, st.Moved, st.Verified, st.Updated = res.code, res.moved, res.verified, time.Now().UTC()
	// The status is written with a context of its own: on a shutdown the
	// job is handed back, and the bucket should say so.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer scancel()
	switch {
	case res.code == exitOK || res.code == exitQuarantined:
		st.State, st.Error = "done", ""
		if res.code == exitQuarantined {
			st.Error = "some messages quarantined"
		}
		// The bucket first: a job acked but not marked done would be
		// lost from the status, one marked done but not acked is only
		// acked by the next worker that gets it.
		if err := putStatus(sctx, w.kv, job.Key, st); err != nil {
			log.Warn("writing its status", "err", err)
		}
		if err := retry(sctx, msg.DoubleAck); err != nil {
			log.Warn("acknowledging the job; another worker will find it done", "err", err)
		}
		log.Info("done", "moved", res.moved, "verified", res.verified)
	case ctx.Err() != nil:
		st.State, st.Error, st.Tries = "queued", "handed back: the worker stopped", st.Tries-1
		putStatus(sctx, w.kv, job.Key, st)
		msg.Nak()
	case res.code == exitConfig || st.Tries >= max(1, job.Retries):
		st.State, st.Error = "failed", res.errText
		putStatus(sctx, w.kv, job.Key, st)
		msg.TermWithReason("failed: " + res.errText)
		log.Error("failed", "tries", st.Tries, "err", res.errText)
	default:
		wait := job.RetryWait << (st.Tries - 1)
		st.State, st.Error = "retrying", res.errText
		putStatus(sctx, w.kv, job.Key, st)
		msg.NakWithDelay(wait)
		log.Warn("failed; retrying", "in", wait, "err", res.errText)
	}
}

// takeHosts waits until every server of the job has a slot on this worker,
// keeping the job's lease alive while it waits.
func (w *worker) takeHosts(ctx context.Context, hosts []string, msg jetstream.Msg, beat *time.Ticker) bool {
	for {
		w.mu.Lock()
		free := true
		for _, h := range unique(hosts) {
			if w.running[h] >= w.perHost {
				free = false
			}
		}
		if free {
			for _, h := range unique(hosts) {
				w.running[h]++
			}
			w.mu.Unlock()
			return true
		}
		if w.hostsCh == nil {
			w.hostsCh = make(chan struct{})
		}
		ch := w.hostsCh
		w.mu.Unlock()
		select {
		case <-ch:
		case <-beat.C:
			msg.InProgress()
		case <-ctx.Done():
			return false
		}
	}
}

func (w *worker) giveHosts(hosts []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range unique(hosts) {
		w.running[h]--
	}
	if w.hostsCh != nil {
		close(w.hostsCh)
		w.hostsCh = nil
	}
}

func unique(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
