package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailflow/mailflow/engine/config"
)

// A generation is one built config in use. A poll or a resend pins the
// generation that is current when it starts and keeps it for its whole
// session; a reload installs a new generation and retires the old one,
// whose own plugins are closed once the last session pinned to it ends.
type generation struct {
	setup *Setup

	mu      sync.Mutex
	pins    int
	retired bool
	idle    chan struct{} // closed once retired with no pins left
}

// pin holds g for one session; false when g is already retired.
func (g *generation) pin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.pins++
	return true
}

// unpin ends a session's hold on g.
func (g *generation) unpin() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pins--
	if g.retired && g.pins == 0 {
		close(g.idle)
	}
}

// retire stops g from being pinned; the channel closes when no session
// holds it any more.
func (g *generation) retire() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.retired {
		g.retired = true
		if g.pins == 0 {
			close(g.idle)
		}
	}
	return g.idle
}

// generations holds the current generation.
type generations struct {
	cur atomic.Pointer[generation]
}

func (gs *generations) install(s *Setup) *generation {
	g := &generation{setup: s, idle: make(chan struct{})}
	old := gs.cur.Swap(g)
	if old != nil {
		old.setup.handOver(s)
	}
	return old
}

func (gs *generations) current() *generation { return gs.cur.Load() }

// pin pins the current generation. A reload may retire it between the load
// and the pin; then the new one is pinned.
func (gs *generations) pin() *generation {
	for {
		g := gs.cur.Load()
		if g.pin() {
			return g
		}
	}
}

// retireAll retires the current generation and closes its plugins once no
// session holds it (or ctx ends).
func (gs *generations) retireAll(ctx context.Context) error {
	g := gs.cur.Load()
	if g == nil {
		return nil
	}
	return g.close(ctx)
}

// close retires g, waits for its sessions and closes the plugins it owns.
func (g *generation) close(ctx context.Context) error {
	select {
	case <-g.retire():
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.setup.closeOwned()
}

// Reload reads the config file again and, if it is valid and every plugin
// and script in it builds and starts, swaps it in (see Apply). It reports
// whether it did; on any error the running config stays in force.
func (e *Engine) Reload() (bool, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	path := e.gens.current().setup.Config.Path
	if path == "" {
		err := errors.New("this config was made in code: there is no file to reload")
		e.observer.Reloaded(err)
		return false, err
	}
	cfg, err := config.Load(path, e.Registry)
	if err == nil {
		err = e.apply(cfg)
	}
	e.observer.Reloaded(err)
	return err == nil, err
}

// Apply swaps in cfg if every plugin and script in it builds and starts.
// Sessions under way finish with the generation they started with. A
// plugin is taken over from the running config only when everything it
// was built from is unchanged: its table, the global settings it reads,
// and the bytes of the files it read (secrets, CA certificates); any other
// is built afresh. On any error the running config stays in force.
func (e *Engine) Apply(cfg *config.Config) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	err := e.apply(cfg)
	e.observer.Reloaded(err)
	return err
}

func (e *Engine) apply(cfg *config.Config) error {
	old := e.gens.current()
	if cfg.StateDir != old.setup.Config.StateDir {
		return &config.Error{File: cfg.Path, Msg: "state_dir cannot change while mailflow runs; restart to move it"}
	}
	next, err := Build(cfg, e.Registry, e.Log, old.setup)
	if err == nil {
		if err = next.Start(context.Background()); err != nil {
			next.Close()
		}
	}
	if err != nil {
		return err
	}
	e.gens.install(next)
	e.syncLoops()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := old.close(ctx); err != nil {
			e.Log.Warn("closing the plugins of the previous config", "err", err)
		}
	}()
	return nil
}
