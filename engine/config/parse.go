package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/srs"
)

// file is mailflow.toml as written: the global keys, and the tables left
// as primitives until the registry says which plugin each one decodes into.
type file struct {
	StateDir        string           `toml:"state_dir"`
	MaxInFlight     int              `toml:"max_in_flight"`
	MaxMessageSize  int64            `toml:"max_message_size"`
	SpillOver       int64            `toml:"spill_over"`
	MemoryBudget    int64            `toml:"memory_budget"`
	MaxHeaderSize   int64            `toml:"max_header_size"`
	ScriptTimeout   string           `toml:"script_timeout"`
	ScriptMemory    int64            `toml:"script_max_memory"`
	Subaddress      string           `toml:"subaddress_separator"`
	ScriptLib       string           `toml:"script_lib"`
	StoreMaxKeys    int              `toml:"script_store_max_keys"`
	Instance        string           `toml:"instance"`
	SRSSecretFile   string           `toml:"srs_secret_file"`
	SRSMaxAge       string           `toml:"srs_max_age"`
	TrustedAuthIDs  []string         `toml:"trusted_authserv_ids"`
	StoreMaxBytes   int64            `toml:"script_store_max_bytes"`
	FetchAttempts   int              `toml:"fetch_attempts"`
	LedgerGrace     string           `toml:"ledger_grace"`
	ShutdownTimeout string           `toml:"shutdown_timeout"`
	Metrics         Metrics          `toml:"metrics"`
	HTTP            HTTP             `toml:"http"`
	Input           []toml.Primitive `toml:"input"`
	Pipeline        []toml.Primitive `toml:"pipeline"`
	Output          []toml.Primitive `toml:"output"`
}

// Load reads, decodes and checks a config file. Plugins are made and
// decoded but not provisioned or started.
func Load(path string, reg plugin.Registry) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src, reg)
}

// parser is one Parse: the file's text positions, for errors.
type parser struct {
	path string
	pos  positions
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return &Error{File: p.path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// duration reads a global duration key: empty gives def; a value that is
// not a duration, or is below least, is an error at the key's line that
// shows what a good one looks like.
func (p *parser) duration(key, value string, def, least time.Duration, example string) (time.Duration, error) {
	if value == "" {
		return def, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil || d < least {
		what := "a duration"
		switch {
		case least >= time.Hour:
			what = fmt.Sprintf("a duration of %s or more", strings.TrimSuffix(least.String(), "0m0s"))
		case least > 0:
			what = "a positive duration"
		}
		return 0, p.errorf(p.pos.line("", 0, key), "%s: %q is not %s, like %q", key, value, what, example)
	}
	return d, nil
}

// Parse is Load on bytes already read.
func Parse(path string, src []byte, reg plugin.Registry) (*Config, error) {
	p := &parser{path: path, pos: scanPositions(src)}
	var fc file
	md, err := toml.NewDecoder(bytes.NewReader(src)).Decode(&fc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, p.errorf(pe.Position.Line, "%s", pe.Message)
		}
		return nil, p.errorf(0, "%v", err)
	}
	abs, _ := filepath.Abs(path)
	cfg, err := p.globals(&fc, filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	if err := p.tables(cfg, &fc, md, reg); err != nil {
		return nil, err
	}
	if len(cfg.Inputs) == 0 {
		return nil, p.errorf(0, "no [[input]] is defined")
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		section, key := "", k.String()
		if len(k) > 1 {
			section, key = k[0], k[len(k)-1]
		}
		return nil, p.errorf(p.pos.firstKey(section, key), "unknown key %q%s", key, inSection(section))
	}
	return cfg, nil
}

// New is a config made in code (a migration makes its own): every global
// at its default, state in stateDir, relative paths relative to baseDir.
// Its inputs, pipelines and outputs are the caller's to add.
func New(stateDir, baseDir string) (*Config, error) {
	return (&parser{}).globals(&file{StateDir: stateDir}, baseDir)
}

// globals checks the keys outside any table and applies their defaults.
func (p *parser) globals(fc *file, baseDir string) (*Config, error) {
	cfg := &Config{
		Path:          p.path,
		BaseDir:       baseDir,
		MaxInFlight:   fc.MaxInFlight,
		MemoryBudget:  fc.MemoryBudget,
		Spool:         message.SpoolOptions{InMemory: fc.SpillOver, MaxSize: fc.MaxMessageSize, MaxHeader: fc.MaxHeaderSize},
		Script:        plugin.ScriptLimits{MaxMemory: fc.ScriptMemory, Separator: fc.Subaddress, StoreMaxKeys: fc.StoreMaxKeys, StoreMaxBytes: fc.StoreMaxBytes, TrustedAuthServIDs: fc.TrustedAuthIDs},
		HTTP:          fc.HTTP,
		FetchAttempts: fc.FetchAttempts,
	}
	var err error
	if cfg.ShutdownTimeout, err = p.duration("shutdown_timeout", fc.ShutdownTimeout, 30*time.Second, time.Nanosecond, "30s"); err != nil {
		return nil, err
	}
	if cfg.LedgerGrace, err = p.duration("ledger_grace", fc.LedgerGrace, 7*24*time.Hour, 0, "168h"); err != nil {
		return nil, err
	}
	if cfg.Script.Timeout, err = p.duration("script_timeout", fc.ScriptTimeout, time.Second, time.Nanosecond, "1s"); err != nil {
		return nil, err
	}
	if fc.SRSMaxAge != "" {
		if cfg.Script.SRSMaxAge, err = p.duration("srs_max_age", fc.SRSMaxAge, 0, 24*time.Hour, "504h"); err != nil {
			return nil, err
		}
	}
	if cfg.FetchAttempts <= 0 {
		cfg.FetchAttempts = 3
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.MemoryBudget <= 0 {
		cfg.MemoryBudget = DefaultMemoryBudget
	}
	if cfg.Spool.MaxHeader <= 0 {
		cfg.Spool.MaxHeader = message.DefaultSpool.MaxHeader
	}
	if cfg.Spool.InMemory <= 0 {
		cfg.Spool.InMemory = DefaultSpillOver
	}
	// A message held in memory waits for room in the budget: one larger
	// than the whole budget would wait for ever, so it is spooled.
	cfg.Spool.InMemory = min(cfg.Spool.InMemory, cfg.MemoryBudget)
	if cfg.Script.MaxMemory <= 0 {
		cfg.Script.MaxMemory = 64 << 20
	}
	if fc.StateDir == "" {
		return nil, p.errorf(0, "state_dir is required (where the delivery ledger and quarantine live)")
	}
	cfg.StateDir = cfg.Resolve(fc.StateDir)
	cfg.Spool.Dir = filepath.Join(cfg.StateDir, "spool")
	cfg.Script.StoreDir = cfg.StateDir
	if cfg.Instance, err = instance(fc.Instance); err != nil {
		return nil, p.errorf(p.pos.line("", 0, "instance"), "%v", err)
	}
	cfg.Script.Instance = cfg.Instance
	if fc.SRSSecretFile != "" {
		secrets, err := srs.ReadSecrets(cfg.Resolve(fc.SRSSecretFile))
		if err != nil {
			return nil, p.errorf(p.pos.line("", 0, "srs_secret_file"), "srs_secret_file: %v", err)
		}
		cfg.Script.SRSSecrets = secrets
	}
	if err := p.http(cfg, fc); err != nil {
		return nil, err
	}
	if fc.ScriptLib != "" {
		cfg.Script.LibDir = cfg.Resolve(fc.ScriptLib)
		if fi, err := os.Stat(cfg.Script.LibDir); err != nil || !fi.IsDir() {
			return nil, p.errorf(p.pos.line("", 0, "script_lib"), "script_lib: %s is not a directory", cfg.Script.LibDir)
		}
	}
	return cfg, nil
}

// http checks the [http] table (or an older config's [metrics] listen):
// an address to listen on, and, beyond loopback, TLS and an admin token,
// since the page shows quarantined mail and anyone who can reach it could
// read it.
func (p *parser) http(cfg *Config, fc *file) error {
	h := &cfg.HTTP
	key := "listen"
	if h.Listen == "" && fc.Metrics.Listen != "" {
		h.Listen, key = fc.Metrics.Listen, "metrics.listen"
	}
	if h.Listen == "" {
		return nil
	}
	line := p.pos.line("http", 0, "listen")
	if key != "listen" {
		line = p.pos.line("metrics", 0, "listen")
	}
	host, port, err := net.SplitHostPort(h.Listen)
	if err != nil || port == "" {
		return p.errorf(line, "%s: %q is not host:port (like \"127.0.0.1:9090\")", key, h.Listen)
	}
	h.AdminTokenFile, h.TLSCertFile, h.TLSKeyFile = cfg.Resolve(h.AdminTokenFile), cfg.Resolve(h.TLSCertFile), cfg.Resolve(h.TLSKeyFile)
	if (h.TLSCertFile == "") != (h.TLSKeyFile == "") {
		return p.errorf(line, "http: give both tls_cert_file and tls_key_file, or neither")
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		if h.TLSCertFile == "" || h.AdminTokenFile == "" {
			return p.errorf(line, "%s: %q is reachable from other machines; the status page shows quarantined mail, so it needs tls_cert_file, tls_key_file and admin_token_file there (or listen on 127.0.0.1 and reach it through an SSH tunnel or a proxy)", key, h.Listen)
		}
	}
	return nil
}

// instance is the name this mailflow gives itself in trace fields: the
// configured one, or the host name.
func instance(configured string) (string, error) {
	name := configured
	if name == "" {
		name, _ = os.Hostname()
	}
	if name == "" || strings.ContainsAny(name, " \t\r\n;/") {
		if configured != "" {
			return "", fmt.Errorf("instance: %q: a name without spaces, ; or /", configured)
		}
		name = "mailflow"
	}
	return name, nil
}

// tables decodes the [[output]], [[pipeline]] and [[input]] tables, in
// that order, so that each can check the names it refers to.
func (p *parser) tables(cfg *Config, fc *file, md toml.MetaData, reg plugin.Registry) error {
	for i, prim := range fc.Output {
		oc := &Output{Line: p.pos.table("output", i)}
		if err := md.PrimitiveDecode(prim, oc); err != nil {
			return p.errorf(oc.Line, "output: %v", err)
		}
		if oc.Name == "" {
			return p.errorf(oc.Line, "output: name is required")
		}
		plugin, ok := reg.NewOutput(oc.Type)
		if !ok {
			return p.errorf(p.pos.line("output", i, "type"), "output %q: unknown type %q; known: %s", oc.Name, oc.Type, strings.Join(reg.OutputTypes(), ", "))
		}
		if err := md.PrimitiveDecode(prim, plugin); err != nil {
			return p.errorf(oc.Line, "output %q: %v", oc.Name, err)
		}
		oc.Plugin, oc.Settings = plugin, p.pos.text("output", i)
		cfg.Outputs = append(cfg.Outputs, oc)
	}
	for i, prim := range fc.Pipeline {
		pc := &Pipeline{Line: p.pos.table("pipeline", i)}
		if err := md.PrimitiveDecode(prim, pc); err != nil {
			return p.errorf(pc.Line, "pipeline: %v", err)
		}
		if pc.Name == "" {
			return p.errorf(pc.Line, "pipeline: name is required")
		}
		for _, o := range pc.Outputs {
			if cfg.Output(o) == nil {
				return p.errorf(p.pos.line("pipeline", i, "outputs"), "output %q is not defined; defined: %s", o, cfg.OutputNames())
			}
		}
		for j, s := range pc.Scripts {
			pc.Scripts[j] = cfg.Resolve(s)
		}
		cfg.Pipelines = append(cfg.Pipelines, pc)
	}
	for i, prim := range fc.Input {
		ic := &Input{Line: p.pos.table("input", i)}
		if err := md.PrimitiveDecode(prim, ic); err != nil {
			return p.errorf(ic.Line, "input: %v", err)
		}
		if ic.Name == "" {
			return p.errorf(ic.Line, "input: name is required")
		}
		plugin, ok := reg.NewInput(ic.Type)
		if !ok {
			return p.errorf(p.pos.line("input", i, "type"), "input %q: unknown type %q; known: %s", ic.Name, ic.Type, strings.Join(reg.InputTypes(), ", "))
		}
		if err := md.PrimitiveDecode(prim, plugin); err != nil {
			return p.errorf(ic.Line, "input %q: %v", ic.Name, err)
		}
		if cfg.Pipeline(ic.Pipeline) == nil {
			return p.errorf(p.pos.line("input", i, "pipeline"), "pipeline %q is not defined; defined: %s", ic.Pipeline, cfg.pipelineNames())
		}
		sched, err := ParseSchedule(ic.Schedule)
		if err != nil {
			return p.errorf(p.pos.line("input", i, "schedule"), "input %q: %v", ic.Name, err)
		}
		ic.Plugin, ic.Sched, ic.Settings = plugin, sched, p.pos.text("input", i)
		cfg.Inputs = append(cfg.Inputs, ic)
	}
	return p.checkUnique(cfg)
}

func inSection(s string) string {
	if s == "" {
		return ""
	}
	return " in [" + s + "]"
}

func (p *parser) checkUnique(cfg *Config) error {
	seen := map[string]bool{}
	for _, k := range []struct {
		kind  string
		names []string
	}{{"input", namesOf(cfg.Inputs)}, {"output", namesOf(cfg.Outputs)}, {"pipeline", namesOf(cfg.Pipelines)}} {
		for i, n := range k.names {
			if seen[k.kind+"/"+n] {
				return p.errorf(p.pos.line(k.kind, i, "name"), "%s %q is defined twice", k.kind, n)
			}
			seen[k.kind+"/"+n] = true
		}
	}
	return nil
}
