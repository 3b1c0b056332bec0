// Package check does what "mailflow check" promises: everything "run"
// would do before touching mail — read the config, make and initialise
// every plugin, compile every script, look at the paths and secrets it
// names, match the outputs scripts route to with those defined, and with
// Connect try each server — reporting every problem at once, sorted by
// file and line, rather than stopping at the first.
package check

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/fscheck"
)

// Options say how far a check goes.
type Options struct {
	// NoSecrets checks that each secret is named but reads none (password
	// files and variables, key files): a config can be checked in CI,
	// where its secrets are not.
	NoSecrets bool
	// Connect also tries every server: connect, TLS, log in, log out.
	Connect bool
	// Timeout bounds each server tried (default 20s).
	Timeout time.Duration
}

// Config checks the config file at path.
func Config(ctx context.Context, path string, reg plugin.Registry, log *slog.Logger, opts Options) *Report {
	r := &Report{Config: path}
	src, err := os.ReadFile(path)
	if err != nil {
		r.problem(path, 0, false, "%v", err)
		return r
	}
	cfg, errs := config.Inspect(path, src, reg, config.Options{NoSecrets: opts.NoSecrets})
	for _, e := range errs {
		r.problem(e.File, e.Line, false, "%s", e.Msg)
	}
	if cfg == nil {
		return r
	}
	r.Inputs, r.Pipelines, r.Outputs = len(cfg.Inputs), len(cfg.Pipelines), len(cfg.Outputs)
	if cfg.StateDir != "" {
		if err := fscheck.Writable(cfg.StateDir); err != nil {
			r.problem(path, cfg.KeyLine("state_dir"), false, "state_dir: %v (the ledger and quarantine live there)", err)
		}
	}
	c := &checker{r: r, cfg: cfg, reg: reg, log: log, opts: opts}
	defer c.close()
	c.plugins()
	c.scripts()
	if opts.Connect {
		c.connect(ctx)
	}
	r.sort()
	return r
}

// checker is one check of a parsed config.
type checker struct {
	r    *Report
	cfg  *config.Config
	reg  plugin.Registry
	log  *slog.Logger
	opts Options
	made []any // plugins initialised, to close
	ok   map[any]bool
}

func (c *checker) env(name string) plugin.Env {
	cfg := c.cfg
	return plugin.Env{Name: name, Logger: c.log.With("plugin", name), Spool: cfg.Spool, BaseDir: cfg.BaseDir,
		StateDir: cfg.StateDir, ConfigPath: cfg.Path, Instance: cfg.Instance, NoSecrets: c.opts.NoSecrets}
}

// plugins initialises each input and output on its own, so that one
// that fails does not hide the next, then asks each what Start would
// find wrong.
func (c *checker) plugins() {
	c.ok = map[any]bool{}
	try := func(kind, name string, line int, p any) {
		what := fmt.Sprintf("%s %q: ", kind, name)
		if err := engine.Prepare(p, c.env(name)); err != nil {
			c.r.problem(c.cfg.Path, line, false, "%s%v", what, err)
			return
		}
		c.made = append(c.made, p)
		if ch, ok := p.(plugin.Checker); ok {
			if err := ch.Check(); err != nil {
				c.r.problem(c.cfg.Path, line, false, "%s%v", what, err)
				return
			}
		}
		c.ok[p] = true
	}
	for _, oc := range c.cfg.Outputs {
		try("output", oc.Name, oc.Line, oc.Plugin)
	}
	for _, ic := range c.cfg.Inputs {
		try("input", ic.Name, ic.Line, ic.Plugin)
	}
}

// scripts compiles each script on its own and compares the outputs it
// routes to with the outputs defined.
func (c *checker) scripts() {
	// An output with a mistake of its own is reported as such; a route
	// to it is not a second mistake.
	defined := c.cfg.Declared("output")
	seen := map[string]bool{}
	for _, pc := range c.cfg.Pipelines {
		for _, path := range pc.Scripts {
			c.r.Scripts++
			chain, err := engine.LoadChain(c.reg, nil, []string{path}, c.cfg.Script, c.log)
			if err != nil {
				c.scriptError(pc, err)
				continue
			}
			if !seen[path] {
				seen[path] = true
				c.routes(chain, defined)
			}
			chain.Close()
		}
	}
}

// scriptError reports a script that did not load: at its own file and
// line when it says where, else at the pipeline's scripts line.
func (c *checker) scriptError(pc *config.Pipeline, err error) {
	var ce *config.Error
	if errors.As(engine.ScriptError(c.cfg, pc, err), &ce) {
		c.r.problem(ce.File, ce.Line, false, "%s", ce.Msg)
		return
	}
	file, line, msg := splitPlace(err.Error())
	if file == "" {
		file, line = c.cfg.Path, pc.ScriptsLine
		msg = fmt.Sprintf("pipeline %q: %s", pc.Name, msg)
	}
	c.r.problem(file, line, false, "%s", msg)
}

// routes reports a route() to an output the config does not define (which
// would quarantine every message it routes), and warns of one whose name
// only the run knows.
func (c *checker) routes(chain *engine.Chain, defined []string) {
	for _, f := range chain.Filters() {
		rl, ok := f.(plugin.RouteLister)
		if !ok {
			continue
		}
		routes, err := rl.Routes()
		if err != nil {
			continue // a script that compiled parses; nothing to add
		}
		for _, rt := range routes {
			switch {
			case rt.Output == "":
				c.r.problem(rt.File, rt.Line, true, "route() names an output computed at run time: make sure it is one of %s", strings.Join(defined, ", "))
			case !slices.Contains(defined, rt.Output):
				c.r.problem(rt.File, rt.Line, false, "route(%q): %s; every message routed there would go to the quarantine", rt.Output, config.Undefined("output", rt.Output, defined))
			}
		}
	}
}

// connect tries every server, one at a time: an input by opening a
// session and closing it, an output that can (plugin.Prober) by a login
// and a logout.
func (c *checker) connect(ctx context.Context) {
	timeout := c.opts.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	try := func(kind, name, typ string, p any, f func(context.Context) error) {
		if !c.ok[p] {
			c.r.Probes = append(c.r.Probes, Probe{Kind: kind, Name: name, Type: typ, Skipped: "its config has a problem"})
			return
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		c.r.Probes = append(c.r.Probes, Probe{Kind: kind, Name: name, Type: typ, Err: err, Took: time.Since(start)})
	}
	for _, ic := range c.cfg.Inputs {
		try("input", ic.Name, ic.Type, ic.Plugin, func(ctx context.Context) error {
			if pr, ok := ic.Plugin.(plugin.Prober); ok {
				return pr.Probe(ctx)
			}
			s, err := ic.Plugin.Open(ctx)
			if err != nil {
				return err
			}
			return s.Close(ctx)
		})
	}
	for _, oc := range c.cfg.Outputs {
		pr, ok := oc.Plugin.(plugin.Prober)
		if !ok {
			continue // a Maildir: nothing to connect to
		}
		try("output", oc.Name, oc.Type, oc.Plugin, pr.Probe)
	}
}

func (c *checker) close() {
	for _, p := range c.made {
		if cl, ok := p.(plugin.Closer); ok {
			cl.Close()
		}
	}
}

// splitPlace splits "file:line: message", as a script's compile error
// reads, into its parts; file is "" when msg has no such place.
func splitPlace(msg string) (file string, line int, rest string) {
	parts := strings.SplitN(msg, ":", 3)
	if len(parts) == 3 && strings.HasSuffix(parts[0], ".lua") {
		if _, err := fmt.Sscan(parts[1], &line); err == nil {
			return parts[0], line, strings.TrimSpace(parts[2])
		}
	}
	return "", 0, msg
}
