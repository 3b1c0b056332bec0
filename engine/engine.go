package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Engine runs inputs through their pipelines to outputs and keeps the
// delivery contract: a message is committed at its source only after every
// output it was routed to accepted it, a filter dropped it, or it was written
// to the quarantine, and only after that was recorded in the ledger.
type Engine struct {
	Log        *slog.Logger
	Ledger     *Ledger
	Quarantine *Quarantine
	Catalog    Catalog
	Observer   Observer

	setup    atomic.Pointer[Setup]
	sem      chan struct{}
	backoff  backoffs
	pollMu   sync.Mutex
	polling  map[string]*sync.Mutex
	reloadMu sync.Mutex
	loops    *loops
}

// Observer is told what happens, for metrics. Every method must be cheap and
// safe to call from many goroutines.
type Observer interface {
	MessageSettled(input string, outcome string, bytes int64, d time.Duration)
	OutputResult(output string, err error, bytes int64, d time.Duration)
	PollDone(input string, err error)
	Reloaded(err error)
}

type nopObserver struct{}

func (nopObserver) MessageSettled(string, string, int64, time.Duration) {}
func (nopObserver) OutputResult(string, error, int64, time.Duration)    {}
func (nopObserver) PollDone(string, error)                              {}
func (nopObserver) Reloaded(error)                                      {}

// Stats counts what happened to the messages of one input.
type Stats struct {
	Fetched     int64 // read from the source
	Delivered   int64 // accepted by every output it was routed to
	Dropped     int64 // dropped by a filter
	Quarantined int64 // written to the quarantine
	Failed      int64 // left at the source to be tried again
	Skipped     int64 // already delivered earlier; only committed at the source
	Left        int64 // left at the source on purpose by a filter
	InDoubt     int64 // were being delivered when mailflow was killed; delivered again
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.Fetched += o.Fetched
	s.Delivered += o.Delivered
	s.Dropped += o.Dropped
	s.Quarantined += o.Quarantined
	s.Failed += o.Failed
	s.Skipped += o.Skipped
	s.Left += o.Left
	s.InDoubt += o.InDoubt
}

func (s Stats) String() string {
	str := fmt.Sprintf("fetched=%d delivered=%d dropped=%d quarantined=%d failed=%d skipped=%d",
		s.Fetched, s.Delivered, s.Dropped, s.Quarantined, s.Failed, s.Skipped)
	if s.Left > 0 {
		str += fmt.Sprintf(" left=%d", s.Left)
	}
	if s.InDoubt > 0 {
		str += fmt.Sprintf(" in_doubt=%d", s.InDoubt)
	}
	return str
}

// errLeft releases a message that a filter left at its source on purpose.
var errLeft = errors.New("left at the source by a filter")

// Open opens the engine's state under cfg.StateDir and builds cfg.
func Open(cfg *Config, cat Catalog, log *slog.Logger) (*Engine, error) {
	ledger, err := OpenLedger(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	q, err := OpenQuarantine(filepath.Join(cfg.StateDir, "quarantine"))
	if err != nil {
		ledger.Close()
		return nil, err
	}
	if err := ensureDir(cfg.Spool.Dir); err != nil {
		ledger.Close()
		return nil, err
	}
	e := &Engine{Log: log, Ledger: ledger, Quarantine: q, Catalog: cat, Observer: nopObserver{},
		sem: make(chan struct{}, cfg.MaxInFlight), polling: map[string]*sync.Mutex{}}
	s, err := Build(cfg, cat, ledger, log, nil)
	if err != nil {
		ledger.Close()
		return nil, err
	}
	e.setup.Store(s)
	return e, nil
}

// Config returns the config now in force.
func (e *Engine) Config() *Config { return e.setup.Load().Config }

// Close waits for messages in flight, closes every plugin and the ledger.
func (e *Engine) Close() error {
	s := e.setup.Load()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return errors.Join(s.retire(ctx), e.Ledger.Close())
}

// acquire pins the current Setup for one message.
func (e *Engine) acquire() *Setup {
	for {
		s := e.setup.Load()
		s.inflight.Add(1)
		if e.setup.Load() == s {
			return s
		}
		s.inflight.Done() // swapped meanwhile; pin the new one
	}
}

// PollOnce runs one poll of the named input: every message the source has
// now goes through its pipeline, then the session is closed, which commits
// what was acked.
func (e *Engine) PollOnce(ctx context.Context, name string) (Stats, error) {
	var stats Stats
	mu := e.inputLock(name)
	mu.Lock()
	defer mu.Unlock()

	ic := e.setup.Load().Config.Input(name)
	if ic == nil {
		return stats, fmt.Errorf("no input %q", name)
	}
	log := e.Log.With("input", name)
	sess, err := ic.Plugin.Open(ctx)
	if err != nil {
		e.Observer.PollDone(name, err)
		return stats, fmt.Errorf("input %q: %w", name, err)
	}
	// Messages already read are finished even when ctx is cancelled (a
	// shutdown): they are settled and acked, then the session is closed.
	work := context.WithoutCancel(ctx)
	var (
		wg      sync.WaitGroup
		statsMu sync.Mutex
		readErr error
	)
	for {
		msg, ack, err := sess.Next(ctx)
		if errors.Is(err, ErrEndOfInput) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		statsMu.Lock()
		stats.Fetched++
		statsMu.Unlock()
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			_ = ack(work, ctx.Err())
			msg.Close()
			readErr = ctx.Err()
		}
		if readErr != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-e.sem; wg.Done() }()
			one := e.handle(work, msg)
			if err := ack(work, one.err); err != nil && one.err == nil {
				log.Warn("source did not commit the message; it is recorded as settled and will be committed on the next poll", "id", msg.Source.ID, "err", err)
			}
			msg.Close()
			statsMu.Lock()
			stats.Add(one.stats)
			statsMu.Unlock()
		}()
	}
	wg.Wait()
	closeCtx, cancel := context.WithTimeout(work, 2*time.Minute)
	defer cancel()
	closeErr := sess.Close(closeCtx)
	err = errors.Join(readErr, closeErr)
	e.Observer.PollDone(name, err)
	if err != nil {
		return stats, fmt.Errorf("input %q: %w", name, err)
	}
	return stats, nil
}

func (e *Engine) inputLock(name string) *sync.Mutex {
	e.pollMu.Lock()
	defer e.pollMu.Unlock()
	mu := e.polling[name]
	if mu == nil {
		mu = &sync.Mutex{}
		e.polling[name] = mu
	}
	return mu
}

type handled struct {
	stats Stats
	err   error // non-nil: release the message at its source
}

// handle takes one message through its pipeline and outputs and records the
// outcome durably. It returns the error to ack with.
func (e *Engine) handle(ctx context.Context, msg *Message) handled {
	s := e.acquire()
	defer s.inflight.Done()
	start := time.Now()
	ic := s.Config.Input(msg.Source.Input)
	pipeName := ""
	if ic != nil {
		pipeName = ic.Pipeline
	}
	return e.settle(ctx, s, pipeName, msg, start)
}

func (e *Engine) settle(ctx context.Context, s *Setup, pipeName string, msg *Message, start time.Time) handled {
	log := e.Log.With("input", msg.Source.Input, "id", msg.Source.ID, "message_id", msg.MessageID(), "bytes", msg.OriginalSize())
	var inDoubt int64
	done := func(h handled, outcome string, attrs ...any) handled {
		h.stats.InDoubt += inDoubt
		d := time.Since(start)
		attrs = append(attrs, "outcome", outcome, "duration", d.Round(time.Microsecond))
		if h.err != nil && h.err != errLeft {
			log.Warn("message", append(attrs, "err", h.err)...)
		} else {
			log.Info("message", attrs...)
		}
		e.Observer.MessageSettled(msg.Source.Input, outcome, msg.OriginalSize(), d)
		return h
	}
	rec, _ := e.Ledger.Get(msg.Source.Input, msg.Source.ID)
	digest := hex.EncodeToString(msg.Digest[:])
	if rec.Digest != "" && rec.Digest != digest {
		// Sources promise never to reuse an id (RFC 1939 for UIDL, the
		// Maildir spec for names), but if one does, the record is about
		// another message: skipping this one would delete it unread.
		log.Warn("source id reused for a different message; treating it as new", "earlier", string(rec.Settled))
		rec = Record{}
	}
	rec.Digest = digest
	if len(rec.Sending) > 0 && rec.Settled == "" {
		// mailflow was killed while handing this message to these outputs:
		// they may have it already. It is sent again (losing it would be
		// worse), and said so.
		log.Warn("this message was being delivered when mailflow was stopped hard; delivering it again, so the destination may get it twice", "outputs", strings.Join(rec.Sending, ","))
		inDoubt = 1
		rec.Sending = nil
	}
	if rec.Settled != "" {
		return done(handled{stats: Stats{Skipped: 1}}, "skipped", "earlier", string(rec.Settled))
	}
	p := s.pipelines[pipeName]
	if p == nil {
		return done(handled{stats: Stats{Failed: 1}, err: fmt.Errorf("pipeline %q is not defined", pipeName)}, "failed")
	}
	if msg.HeaderErr != nil {
		log.Warn("header could not be parsed; the message goes on with its bytes untouched", "err", msg.HeaderErr)
	}

	v, by, err := p.chain.Run(ctx, msg)
	if err != nil {
		return done(e.quarantine(s, p.name, msg, &rec, fmt.Sprintf("filter %s: %v", by, err)), "quarantined", "script", by)
	}
	switch v.Action {
	case ActionDrop:
		rec.Settled = OutcomeDropped
		if err := e.Ledger.Put(msg.Source.Input, msg.Source.ID, rec); err != nil {
			return done(handled{stats: Stats{Failed: 1}, err: fmt.Errorf("ledger: %w", err)}, "failed")
		}
		return done(handled{stats: Stats{Dropped: 1}}, "dropped", "script", by, "reason", v.Reason)
	case ActionQuarantine:
		return done(e.quarantine(s, p.name, msg, &rec, fmt.Sprintf("filter %s: %s", by, v.Reason)), "quarantined", "script", by)
	case ActionLeave:
		return done(handled{stats: Stats{Left: 1}, err: errLeft}, "left", "script", by, "reason", v.Reason)
	}
	outputs := p.outputs
	if v.Outputs != nil {
		outputs = v.Outputs
	}
	if len(outputs) == 0 {
		return done(e.quarantine(s, p.name, msg, &rec, "no output to deliver to (the pipeline has none and no filter routed it)"), "quarantined")
	}
	temp, perm := e.deliver(ctx, s, msg, outputs, &rec)
	perm = append(perm, rec.Reasons...) // recipients refused on this or an earlier try
	attrs := []any{"outputs", strings.Join(outputs, ",")}
	if len(msg.Envelope.Recipients) > 0 {
		attrs = append(attrs, "recipients", strings.Join(msg.Envelope.Recipients, ","))
	}
	switch {
	case len(temp) == 0 && len(perm) == 0:
		rec.Settled = OutcomeDelivered
		if err := e.Ledger.Put(msg.Source.Input, msg.Source.ID, rec); err != nil {
			return done(handled{stats: Stats{Failed: 1}, err: fmt.Errorf("ledger: %w", err)}, "failed", attrs...)
		}
		return done(handled{stats: Stats{Delivered: 1}}, "delivered", attrs...)
	case len(temp) == 0:
		return done(e.quarantine(s, p.name, msg, &rec, "refused: "+strings.Join(perm, "; ")), "quarantined", attrs...)
	default:
		// Record who accepted, so that the retry sends only to the rest.
		if len(rec.Accepted) > 0 || len(rec.Refused) > 0 {
			if err := e.Ledger.Put(msg.Source.Input, msg.Source.ID, rec); err != nil {
				log.Error("ledger: could not record partial delivery; the retry may send again to recipients that accepted", "err", err)
			}
		}
		return done(handled{stats: Stats{Failed: 1}, err: errors.New("deferred: " + strings.Join(temp, "; "))}, "deferred", attrs...)
	}
}

// Run takes msg through the chain and returns the combined verdict, and the
// name of the filter that decided it (or broke). Each filter sees what the
// ones before it changed. A route or redirect does not end the chain: a
// later filter may still drop the message or route it elsewhere.
func (c *Chain) Run(ctx context.Context, msg *Message) (Verdict, string, error) {
	var out Verdict
	by := ""
	for _, f := range c.filters {
		v, err := f.f.Filter(ctx, msg)
		if err != nil {
			return out, f.name, err
		}
		switch v.Action {
		case ActionKeep:
		case ActionRoute:
			out.Outputs, by = v.Outputs, f.name
		case ActionRedirect:
			msg.Envelope.Recipients, by = v.Recipients, f.name
		case ActionDrop, ActionQuarantine, ActionLeave:
			return v, f.name, nil
		}
	}
	return out, by, nil
}

// deliver sends msg to every output that has not accepted it yet, and
// records in rec who accepted and who refused for good. It returns the
// temporary and permanent failures, as text.
func (e *Engine) deliver(ctx context.Context, s *Setup, msg *Message, outputs []string, rec *Record) (temp, perm []string) {
	if rec.Accepted == nil {
		rec.Accepted = map[string][]string{}
	}
	for _, name := range outputs {
		out := s.outputs[name]
		if out == nil {
			perm = append(perm, fmt.Sprintf("%s: no such output", name))
			continue
		}
		if slices.Contains(rec.Accepted[name], "*") {
			continue
		}
		if wait := e.backoff.wait(name); wait > 0 {
			temp = append(temp, fmt.Sprintf("%s: backing off for %s after earlier failures", name, wait.Round(time.Second)))
			continue
		}
		start := time.Now()
		d := Delivery{Key: msg.Key() + "." + name, Recipients: msg.Envelope.Recipients,
			Done: append(slices.Clone(rec.Accepted[name]), rec.Refused[name]...)}
		rec.Sending = append(rec.Sending, name)
		e.note(msg, rec)
		results, err := out.Deliver(ctx, msg, d)
		rec.Sending = slices.DeleteFunc(rec.Sending, func(s string) bool { return s == name })
		if len(rec.Sending) == 0 {
			rec.Sending = nil
		}
		e.Observer.OutputResult(name, err, msg.Size(), time.Since(start))
		if err != nil {
			if IsPermanent(err) {
				perm = append(perm, fmt.Sprintf("%s: %v", name, err))
			} else {
				temp = append(temp, fmt.Sprintf("%s: %v", name, err))
				if next := e.backoff.fail(name); next > 0 {
					e.Log.Warn("output failing; backing off", "output", name, "retry_in", next.Round(time.Second), "err", err)
				}
			}
			continue
		}
		e.backoff.ok(name)
		if len(results) == 0 {
			rec.Accepted[name] = []string{"*"}
			e.note(msg, rec)
			continue
		}
		for _, r := range results {
			switch {
			case r.Err == nil:
				rec.Accepted[name] = append(rec.Accepted[name], r.Recipient)
			case IsPermanent(r.Err):
				if rec.Refused == nil {
					rec.Refused = map[string][]string{}
				}
				rec.Refused[name] = append(rec.Refused[name], r.Recipient)
				rec.Reasons = append(rec.Reasons, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
			default:
				temp = append(temp, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
			}
		}
		e.note(msg, rec)
	}
	return temp, perm
}

// note journals who accepted msg the moment they did (see Ledger.Note); the
// caller Puts the settled record right after.
func (e *Engine) note(msg *Message, rec *Record) {
	if err := e.Ledger.Note(msg.Source.Input, msg.Source.ID, *rec); err != nil {
		e.Log.Warn("ledger journal", "err", err)
	}
}

func (e *Engine) quarantine(s *Setup, pipeName string, msg *Message, rec *Record, reason string) handled {
	entry, err := e.Quarantine.Put(msg, pipeName, reason)
	if err != nil {
		return handled{stats: Stats{Failed: 1}, err: err}
	}
	e.Log.Warn("quarantined", "input", msg.Source.Input, "id", msg.Source.ID, "quarantine_id", entry.ID, "reason", reason)
	rec.Settled = OutcomeQuarantined
	if err := e.Ledger.Put(msg.Source.Input, msg.Source.ID, *rec); err != nil {
		// The message is safe in the quarantine, but without the record the
		// source must keep it: the next poll will quarantine it once more
		// rather than lose it.
		return handled{stats: Stats{Failed: 1}, err: fmt.Errorf("ledger: %w", err)}
	}
	return handled{stats: Stats{Quarantined: 1}}
}

// Resend puts a quarantined message back through its pipeline. The entry is
// removed once the message is settled again (a new entry is made if it is
// quarantined again).
func (e *Engine) Resend(ctx context.Context, id string) (string, error) {
	entry, msg, err := e.Quarantine.Get(id)
	if err != nil {
		return "", err
	}
	defer msg.Close()
	s := e.acquire()
	defer s.inflight.Done()
	pipeName := entry.Pipeline
	if s.pipelines[pipeName] == nil {
		if ic := s.Config.Input(entry.Input); ic != nil {
			pipeName = ic.Pipeline
		}
	}
	h := e.settle(ctx, s, pipeName, msg, time.Now())
	if h.err != nil {
		return "", h.err
	}
	outcome := "delivered"
	switch {
	case h.stats.Dropped > 0:
		outcome = "dropped"
	case h.stats.Quarantined > 0:
		outcome = "quarantined again"
	}
	return outcome, e.Quarantine.Remove(id)
}

// RunOnce polls every input once, concurrently, and returns each one's stats.
func (e *Engine) RunOnce(ctx context.Context) (map[string]Stats, error) {
	cfg := e.setup.Load().Config
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	all := map[string]Stats{}
	for _, ic := range cfg.Inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := e.PollOnce(ctx, ic.Name)
			mu.Lock()
			defer mu.Unlock()
			all[ic.Name] = st
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return all, errors.Join(errs...)
}
