package engine

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/engine/quarantine"
)

// Engine runs inputs through their pipelines to outputs and keeps the
// delivery contract: a message is committed at its source only after every
// output it was routed to accepted it, a filter dropped it, or it was written
// to the quarantine, and only after that was recorded in the ledger. The
// engine alone decides what to fetch, what is settled and what may be
// committed; inputs only list, fetch and commit (see Session).
type Engine struct {
	Log        *slog.Logger
	Ledger     *ledger.Ledger // nil for an engine opened only to resend
	Quarantine *quarantine.Store
	Registry   plugin.Registry

	observer Observer

	gens     generations
	sem      chan struct{}
	mem      *memBudget          // bytes of messages in memory (memory_budget)
	buffers  *message.BufferPool // their memory, lent and taken back
	backoff  backoffs
	pollMu   sync.Mutex
	polling  map[string]*sync.Mutex
	reloadMu sync.Mutex
	unlock   func() // releases the state_dir lock
	loops    *loops
	ahead    aheads // looks kept for the next poll (LookAhead)
	reuse    bool   // a poll's session is kept for the look after it
}

// Option sets up an engine at Open.
type Option func(*Engine)

// WithObserver has obs told what happens (metrics, progress).
func WithObserver(obs Observer) Option { return func(e *Engine) { e.observer = obs } }

// WithSessionsReused keeps a poll's session, where closing it commits
// nothing (plugin.Reusable), for the look or poll of the same input that
// follows within a minute, rather than log in again: a migration
// verifies right after its pass. A daemon, polling minutes apart, does
// not hold sessions between polls.
func WithSessionsReused() Option { return func(e *Engine) { e.reuse = true } }

// Open takes cfg.StateDir for this process (a second mailflow on the same
// state_dir is refused), opens the ledger and quarantine in it, and builds
// and starts cfg.
func Open(cfg *config.Config, reg plugin.Registry, log *slog.Logger, opts ...Option) (*Engine, error) {
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(cfg.StateDir)
	if err != nil {
		unlock()
		return nil, err
	}
	e, err := open(cfg, reg, log, l, opts)
	if err != nil {
		l.Close()
		unlock()
		return nil, err
	}
	e.unlock = unlock
	e.forgetOrphans(cfg)
	return e, nil
}

// OpenLedger takes cfg.StateDir for this process and opens its ledger
// alone, without building anything: for "mailflow ledger". close releases
// both.
func OpenLedger(cfg *config.Config) (l *ledger.Ledger, close func(), err error) {
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, nil, err
	}
	if l, err = ledger.Open(cfg.StateDir); err != nil {
		unlock()
		return nil, nil, err
	}
	return l, func() { l.Close(); unlock() }, nil
}

// OpenForResend opens the quarantine of cfg and builds and starts its
// outputs and pipelines, without the ledger: for "mailflow quarantine
// resend", which may run while "mailflow run" holds the state_dir. It
// polls nothing.
func OpenForResend(cfg *config.Config, reg plugin.Registry, log *slog.Logger, opts ...Option) (*Engine, error) {
	return open(cfg, reg, log, nil, opts)
}

func open(cfg *config.Config, reg plugin.Registry, log *slog.Logger, l *ledger.Ledger, opts []Option) (*Engine, error) {
	q, err := quarantine.Open(filepath.Join(cfg.StateDir, "quarantine"))
	if err != nil {
		return nil, err
	}
	if err := ensureDir(cfg.Spool.Dir); err != nil {
		return nil, err
	}
	e := &Engine{Log: log, Ledger: l, Quarantine: q, Registry: reg, observer: NopObserver{},
		sem: make(chan struct{}, cfg.MaxInFlight), mem: newMemBudget(cfg.MemoryBudget),
		buffers: message.NewBufferPool(), polling: map[string]*sync.Mutex{}}
	limitMemory(cfg.MemoryBudget)
	for _, o := range opts {
		o(e)
	}
	s, err := Build(cfg, reg, log, nil)
	if err != nil {
		return nil, err
	}
	if err := s.Start(context.Background()); err != nil {
		s.Close()
		return nil, err
	}
	e.gens.install(s)
	return e, nil
}

// forgetOrphans removes the ledger records of inputs that left the config
// longer than cfg.LedgerGrace ago, and marks newly missing ones.
func (e *Engine) forgetOrphans(cfg *config.Config) {
	var names []string
	for _, ic := range cfg.Inputs {
		names = append(names, ic.Name)
	}
	removed, orphaned, err := e.Ledger.ForgetOrphans(names, cfg.LedgerGrace, time.Now())
	for _, n := range orphaned {
		e.Log.Info("input is no longer in the config; its ledger records are kept for the grace period in case it comes back", "input", n, "grace", cfg.LedgerGrace)
	}
	for _, n := range removed {
		e.Log.Info("removed the ledger records of an input that left the config", "input", n, "grace", cfg.LedgerGrace)
	}
	if err != nil {
		e.Log.Warn("ledger: forgetting removed inputs", "err", err)
	}
}

// Config returns the config now in force.
func (e *Engine) Config() *config.Config { return e.gens.current().setup.Config }

// Close waits for messages in flight, closes every plugin, the ledger and
// the state_dir lock.
func (e *Engine) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.discardAhead()
	err := e.gens.retireAll(ctx)
	if e.Ledger != nil {
		err = errors.Join(err, e.Ledger.Close())
	}
	if e.unlock != nil {
		e.unlock()
	}
	return err
}

// RunOnce polls every input once, concurrently, and returns each one's
// stats, and the errors their polls ended with.
func (e *Engine) RunOnce(ctx context.Context) (map[string]Stats, error) {
	r := e.PollAll(ctx)
	return r.Stats, r.Err()
}

// PollAll polls every input once, concurrently.
func (e *Engine) PollAll(ctx context.Context) Round {
	r := Round{Stats: map[string]Stats{}, Errs: map[string]error{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, ic := range e.Config().Inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := e.PollOnce(ctx, ic.Name)
			mu.Lock()
			defer mu.Unlock()
			r.Stats[ic.Name] = st
			if err != nil {
				r.Errs[ic.Name] = err
			}
		}()
	}
	wg.Wait()
	return r
}
