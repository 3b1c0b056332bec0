package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
)

// Setup is one built config: every plugin provisioned and initialised, every
// script compiled. The engine holds the current Setup behind an atomic
// pointer; a reload builds a new one completely before swapping it in, and
// a message keeps the Setup it started with until it is settled.
type Setup struct {
	Config    *Config
	outputs   map[string]Output
	pipelines map[string]*pipeline

	inflight sync.WaitGroup
	owned    []any // plugins this Setup made (not reused from an older one)
}

type pipeline struct {
	name    string
	chain   *Chain
	outputs []string
}

// Chain is a pipeline's filter scripts, in order.
type Chain struct {
	filters []namedFilter
}

type namedFilter struct {
	name string // the script's file name, for logs and reasons
	f    Filter
}

// LoadChain compiles the scripts at paths, in order. Filters that implement
// Provisioner get a logger that names the script.
func LoadChain(cat Catalog, paths []string, limits ScriptLimits, log *slog.Logger) (*Chain, error) {
	c := &Chain{}
	for _, path := range paths {
		f, err := cat.LoadScript(path, limits)
		if err != nil {
			c.Close()
			return nil, err
		}
		name := filepath.Base(path)
		if err := initPlugin(f, Env{Name: name, Logger: log}); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c.filters = append(c.filters, namedFilter{name: name, f: f})
	}
	return c, nil
}

// Close unloads every script of the chain.
func (c *Chain) Close() error {
	var errs []error
	for _, f := range c.filters {
		if cl, ok := f.f.(Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	c.filters = nil
	return errors.Join(errs...)
}

// Build provisions and initialises every plugin of cfg and compiles every
// script. Plugins whose config text is unchanged from prev (which may be nil)
// are taken over from it instead, keeping their connections. On error,
// everything Build set up is closed again.
func Build(cfg *Config, cat Catalog, ledger *Ledger, log *slog.Logger, prev *Setup) (*Setup, error) {
	s := &Setup{Config: cfg, outputs: map[string]Output{}, pipelines: map[string]*pipeline{}}
	fail := func(err error) (*Setup, error) {
		s.closeOwned()
		return nil, err
	}
	env := func(name string) Env {
		return Env{Name: name, Logger: log.With("plugin", name), Spool: cfg.Spool, BaseDir: cfg.BaseDir}
	}
	for _, oc := range cfg.Outputs {
		if prev != nil {
			if old := prev.Config.Output(oc.Name); old != nil && old.Type == oc.Type && old.settings == oc.settings {
				oc.Plugin = old.Plugin
				s.outputs[oc.Name] = oc.Plugin
				continue
			}
		}
		if err := initPlugin(oc.Plugin, env(oc.Name)); err != nil {
			return fail(&ConfigError{File: cfg.Path, Line: oc.Line, Msg: fmt.Sprintf("output %q: %v", oc.Name, err)})
		}
		s.owned = append(s.owned, oc.Plugin)
		s.outputs[oc.Name] = oc.Plugin
	}
	for _, ic := range cfg.Inputs {
		if prev != nil {
			if old := prev.Config.Input(ic.Name); old != nil && old.Type == ic.Type && old.settings == ic.settings {
				ic.Plugin = old.Plugin
				continue
			}
		}
		e := env(ic.Name)
		if ledger != nil {
			e.Ledger = ledger.For(ic.Name)
		}
		if err := initPlugin(ic.Plugin, e); err != nil {
			return fail(&ConfigError{File: cfg.Path, Line: ic.Line, Msg: fmt.Sprintf("input %q: %v", ic.Name, err)})
		}
		s.owned = append(s.owned, ic.Plugin)
	}
	for _, pc := range cfg.Pipelines {
		chain, err := LoadChain(cat, pc.Scripts, cfg.Script, log)
		if err != nil {
			return fail(err)
		}
		s.owned = append(s.owned, chain)
		s.pipelines[pc.Name] = &pipeline{name: pc.Name, chain: chain, outputs: pc.Outputs}
	}
	return s, nil
}

func initPlugin(p any, env Env) error {
	if pv, ok := p.(Provisioner); ok {
		if err := pv.Provision(env); err != nil {
			return err
		}
	}
	if in, ok := p.(Initializer); ok {
		if err := in.Init(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every plugin this Setup made. For a Setup that was never
// swapped into an engine (mailflow check).
func (s *Setup) Close() error { return s.closeOwned() }

// closeOwned closes the plugins this Setup made.
func (s *Setup) closeOwned() error {
	var errs []error
	for _, p := range s.owned {
		if c, ok := p.(Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	s.owned = nil
	return errors.Join(errs...)
}

// handOver moves to next the plugins of s that next took over, so that
// retiring s does not close them. It runs before next is swapped in.
func (s *Setup) handOver(next *Setup) {
	kept := map[any]bool{}
	for _, o := range next.Config.Outputs {
		kept[o.Plugin] = true
	}
	for _, i := range next.Config.Inputs {
		kept[i.Plugin] = true
	}
	var mine []any
	for _, p := range s.owned {
		if kept[p] {
			next.owned = append(next.owned, p)
		} else {
			mine = append(mine, p)
		}
	}
	s.owned = mine
}

// retire waits for the messages still using s, then closes what s owns.
func (s *Setup) retire(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.closeOwned()
}
