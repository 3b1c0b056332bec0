package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Setup is one built config: every plugin provisioned and initialised, every
// script compiled. The engine runs it as a generation (see reload.go).
type Setup struct {
	Config    *config.Config
	outputs   map[string]plugin.Output
	pipelines map[string]*pipeline
	// built says, per "input/NAME" and "output/NAME", what each plugin
	// was built from: a reload takes it over only when that is unchanged.
	built map[string]provenance

	owned []any // plugins and chains this Setup holds and closes
	fresh []any // plugins this Setup built (not taken over), to Start
}

// provenance is what a plugin was built from.
type provenance struct {
	fingerprint string // see fingerprint; empty: never taken over
	files       string // digest of the files it read (FileUser)
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
	f    plugin.Filter
}

// LoadChain makes the chain of a pipeline: the filters given in code, then
// the scripts at paths compiled, in order. Filters that implement
// Provisioner get a logger that names them.
func LoadChain(reg plugin.Registry, code []config.NamedFilter, paths []string, limits plugin.ScriptLimits, log *slog.Logger) (*Chain, error) {
	c := &Chain{}
	for _, nf := range code {
		if err := initPlugin(nf.Filter, plugin.Env{Name: nf.Name, Logger: log}); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", nf.Name, err)
		}
		c.filters = append(c.filters, namedFilter{name: nf.Name, f: nf.Filter})
	}
	for _, path := range paths {
		f, err := reg.LoadScript(path, limits)
		if err != nil {
			c.Close()
			return nil, err
		}
		name := filepath.Base(path)
		if err := initPlugin(f, plugin.Env{Name: name, Logger: log}); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c.filters = append(c.filters, namedFilter{name: name, f: f})
	}
	return c, nil
}

// Filters are the chain's filters, in order.
func (c *Chain) Filters() []plugin.Filter {
	out := make([]plugin.Filter, len(c.filters))
	for i, f := range c.filters {
		out[i] = f.f
	}
	return out
}

// Close unloads every script of the chain.
func (c *Chain) Close() error {
	var errs []error
	for _, f := range c.filters {
		if cl, ok := f.f.(plugin.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	c.filters = nil
	return errors.Join(errs...)
}

// Build provisions and initialises every plugin of cfg and compiles every
// script; it does no I/O of its own (Start does). A plugin of prev (which
// may be nil) is taken over instead of built when everything it was built
// from is unchanged (see fingerprint), keeping its connections. On error,
// everything Build set up is closed again.
func Build(cfg *config.Config, reg plugin.Registry, log *slog.Logger, prev *Setup) (*Setup, error) {
	s := &Setup{Config: cfg, outputs: map[string]plugin.Output{}, pipelines: map[string]*pipeline{}, built: map[string]provenance{}}
	fail := func(err error) (*Setup, error) {
		s.closeOwned()
		return nil, err
	}
	env := func(name string) plugin.Env {
		return plugin.Env{Name: name, Logger: log.With("plugin", name), Spool: cfg.Spool, BaseDir: cfg.BaseDir, StateDir: cfg.StateDir, ConfigPath: cfg.Path, Instance: cfg.Instance}
	}
	for _, oc := range cfg.Outputs {
		key, fp := "output/"+oc.Name, fingerprint(cfg, "output", oc.Type, oc.Settings)
		if old, ok := prev.takeOver(key, fp); ok {
			oc.Plugin = prev.Config.Output(oc.Name).Plugin
			s.outputs[oc.Name], s.built[key] = oc.Plugin, old
			continue
		}
		if err := initPlugin(oc.Plugin, env(oc.Name)); err != nil {
			return fail(&config.Error{File: cfg.Path, Line: oc.Line, Msg: fmt.Sprintf("output %q: %v", oc.Name, err)})
		}
		s.built[key] = provenance{fingerprint: fp, files: filesDigest(oc.Plugin)}
		s.owned = append(s.owned, oc.Plugin)
		s.fresh = append(s.fresh, oc.Plugin)
		s.outputs[oc.Name] = oc.Plugin
	}
	for _, ic := range cfg.Inputs {
		key, fp := "input/"+ic.Name, fingerprint(cfg, "input", ic.Type, ic.Settings)
		if old, ok := prev.takeOver(key, fp); ok {
			ic.Plugin, s.built[key] = prev.Config.Input(ic.Name).Plugin, old
			continue
		}
		ienv := env(ic.Name)
		if ic.MaxMessageSize > 0 {
			// The input's own bound: one that receives (smtp) refuses
			// larger mail as it comes.
			ienv.Spool.MaxSize = ic.MaxMessageSize
		}
		if err := initPlugin(ic.Plugin, ienv); err != nil {
			return fail(&config.Error{File: cfg.Path, Line: ic.Line, Msg: fmt.Sprintf("input %q: %v", ic.Name, err)})
		}
		s.built[key] = provenance{fingerprint: fp, files: filesDigest(ic.Plugin)}
		s.owned = append(s.owned, ic.Plugin)
		s.fresh = append(s.fresh, ic.Plugin)
	}
	for _, pc := range cfg.Pipelines {
		chain, err := LoadChain(reg, pc.Filters, pc.Scripts, cfg.Script, log)
		if err != nil {
			return fail(ScriptError(cfg, pc, err))
		}
		s.owned = append(s.owned, chain)
		s.pipelines[pc.Name] = &pipeline{name: pc.Name, chain: chain, outputs: pc.Outputs}
	}
	return s, nil
}

// fingerprint is everything a plugin is built from but its files: its
// type, its table's text, and the global settings plugins read. A plugin
// made in code has no table text, and no fingerprint: it is never taken
// over.
func fingerprint(cfg *config.Config, kind, typ, settings string) string {
	if settings == "" {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%+v\x00", kind, typ, settings, cfg.BaseDir, cfg.Spool)
	return hex.EncodeToString(h.Sum(nil))
}

// filesDigest is the digest of the bytes of the files a plugin read.
func filesDigest(p any) string {
	fu, ok := p.(plugin.FileUser)
	if !ok {
		return ""
	}
	d := config.DigestFiles(fu.Files())
	return hex.EncodeToString(d[:])
}

// takeOver reports whether the plugin s built under key can serve a new
// config whose fingerprint for it is fp: the same table and globals, and
// its files still hold the same bytes.
func (s *Setup) takeOver(key, fp string) (provenance, bool) {
	if s == nil || fp == "" {
		return provenance{}, false
	}
	old, ok := s.built[key]
	if !ok || old.fingerprint != fp {
		return provenance{}, false
	}
	var p any
	if kind, name, _ := strings.Cut(key, "/"); kind == "input" {
		p = s.Config.Input(name).Plugin
	} else {
		p = s.Config.Output(name).Plugin
	}
	return old, filesDigest(p) == old.files
}

// Start does the start-up I/O of the plugins this Setup built (Starter).
func (s *Setup) Start(ctx context.Context) error {
	for _, p := range s.fresh {
		if st, ok := p.(plugin.Starter); ok {
			if err := st.Start(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// ScriptError places an error loading one of pc's scripts: a script that
// is not there is a mistake in the config, at its scripts line; a script
// that does not compile names its own file and line already.
func ScriptError(cfg *config.Config, pc *config.Pipeline, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		line := pc.ScriptsLine
		if line == 0 {
			line = pc.Line
		}
		return &config.Error{File: cfg.Path, Line: line, Msg: fmt.Sprintf("pipeline %q: script %s: %v", pc.Name, pe.Path, pe.Err)}
	}
	return err
}

// Prepare provisions and initialises a plugin, as Build does each one:
// for "mailflow check", which builds them one by one to report every
// problem.
func Prepare(p any, env plugin.Env) error { return initPlugin(p, env) }

func initPlugin(p any, env plugin.Env) error {
	if pv, ok := p.(plugin.Provisioner); ok {
		if err := pv.Provision(env); err != nil {
			return err
		}
	}
	if in, ok := p.(plugin.Initializer); ok {
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
		if c, ok := p.(plugin.Closer); ok {
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
