package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
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

// Options change what Parse reads.
type Options struct {
	// NoSecrets leaves the secret files the config names unread
	// (srs_secret_file): "mailflow check --no-secrets" checks a config
	// where its secrets are not at hand, as in CI.
	NoSecrets bool
}

// Load reads, decodes and checks a config file. Plugins are made and
// decoded but not provisioned or started. Its error is Errors: every
// problem found, sorted by line.
func Load(path string, reg plugin.Registry) (*Config, error) {
	return LoadWith(path, reg, Options{})
}

// LoadWith is Load with options.
func LoadWith(path string, reg plugin.Registry, opts Options) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, errs := Inspect(path, src, reg, opts)
	if errs != nil {
		return nil, errs
	}
	return cfg, nil
}

// Parse is Load on bytes already read.
func Parse(path string, src []byte, reg plugin.Registry) (*Config, error) {
	cfg, errs := Inspect(path, src, reg, Options{})
	if errs != nil {
		return nil, errs
	}
	return cfg, nil
}

// parser is one Parse: the file's text positions, and what it found.
type parser struct {
	path string
	pos  positions
	opts Options
	errs Errors
	// known is the keys each table ("input#0") takes, its plugin's
	// included, and names the name each was given: for the "did you
	// mean" of an unknown key, and to say which table it is in.
	known map[string][]string
	names map[string]string
	// strange are the top-level names that are neither a key nor a table
	// mailflow knows; their keys are not reported again one by one.
	strange map[string]bool
	// misspelt are the tables a strange name is near, so that a missing
	// [[input]] written [[inptu]] is one mistake, not two.
	misspelt map[string]bool
	// broken are the tables ("input#0") that did not decode to the end:
	// the keys after the mistake were never looked at, so they are not
	// reported as unknown.
	broken map[string]bool
}

func (p *parser) errorf(line int, format string, args ...any) *Error {
	return &Error{File: p.path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// add notes a problem and goes on.
func (p *parser) add(line int, format string, args ...any) {
	p.errs = append(p.errs, p.errorf(line, format, args...))
}

// duration reads a global duration key: empty gives def; a value that is
// not a duration, or is below least, is a problem at the key's line that
// shows what a good one looks like (and def is used meanwhile).
func (p *parser) duration(key, value string, def, least time.Duration, example string) time.Duration {
	if value == "" {
		return def
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
		p.add(p.pos.line("", 0, key), "%s: %q is not %s, like %q", key, value, what, example)
		return def
	}
	return d
}

// Inspect parses as much of src as it can: the config with every table
// that decoded, and every problem found (nil when there is none).
// "mailflow check" goes on from it to the plugins of the tables that did
// decode, so that one run reports every mistake.
func Inspect(path string, src []byte, reg plugin.Registry, opts Options) (*Config, Errors) {
	p := &parser{path: path, pos: scanPositions(src), opts: opts, known: map[string][]string{}, names: map[string]string{}, strange: map[string]bool{}, misspelt: map[string]bool{}, broken: map[string]bool{}}
	var top map[string]toml.Primitive
	md, err := toml.NewDecoder(bytes.NewReader(src)).Decode(&top)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p.add(pe.Position.Line, "%s", syntaxError(pe))
		} else {
			p.add(0, "%v", err)
		}
		return nil, p.errs
	}
	var fc file
	p.decodeTop(md, top, &fc)
	abs, _ := filepath.Abs(path)
	cfg := p.globals(&fc, filepath.Dir(abs))
	cfg.lines = p.pos.keys["#0"]
	cfg.declared = p.names // filled in by tables
	p.tables(cfg, &fc, md, reg)
	if len(fc.Input) == 0 && !p.misspelt["input"] {
		p.add(0, "no [[input]] is defined: mailflow needs at least one place to fetch mail from")
	}
	p.unknownKeys(md)
	if len(p.errs) == 0 {
		return cfg, nil
	}
	p.errs.Sort()
	return cfg, p.errs
}

// syntaxError is a TOML syntax error in words, without the column
// arithmetic BurntSushi/toml adds.
func syntaxError(pe toml.ParseError) string {
	msg := pe.Message
	if pe.LastKey != "" {
		msg = fmt.Sprintf("%s (after the key %q)", msg, pe.LastKey)
	}
	return "this line is not valid TOML: " + msg
}

// tables are the top-level tables mailflow knows, as a person writes them.
var tables = map[string]string{"input": "[[input]]", "pipeline": "[[pipeline]]", "output": "[[output]]", "http": "[http]", "metrics": "[metrics]"}

// decodeTop decodes each top-level key into its field of fc on its own,
// so that a value of the wrong type is one problem among others, and
// notes the names that are no key or table mailflow knows.
func (p *parser) decodeTop(md toml.MetaData, top map[string]toml.Primitive, fc *file) {
	rv := reflect.ValueOf(fc).Elem()
	fields := map[string]reflect.Value{}
	for i := range rv.NumField() {
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("toml"), ",")
		fields[name] = rv.Field(i)
	}
	for name, prim := range top {
		field, ok := fields[name]
		if !ok {
			p.strangeName(md, name)
			continue
		}
		kind := ""
		if _, isTable := tables[name]; isTable && (name == "http" || name == "metrics") {
			kind = name
		}
		if err := md.PrimitiveDecode(prim, field.Addr().Interface()); err != nil {
			p.errs = append(p.errs, p.decodeError(err, kind, 0, ""))
		}
	}
}

// strangeName reports a top-level name mailflow does not know: a table
// (misspelt [[inptu]]) or a key, with the nearest known one.
func (p *parser) strangeName(md toml.MetaData, name string) {
	p.strange[name] = true
	switch md.Type(name) {
	case "Hash", "ArrayHash":
		names := make([]string, 0, len(tables))
		for n := range tables {
			names = append(names, n)
		}
		written := "[" + name + "]"
		if md.Type(name) == "ArrayHash" {
			written = "[[" + name + "]]"
		}
		hint := "; mailflow's tables are [[input]], [[pipeline]], [[output]] and [http]"
		if near := Nearest(name, names); near != "" {
			hint = "; did you mean " + tables[near] + "?"
			p.misspelt[near] = true // its absence is this same mistake
		}
		p.add(p.pos.table(name, 0), "unknown table %s%s", written, hint)
	default:
		p.add(p.pos.line("", 0, name), "unknown key %q%s", name, Suggest(name, globalKeys()))
	}
}

// globalKeys are the keys outside any table.
func globalKeys() []string {
	var keys []string
	for _, k := range keysOf(file{}) {
		if _, isTable := tables[k]; !isTable {
			keys = append(keys, k)
		}
	}
	return keys
}

// unknownKeys reports the keys inside tables that nothing decoded: a key
// the table's plugin does not have, with the nearest one it does.
func (p *parser) unknownKeys(md toml.MetaData) {
	for _, k := range md.Undecoded() {
		if len(k) < 2 || p.strange[k[0]] {
			continue
		}
		section, key := k[0], k[len(k)-1]
		i := p.pos.tableWith(section, key)
		if p.broken[fmt.Sprintf("%s#%d", section, i)] {
			continue
		}
		what := fmt.Sprintf("[%s]", section)
		if name := p.names[fmt.Sprintf("%s#%d", section, i)]; name != "" {
			what = fmt.Sprintf("%s %q", section, name)
		}
		hint := Suggest(key, p.known[fmt.Sprintf("%s#%d", section, i)])
		if hint == "" && slices.Contains(globalKeys(), key) {
			hint = fmt.Sprintf("; %s is a key of its own, outside any table: move it above the first [table]", key)
		}
		p.add(p.pos.line(section, i, key), "unknown key %q in %s%s", key, what, hint)
	}
}

// New is a config made in code (a migration makes its own): every global
// at its default, state in stateDir, relative paths relative to baseDir.
// Its inputs, pipelines and outputs are the caller's to add.
func New(stateDir, baseDir string) (*Config, error) {
	p := &parser{}
	cfg := p.globals(&file{StateDir: stateDir}, baseDir)
	if err := p.errs.orNil(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// globals checks the keys outside any table and applies their defaults.
func (p *parser) globals(fc *file, baseDir string) *Config {
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
	cfg.ShutdownTimeout = p.duration("shutdown_timeout", fc.ShutdownTimeout, 30*time.Second, time.Nanosecond, "30s")
	cfg.LedgerGrace = p.duration("ledger_grace", fc.LedgerGrace, 7*24*time.Hour, 0, "168h")
	cfg.Script.Timeout = p.duration("script_timeout", fc.ScriptTimeout, time.Second, time.Nanosecond, "1s")
	if fc.SRSMaxAge != "" {
		cfg.Script.SRSMaxAge = p.duration("srs_max_age", fc.SRSMaxAge, 0, 24*time.Hour, "504h")
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
		p.add(0, "state_dir is required (where the delivery ledger and quarantine live), like state_dir = \"/var/lib/mailflow\"")
	} else {
		cfg.StateDir = cfg.Resolve(fc.StateDir)
	}
	cfg.Spool.Dir = filepath.Join(cfg.StateDir, "spool")
	cfg.Script.StoreDir = cfg.StateDir
	var err error
	if cfg.Instance, err = instance(fc.Instance); err != nil {
		p.add(p.pos.line("", 0, "instance"), "%v", err)
	}
	cfg.Script.Instance = cfg.Instance
	if fc.SRSSecretFile != "" && !p.opts.NoSecrets {
		secrets, err := srs.ReadSecrets(cfg.Resolve(fc.SRSSecretFile))
		if err != nil {
			p.add(p.pos.line("", 0, "srs_secret_file"), "srs_secret_file: %v", err)
		}
		cfg.Script.SRSSecrets = secrets
	}
	p.http(cfg, fc)
	if fc.ScriptLib != "" {
		cfg.Script.LibDir = cfg.Resolve(fc.ScriptLib)
		if fi, err := os.Stat(cfg.Script.LibDir); err != nil || !fi.IsDir() {
			p.add(p.pos.line("", 0, "script_lib"), "script_lib: %s is not a directory", cfg.Script.LibDir)
		}
	}
	return cfg
}

// http checks the [http] table (or an older config's [metrics] listen):
// an address to listen on, and, beyond loopback, TLS and an admin token,
// since the page shows quarantined mail and anyone who can reach it could
// read it.
func (p *parser) http(cfg *Config, fc *file) {
	h := &cfg.HTTP
	key := "listen"
	if h.Listen == "" && fc.Metrics.Listen != "" {
		h.Listen, key = fc.Metrics.Listen, "metrics.listen"
	}
	if h.Listen == "" {
		return
	}
	line := p.pos.line("http", 0, "listen")
	if key != "listen" {
		line = p.pos.line("metrics", 0, "listen")
	}
	host, port, err := net.SplitHostPort(h.Listen)
	if err != nil || port == "" {
		p.add(line, "%s: %q is not host:port (like \"127.0.0.1:9090\")", key, h.Listen)
		return
	}
	h.AdminTokenFile, h.TLSCertFile, h.TLSKeyFile = cfg.Resolve(h.AdminTokenFile), cfg.Resolve(h.TLSCertFile), cfg.Resolve(h.TLSKeyFile)
	if (h.TLSCertFile == "") != (h.TLSKeyFile == "") {
		p.add(line, "http: give both tls_cert_file and tls_key_file, or neither")
		return
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		if h.TLSCertFile == "" || h.AdminTokenFile == "" {
			p.add(line, "%s: %q is reachable from other machines; the status page shows quarantined mail, so it needs tls_cert_file, tls_key_file and admin_token_file there (or listen on 127.0.0.1 and reach it through an SSH tunnel or a proxy)", key, h.Listen)
		}
	}
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
// that order, so that each can check the names it refers to. A table that
// does not decode is reported and left out; the others go on.
func (p *parser) tables(cfg *Config, fc *file, md toml.MetaData, reg plugin.Registry) {
	for i, prim := range fc.Output {
		oc := &Output{Line: p.pos.table("output", i)}
		pl, ok := p.table(md, prim, "output", i, oc, &oc.Name, &oc.Type, reg.OutputTypes(), func() (any, bool) {
			o, ok := reg.NewOutput(oc.Type)
			return o, ok
		})
		if !ok || pl == nil {
			continue
		}
		oc.Plugin, oc.Settings = pl.(plugin.Output), p.pos.text("output", i)
		cfg.Outputs = append(cfg.Outputs, oc)
	}
	outputs := namesOf(cfg.Outputs)
	for i, prim := range fc.Pipeline {
		pc := &Pipeline{Line: p.pos.table("pipeline", i)}
		p.known[fmt.Sprintf("pipeline#%d", i)] = keysOf(pc)
		if err := md.PrimitiveDecode(prim, pc); err != nil {
			p.errs = append(p.errs, p.decodeError(err, "pipeline", i, p.tableName("pipeline", i)))
			p.broken[fmt.Sprintf("pipeline#%d", i)] = true
			continue
		}
		if pc.Name == "" {
			p.add(pc.Line, `pipeline: name is required, like name = "main"`)
			continue
		}
		p.names[fmt.Sprintf("pipeline#%d", i)] = pc.Name
		defined := pc.Outputs[:0]
		for _, o := range pc.Outputs {
			if cfg.Output(o) == nil && !p.declared("output", o) {
				p.add(p.pos.line("pipeline", i, "outputs"), "pipeline %q: %s", pc.Name, Undefined("output", o, outputs))
				continue
			}
			defined = append(defined, o)
		}
		pc.Outputs = defined
		pc.ScriptsLine = p.pos.line("pipeline", i, "scripts")
		for j, s := range pc.Scripts {
			pc.Scripts[j] = cfg.Resolve(s)
		}
		cfg.Pipelines = append(cfg.Pipelines, pc)
	}
	pipelines := namesOf(cfg.Pipelines)
	for i, prim := range fc.Input {
		ic := &Input{Line: p.pos.table("input", i)}
		pl, ok := p.table(md, prim, "input", i, ic, &ic.Name, &ic.Type, reg.InputTypes(), func() (any, bool) {
			in, ok := reg.NewInput(ic.Type)
			return in, ok
		})
		if !ok {
			continue
		}
		if cfg.Pipeline(ic.Pipeline) == nil && !p.declared("pipeline", ic.Pipeline) {
			p.add(p.pos.line("input", i, "pipeline"), "input %q: %s", ic.Name, Undefined("pipeline", ic.Pipeline, pipelines))
		}
		sched, err := ParseSchedule(ic.Schedule)
		if err != nil {
			p.add(p.pos.line("input", i, "schedule"), "input %q: %v", ic.Name, err)
		}
		if pl == nil {
			continue
		}
		ic.Plugin, ic.Sched, ic.Settings = pl.(plugin.Input), sched, p.pos.text("input", i)
		cfg.Inputs = append(cfg.Inputs, ic)
	}
	p.checkUnique(cfg)
}

// table decodes the i-th [[kind]] table: its own keys into common (which
// holds name and type), then the plugin its type names, made by
// newPlugin. It reports what is wrong; ok says the common keys decoded,
// and the plugin is nil when it did not.
func (p *parser) table(md toml.MetaData, prim toml.Primitive, kind string, i int, common any, name, typ *string, types []string, newPlugin func() (any, bool)) (any, bool) {
	at := fmt.Sprintf("%s#%d", kind, i)
	line := p.pos.table(kind, i)
	p.known[at] = keysOf(common)
	if err := md.PrimitiveDecode(prim, common); err != nil {
		p.errs = append(p.errs, p.decodeError(err, kind, i, p.tableName(kind, i)))
		p.broken[at] = true
		return nil, false
	}
	if *name == "" {
		p.add(line, "%s: name is required, like name = %q", kind, map[string]string{"input": "inbox", "output": "archive"}[kind])
		return nil, false
	}
	p.names[at] = *name
	pl, ok := newPlugin()
	if !ok {
		if *typ == "" {
			p.add(line, "%s %q: type is required; known: %s", kind, *name, strings.Join(types, ", "))
		} else {
			p.add(p.pos.line(kind, i, "type"), "%s %q: unknown type %q; known: %s%s", kind, *name, *typ, strings.Join(types, ", "), Suggest(*typ, types))
		}
		p.broken[at] = true
		return nil, true
	}
	p.known[at] = append(p.known[at], keysOf(pl)...)
	if err := md.PrimitiveDecode(prim, pl); err != nil {
		p.errs = append(p.errs, p.decodeError(err, kind, i, fmt.Sprintf("%s %q: ", kind, *name)))
		p.broken[at] = true
		return nil, true
	}
	return pl, true
}

// declared reports whether a table kind called name is in the file,
// even one with a mistake of its own: a reference to it is not a second
// mistake.
func (p *parser) declared(kind, name string) bool {
	for at, n := range p.names {
		if n == name && strings.HasPrefix(at, kind+"#") {
			return true
		}
	}
	return false
}

// tableName is how an error names the i-th table kind before it decoded:
// by its name as written, if it has one.
func (p *parser) tableName(kind string, i int) string {
	if v, ok := p.pos.values[fmt.Sprintf("%s#%d", kind, i)]["name"]; ok && strings.HasPrefix(v, `"`) {
		return kind + " " + v + ": "
	}
	return kind + ": "
}

// checkUnique reports a name given to two tables of a kind.
func (p *parser) checkUnique(cfg *Config) {
	type table struct {
		name string
		line int
	}
	var all []table
	kinds := map[int]string{}
	for _, c := range cfg.Inputs {
		all, kinds[c.Line] = append(all, table{"input/" + c.Name, c.Line}), "input"
	}
	for _, c := range cfg.Outputs {
		all, kinds[c.Line] = append(all, table{"output/" + c.Name, c.Line}), "output"
	}
	for _, c := range cfg.Pipelines {
		all, kinds[c.Line] = append(all, table{"pipeline/" + c.Name, c.Line}), "pipeline"
	}
	seen := map[string]bool{}
	for _, t := range all {
		if seen[t.name] {
			kind := kinds[t.line]
			name := strings.TrimPrefix(t.name, kind+"/")
			p.add(p.pos.line(kind, slices.Index(p.pos.tables[kind], t.line), "name"), "%s %q is defined twice; each needs a name of its own", kind, name)
		}
		seen[t.name] = true
	}
}
