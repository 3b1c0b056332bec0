package engine

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Run polls every input on its schedule until ctx is cancelled, then lets
// the polls under way finish their messages and returns.
func (e *Engine) Run(ctx context.Context) error {
	e.reloadMu.Lock()
	e.loops = &loops{ctx: ctx, running: map[string]*loop{}}
	e.syncLoops()
	e.reloadMu.Unlock()
	<-ctx.Done()
	e.loops.wait()
	return nil
}

type loops struct {
	ctx     context.Context
	mu      sync.Mutex
	wg      sync.WaitGroup
	running map[string]*loop
}

type loop struct {
	cancel   context.CancelFunc
	schedule string
	done     chan struct{}
}

func (l *loops) wait() { l.wg.Wait() }

// syncLoops starts a poll loop for every input of the current config that
// has none, and stops loops of inputs that are gone or whose schedule
// changed. Called with reloadMu held.
func (e *Engine) syncLoops() {
	if e.loops == nil {
		return
	}
	cfg := e.Config()
	e.loops.mu.Lock()
	defer e.loops.mu.Unlock()
	want := map[string]*config.Input{}
	for _, ic := range cfg.Inputs {
		want[ic.Name] = ic
	}
	for name, l := range e.loops.running {
		if ic := want[name]; ic == nil || ic.Sched.String() != l.schedule {
			l.cancel()
			delete(e.loops.running, name)
		}
	}
	for name, ic := range want {
		if e.loops.running[name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(e.loops.ctx)
		l := &loop{cancel: cancel, schedule: ic.Sched.String(), done: make(chan struct{})}
		e.loops.running[name] = l
		e.loops.wg.Add(1)
		go func() {
			defer e.loops.wg.Done()
			defer close(l.done)
			e.pollLoop(ctx, name, ic.Sched)
		}()
	}
}

// pollLoop polls one input now and then on its schedule. Polls of one input
// never overlap: a poll that runs past its next time delays the next one,
// which then starts at once.
func (e *Engine) pollLoop(ctx context.Context, name string, sched config.Schedule) {
	log := e.Log.With("input", name)
	log.Info("input scheduled", "schedule", sched.String())
	for {
		start := time.Now()
		stats, err := e.PollOnce(ctx, name)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("poll failed", "err", err, "stats", stats.String())
		} else if stats.Fetched > 0 {
			log.Info("poll done", "stats", stats.String(), "duration", time.Since(start).Round(time.Millisecond))
		}
		next := sched.Next(start)
		wait := time.Until(next)
		if wait <= 0 {
			log.Warn("poll took longer than the schedule allows; the next one starts now", "took", time.Since(start).Round(time.Millisecond), "schedule", sched.String())
			wait = 0
		}
		if e.watch(ctx, name, wait, log) {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// watch waits up to wait for the input to report new mail, when it can
// (a MailWaiter, such as IMAP with idle = true), and reports whether it
// waited (the caller then polls at once). A watch that fails is retried,
// with back-off, until the schedule's time.
func (e *Engine) watch(ctx context.Context, name string, wait time.Duration, log *slog.Logger) bool {
	deadline := time.Now().Add(wait)
	ic := e.Config().Input(name)
	w, ok := plugin.MailWaiter(nil), false
	if ic != nil {
		w, ok = ic.Plugin.(plugin.MailWaiter)
	}
	if !ok {
		e.observer.Waiting(WaitEvent{Input: name, Next: deadline})
		return false
	}
	retry := time.Second
	for {
		e.observer.Waiting(WaitEvent{Input: name, Next: deadline, Watching: true})
		wctx, cancel := context.WithDeadline(ctx, deadline)
		err := w.WaitForMail(wctx)
		cancel()
		switch {
		case err == nil, ctx.Err() != nil, !time.Now().Before(deadline):
			return true // news, a stop, or the schedule's time: the loop decides
		case errors.Is(err, plugin.ErrNotWatching):
			e.observer.Waiting(WaitEvent{Input: name, Next: deadline})
			return false
		}
		e.observer.Waiting(WaitEvent{Input: name, Next: deadline, Err: err})
		log.Warn("watching the source for new mail failed; trying again", "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return true
		case <-time.After(min(retry, time.Until(deadline))):
		}
		retry = min(2*retry, 5*time.Minute)
	}
}

func ensureDir(dir string) error {
	if dir == "" {
		return nil
	}
	return os.MkdirAll(dir, 0o700)
}
