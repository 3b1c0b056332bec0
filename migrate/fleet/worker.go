package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailflow/mailflow/migrate"
)

// Worker takes jobs from the fleet's queue, as many at once as it has
// slots, and runs each in a child process. While a mailbox runs it tells
// NATS the job is in progress and writes its progress to the bucket; it
// acknowledges the job only once the mailbox went through (migrated and
// verified). A failure is handed back to be retried after the batch's
// retry wait, while its error's class says a retry may help and tries are
// left; then it is reported failed.
type Worker struct {
	Name     string        // in the status
	StateDir string        // each mailbox's record on this machine goes below it
	Child    migrate.Child // how a mailbox is run
	Parallel int           // mailboxes at once
	PerHost  int           // mailboxes at once on one server
	Log      *slog.Logger

	kv      jetstream.KeyValue
	ackWait time.Duration
	mu      sync.Mutex
	running map[string]int // per host
	hostsCh chan struct{}  // closed and replaced when a host frees up
}

// Run takes jobs from cons until ctx ends; then the running mailboxes
// stop cleanly and their jobs are handed back at once.
func (w *Worker) Run(ctx context.Context, cons jetstream.Consumer, kv jetstream.KeyValue) {
	w.kv, w.running = kv, map[string]int{}
	w.ackWait = 30 * time.Second
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		w.ackWait = info.Config.AckWait
	}
	slots := make(chan struct{}, max(1, w.Parallel))
	w.PerHost = max(1, w.PerHost)
	w.Log.Info("taking jobs", "parallel", cap(slots), "ack_wait", w.ackWait)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			<-slots
			if !errors.Is(err, jetstream.ErrNoMessages) && !Transient(err) && ctx.Err() == nil {
				w.Log.Warn("taking a job", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			w.handle(ctx, msg)
		}()
	}
}

// handle runs one job, telling NATS it is in progress until it settles.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	var job Job
	if err := json.Unmarshal(msg.Data(), &job); err != nil || job.Key == "" || job.Plan.From.URL == "" {
		w.Log.Error("a job that is not a mailflow job; dropped", "subject", msg.Subject(), "err", err)
		msg.TermWithReason("not a mailflow job")
		return
	}
	log := w.Log.With("mailbox", job.Mailbox)
	var st Status
	if _, err := GetStatus(ctx, w.kv, job.Key, &st); err != nil {
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
	if st.State == "running" && st.Worker != w.Name && time.Since(st.Updated) < w.ackWait/2 {
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
	hosts := job.Plan.Hosts()
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	if !w.takeHosts(ctx, hosts, msg, beat) {
		msg.Nak()
		return
	}
	defer w.giveHosts(hosts)

	st.Batch, st.Row, st.Mailbox = job.Batch, job.Row, job.Mailbox
	st.State, st.Worker, st.Tries, st.Error, st.Class, st.Updated = "running", w.Name, st.Tries+1, "", "", time.Now().UTC()
	if err := PutStatus(ctx, w.kv, job.Key, st); err != nil {
		log.Warn("writing its status", "err", err)
	}
	log.Info("migrating", "try", st.Tries)
	plan := job.Plan
	plan.StateDir = filepath.Join(w.StateDir, "box-"+plan.Key())

	var pmu sync.Mutex
	done := make(chan *migrate.Report, 1)
	start := time.Now()
	childCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	child := w.Child
	child.Progress = func(p migrate.Progress) {
		pmu.Lock()
		st.Done, st.Total, st.Rate = p.Done.Messages, p.Total.Messages, p.Rate
		pmu.Unlock()
	}
	go func() { done <- child.Run(childCtx, plan) }()
	var rep *migrate.Report
	for waiting := true; waiting; {
		select {
		case rep = <-done:
			waiting = false
		case <-beat.C:
			if err := msg.InProgress(); err != nil {
				log.Warn("telling NATS the job is in progress", "err", err)
			}
			pmu.Lock()
			snap := st
			pmu.Unlock()
			snap.Updated = time.Now().UTC()
			if err := PutStatus(ctx, w.kv, job.Key, snap); err != nil {
				log.Warn("writing its progress", "err", err)
			}
		}
	}
	pmu.Lock()
	defer pmu.Unlock()
	st.Seconds += time.Since(start).Seconds()
	st.Moved, st.Verified, st.Result, st.Updated = rep.Moved, rep.Verified(), rep.Result().String(), time.Now().UTC()
	if len(rep.Errors) > 0 {
		st.Class, st.Error = string(rep.Errors[0].Class), rep.Errors[0].Message
	}
	// The status is written with a context of its own: on a shutdown the
	// job is handed back, and the bucket should say so.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer scancel()
	switch {
	case rep.Result() != migrate.Failed:
		st.State, st.Error = "done", ""
		if rep.Result() == migrate.DoneQuarantined {
			st.Error = "some messages quarantined"
		}
		// The bucket first: a job acked but not marked done would be
		// lost from the status, one marked done but not acked is only
		// acked by the next worker that gets it.
		if err := PutStatus(sctx, w.kv, job.Key, st); err != nil {
			log.Warn("writing its status", "err", err)
		}
		if err := Retry(sctx, msg.DoubleAck); err != nil {
			log.Warn("acknowledging the job; another worker will find it done", "err", err)
		}
		log.Info("done", "moved", rep.Moved, "verified", rep.Verified())
	case ctx.Err() != nil:
		st.State, st.Error, st.Tries = "queued", "handed back: the worker stopped", st.Tries-1
		PutStatus(sctx, w.kv, job.Key, st)
		msg.Nak()
	case !rep.Class().Retry() || st.Tries >= max(1, job.Retries):
		st.State = "failed"
		PutStatus(sctx, w.kv, job.Key, st)
		msg.TermWithReason("failed: " + st.Error)
		log.Error("failed", "tries", st.Tries, "class", st.Class, "err", st.Error)
	default:
		wait := job.RetryWait << (st.Tries - 1)
		st.State = "retrying"
		PutStatus(sctx, w.kv, job.Key, st)
		msg.NakWithDelay(wait)
		log.Warn("failed; retrying", "in", wait, "class", st.Class, "err", st.Error)
	}
}

// takeHosts waits until every server of the job has a slot on this worker,
// keeping the job's lease alive while it waits.
func (w *Worker) takeHosts(ctx context.Context, hosts []string, msg jetstream.Msg, beat *time.Ticker) bool {
	for {
		w.mu.Lock()
		free := true
		for _, h := range hosts {
			if w.running[h] >= w.PerHost {
				free = false
			}
		}
		if free {
			for _, h := range hosts {
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

func (w *Worker) giveHosts(hosts []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range hosts {
		w.running[h]--
	}
	if w.hostsCh != nil {
		close(w.hostsCh)
		w.hostsCh = nil
	}
}

// WaitForQueue finds the workers' consumer and the status bucket, which
// the first batch published makes: a worker may start before it, and
// waits.
func WaitForQueue(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (jetstream.Consumer, jetstream.KeyValue, error) {
	for {
		var cons jetstream.Consumer
		var kv jetstream.KeyValue
		err := Retry(ctx, func(ctx context.Context) (err error) {
			if cons, err = js.Consumer(ctx, Stream, Consumer); err != nil {
				return err
			}
			kv, err = js.KeyValue(ctx, Bucket)
			return err
		})
		if err == nil || ctx.Err() != nil {
			return cons, kv, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, nil, err
		}
		log.Info("no batch published yet; waiting")
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	}
}
