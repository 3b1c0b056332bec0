package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/internal/srs"

	"github.com/BurntSushi/toml"

	"github.com/mailflow/mailflow/engine/message"
)

// Defaults of the memory a running mailflow gives to messages. Spooling a
// message to disk costs a write and a read of every byte (a tenth of the
// CPU on mixed mail when every message over 1 MiB spilled); messages in
// memory cost RSS. Messages up to 4 MiB stay in memory, waiting for room
// while 4 MiB of them are held, which keeps the 5,000-message bench under
// 32 MB peak RSS at about the bare relay's CPU (bench/RESULTS.md).
const (
	DefaultMemoryBudget = 4 << 20
	DefaultSpillOver    = 4 << 20
)

// Config is a parsed, validated mailflow.toml.
type Config struct {
	Path        string // the file it was read from
	Instance    string // names this mailflow in its trace fields (loop detection)
	BaseDir     string // relative paths are relative to it
	StateDir    string
	MaxInFlight int
	// MemoryBudget bounds the bytes of messages held in memory at once
	// (memory_budget); others are spooled to disk.
	MemoryBudget int64
	Spool        message.SpoolOptions
	Script       plugin.ScriptLimits
	Metrics      MetricsConfig
	Inputs       []*InputConfig
	Pipelines    []*PipelineConfig
	Outputs      []*OutputConfig
	// FetchAttempts is how many fetches of a message may disagree with the
	// size its source announced before it is held (quarantined with the
	// source keeping it).
	FetchAttempts int
	// ShutdownTimeout is how long a stop (SIGTERM) waits for messages being
	// sent; those still under way then are in doubt.
	ShutdownTimeout time.Duration
	// LedgerGrace is how long the ledger keeps the records of an input that
	// left the config, in case it comes back.
	LedgerGrace time.Duration
}

// MetricsConfig is the [metrics] table.
type MetricsConfig struct {
	Listen string `toml:"listen"`
}

// InputConfig is one [[input]] table.
type InputConfig struct {
	Name     string `toml:"name"`
	Type     string `toml:"type"`
	Pipeline string `toml:"pipeline"`
	Schedule string `toml:"schedule"`
	// MaxMessageSize overrides the global max_message_size for this input.
	MaxMessageSize int64 `toml:"max_message_size"`

	Line        int
	Plugin      plugin.Input
	Sched       Schedule
	settings    string // the table's own text, to tell whether it changed on reload
	fingerprint string // see fingerprint
	files       string // digest of the files the plugin read
}

// OutputConfig is one [[output]] table.
type OutputConfig struct {
	Name string `toml:"name"`
	Type string `toml:"type"`

	Line        int
	Plugin      plugin.Output
	settings    string
	fingerprint string
	files       string
}

// PipelineConfig is one [[pipeline]] table.
type PipelineConfig struct {
	Name    string   `toml:"name"`
	Scripts []string `toml:"scripts"`
	Outputs []string `toml:"outputs"`

	Line int
}

// ConfigError is a config problem with the place it was found.
type ConfigError struct {
	File string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

type fileConfig struct {
	StateDir       string           `toml:"state_dir"`
	MaxInFlight    int              `toml:"max_in_flight"`
	MaxMessageSize int64            `toml:"max_message_size"`
	SpillOver      int64            `toml:"spill_over"`
	MemoryBudget   int64            `toml:"memory_budget"`
	MaxHeaderSize  int64            `toml:"max_header_size"`
	ScriptTimeout  string           `toml:"script_timeout"`
	ScriptMemory   int64            `toml:"script_max_memory"`
	Subaddress     string           `toml:"subaddress_separator"`
	ScriptLib      string           `toml:"script_lib"`
	StoreMaxKeys   int              `toml:"script_store_max_keys"`
	Instance       string           `toml:"instance"`
	SRSSecretFile  string           `toml:"srs_secret_file"`
	SRSMaxAge      string           `toml:"srs_max_age"`
	TrustedAuthIDs []string         `toml:"trusted_authserv_ids"`
	StoreMaxBytes  int64            `toml:"script_store_max_bytes"`
	FetchAttempts  int              `toml:"fetch_attempts"`
	LedgerGrace    string           `toml:"ledger_grace"`
	ShutdownTimout string           `toml:"shutdown_timeout"`
	Metrics        MetricsConfig    `toml:"metrics"`
	Input          []toml.Primitive `toml:"input"`
	Pipeline       []toml.Primitive `toml:"pipeline"`
	Output         []toml.Primitive `toml:"output"`
}

// LoadConfig reads, decodes and checks a config file. Plugins are made
// and decoded but not provisioned or started.
func LoadConfig(path string, reg plugin.Registry) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, src, reg)
}

// ParseConfig is LoadConfig on bytes already read.
func ParseConfig(path string, src []byte, reg plugin.Registry) (*Config, error) {
	pos := scanPositions(src)
	cerr := func(line int, format string, args ...any) error {
		return &ConfigError{File: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	var fc fileConfig
	md, err := toml.NewDecoder(bytes.NewReader(src)).Decode(&fc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, cerr(pe.Position.Line, "%s", pe.Message)
		}
		return nil, cerr(0, "%v", err)
	}
	abs, _ := filepath.Abs(path)
	cfg := &Config{
		Path:        path,
		BaseDir:     filepath.Dir(abs),
		MaxInFlight: fc.MaxInFlight,
		Spool:       message.SpoolOptions{InMemory: fc.SpillOver, MaxSize: fc.MaxMessageSize, MaxHeader: fc.MaxHeaderSize},
		Script: plugin.ScriptLimits{Timeout: time.Second, MaxMemory: fc.ScriptMemory, Separator: fc.Subaddress,
			StoreMaxKeys: fc.StoreMaxKeys, StoreMaxBytes: fc.StoreMaxBytes},
		Metrics: fc.Metrics,

		FetchAttempts:   fc.FetchAttempts,
		LedgerGrace:     7 * 24 * time.Hour,
		ShutdownTimeout: 30 * time.Second,
	}
	if fc.ShutdownTimout != "" {
		d, err := time.ParseDuration(fc.ShutdownTimout)
		if err != nil || d <= 0 {
			return nil, cerr(pos.line("", 0, "shutdown_timeout"), "shutdown_timeout: %q is not a duration like \"30s\"", fc.ShutdownTimout)
		}
		cfg.ShutdownTimeout = d
	}
	if cfg.FetchAttempts <= 0 {
		cfg.FetchAttempts = 3
	}
	if fc.LedgerGrace != "" {
		d, err := time.ParseDuration(fc.LedgerGrace)
		if err != nil || d < 0 {
			return nil, cerr(pos.line("", 0, "ledger_grace"), "ledger_grace: %q is not a duration like \"168h\"", fc.LedgerGrace)
		}
		cfg.LedgerGrace = d
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	cfg.MemoryBudget = fc.MemoryBudget
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
	if fc.ScriptTimeout != "" {
		d, err := time.ParseDuration(fc.ScriptTimeout)
		if err != nil || d <= 0 {
			return nil, cerr(pos.line("", 0, "script_timeout"), "script_timeout: %q is not a duration like \"1s\"", fc.ScriptTimeout)
		}
		cfg.Script.Timeout = d
	}
	if fc.StateDir == "" {
		return nil, cerr(0, "state_dir is required (where the delivery ledger and quarantine live)")
	}
	cfg.StateDir = cfg.Resolve(fc.StateDir)
	cfg.Spool.Dir = filepath.Join(cfg.StateDir, "spool")
	cfg.Script.StoreDir = cfg.StateDir
	cfg.Instance = fc.Instance
	if cfg.Instance == "" {
		cfg.Instance, _ = os.Hostname()
	}
	if cfg.Instance == "" || strings.ContainsAny(cfg.Instance, " \t\r\n;/") {
		if fc.Instance != "" {
			return nil, cerr(pos.line("", 0, "instance"), "instance: %q: a name without spaces, ; or /", fc.Instance)
		}
		cfg.Instance = "mailflow"
	}
	cfg.Script.Instance = cfg.Instance
	cfg.Script.TrustedAuthServIDs = fc.TrustedAuthIDs
	if fc.SRSSecretFile != "" {
		secrets, err := srs.ReadSecrets(cfg.Resolve(fc.SRSSecretFile))
		if err != nil {
			return nil, cerr(pos.line("", 0, "srs_secret_file"), "srs_secret_file: %v", err)
		}
		cfg.Script.SRSSecrets = secrets
	}
	if fc.SRSMaxAge != "" {
		d, err := time.ParseDuration(fc.SRSMaxAge)
		if err != nil || d < 24*time.Hour {
			return nil, cerr(pos.line("", 0, "srs_max_age"), "srs_max_age: %q is not a duration of a day or more, like \"504h\"", fc.SRSMaxAge)
		}
		cfg.Script.SRSMaxAge = d
	}
	if fc.ScriptLib != "" {
		cfg.Script.LibDir = cfg.Resolve(fc.ScriptLib)
		if fi, err := os.Stat(cfg.Script.LibDir); err != nil || !fi.IsDir() {
			return nil, cerr(pos.line("", 0, "script_lib"), "script_lib: %s is not a directory", cfg.Script.LibDir)
		}
	}

	for i, p := range fc.Output {
		oc := &OutputConfig{Line: pos.table("output", i)}
		if err := md.PrimitiveDecode(p, oc); err != nil {
			return nil, cerr(oc.Line, "output: %v", err)
		}
		if oc.Name == "" {
			return nil, cerr(oc.Line, "output: name is required")
		}
		plugin, ok := reg.NewOutput(oc.Type)
		if !ok {
			return nil, cerr(pos.line("output", i, "type"), "output %q: unknown type %q; known: %s", oc.Name, oc.Type, strings.Join(reg.OutputTypes(), ", "))
		}
		if err := md.PrimitiveDecode(p, plugin); err != nil {
			return nil, cerr(oc.Line, "output %q: %v", oc.Name, err)
		}
		oc.Plugin, oc.settings = plugin, pos.text("output", i)
		cfg.Outputs = append(cfg.Outputs, oc)
	}
	for i, p := range fc.Pipeline {
		pc := &PipelineConfig{Line: pos.table("pipeline", i)}
		if err := md.PrimitiveDecode(p, pc); err != nil {
			return nil, cerr(pc.Line, "pipeline: %v", err)
		}
		if pc.Name == "" {
			return nil, cerr(pc.Line, "pipeline: name is required")
		}
		for _, o := range pc.Outputs {
			if cfg.Output(o) == nil {
				return nil, cerr(pos.line("pipeline", i, "outputs"), "output %q is not defined; defined: %s", o, cfg.outputNames())
			}
		}
		for j, s := range pc.Scripts {
			pc.Scripts[j] = cfg.Resolve(s)
		}
		cfg.Pipelines = append(cfg.Pipelines, pc)
	}
	for i, p := range fc.Input {
		ic := &InputConfig{Line: pos.table("input", i)}
		if err := md.PrimitiveDecode(p, ic); err != nil {
			return nil, cerr(ic.Line, "input: %v", err)
		}
		if ic.Name == "" {
			return nil, cerr(ic.Line, "input: name is required")
		}
		plugin, ok := reg.NewInput(ic.Type)
		if !ok {
			return nil, cerr(pos.line("input", i, "type"), "input %q: unknown type %q; known: %s", ic.Name, ic.Type, strings.Join(reg.InputTypes(), ", "))
		}
		if err := md.PrimitiveDecode(p, plugin); err != nil {
			return nil, cerr(ic.Line, "input %q: %v", ic.Name, err)
		}
		if cfg.Pipeline(ic.Pipeline) == nil {
			return nil, cerr(pos.line("input", i, "pipeline"), "pipeline %q is not defined; defined: %s", ic.Pipeline, cfg.pipelineNames())
		}
		sched, err := ParseSchedule(ic.Schedule)
		if err != nil {
			return nil, cerr(pos.line("input", i, "schedule"), "input %q: %v", ic.Name, err)
		}
		ic.Plugin, ic.Sched, ic.settings = plugin, sched, pos.text("input", i)
		cfg.Inputs = append(cfg.Inputs, ic)
	}
	if err := checkUnique(path, pos, cfg); err != nil {
		return nil, err
	}
	if len(cfg.Inputs) == 0 {
		return nil, cerr(0, "no [[input]] is defined")
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		section, key := "", k.String()
		if len(k) > 1 {
			section, key = k[0], k[len(k)-1]
		}
		return nil, cerr(pos.firstKey(section, key), "unknown key %q%s", key, inSection(section))
	}
	return cfg, nil
}

func inSection(s string) string {
	if s == "" {
		return ""
	}
	return " in [" + s + "]"
}

func checkUnique(path string, pos positions, cfg *Config) error {
	seen := map[string]bool{}
	for _, k := range []struct {
		kind  string
		names []string
	}{{"input", namesOf(cfg.Inputs)}, {"output", namesOf(cfg.Outputs)}, {"pipeline", namesOf(cfg.Pipelines)}} {
		for i, n := range k.names {
			if seen[k.kind+"/"+n] {
				return &ConfigError{File: path, Line: pos.line(k.kind, i, "name"), Msg: fmt.Sprintf("%s %q is defined twice", k.kind, n)}
			}
			seen[k.kind+"/"+n] = true
		}
	}
	return nil
}

func namesOf[T interface{ name() string }](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.name()
	}
	return out
}

func (c *InputConfig) name() string    { return c.Name }
func (c *OutputConfig) name() string   { return c.Name }
func (c *PipelineConfig) name() string { return c.Name }

// Resolve makes a path from the config absolute, relative to the config's directory.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.BaseDir, p)
}

// Output returns the named output's config, or nil.
func (c *Config) Output(name string) *OutputConfig {
	for _, o := range c.Outputs {
		if o.Name == name {
			return o
		}
	}
	return nil
}

// Pipeline returns the named pipeline's config, or nil.
func (c *Config) Pipeline(name string) *PipelineConfig {
	for _, p := range c.Pipelines {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Input returns the named input's config, or nil.
func (c *Config) Input(name string) *InputConfig {
	for _, i := range c.Inputs {
		if i.Name == name {
			return i
		}
	}
	return nil
}

func (c *Config) outputNames() string   { return listOrNone(namesOf(c.Outputs)) }
func (c *Config) pipelineNames() string { return listOrNone(namesOf(c.Pipelines)) }

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// positions maps TOML tables and keys to their lines. BurntSushi/toml keeps
// key positions to itself, so the file is scanned once more, line by line,
// for table headers and "key =" starts; that is all error messages need.
type positions struct {
	tables map[string][]int            // [[kind]] → line of each table
	keys   map[string]map[string]int   // "kind#i" → key → line
	texts  map[string]*strings.Builder // "kind#i" → the table's lines
}

func scanPositions(src []byte) positions {
	p := positions{tables: map[string][]int{}, keys: map[string]map[string]int{}, texts: map[string]*strings.Builder{}}
	cur := "#0"
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "[["):
			kind := strings.TrimSpace(strings.Trim(strings.SplitN(line, "]]", 2)[0], "[ "))
			cur = fmt.Sprintf("%s#%d", kind, len(p.tables[kind]))
			p.tables[kind] = append(p.tables[kind], n)
		case strings.HasPrefix(line, "["):
			kind := strings.TrimSpace(strings.Trim(strings.SplitN(line, "]", 2)[0], "[ "))
			cur = kind + "#0"
			p.tables[kind] = append(p.tables[kind], n)
		default:
			if i := strings.IndexByte(line, '='); i > 0 && !strings.HasPrefix(line, "#") {
				key := strings.Trim(strings.TrimSpace(line[:i]), `"'`)
				if p.keys[cur] == nil {
					p.keys[cur] = map[string]int{}
				}
				if _, dup := p.keys[cur][key]; !dup {
					p.keys[cur][key] = n
				}
			}
		}
		if p.texts[cur] == nil {
			p.texts[cur] = &strings.Builder{}
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			p.texts[cur].WriteString(line + "\n")
		}
	}
	return p
}

func (p positions) table(kind string, i int) int {
	if i < len(p.tables[kind]) {
		return p.tables[kind][i]
	}
	return 0
}

func (p positions) line(kind string, i int, key string) int {
	if l, ok := p.keys[fmt.Sprintf("%s#%d", kind, i)][key]; ok {
		return l
	}
	return p.table(kind, i)
}

func (p positions) firstKey(kind, key string) int {
	for i := 0; i <= len(p.tables[kind]); i++ {
		if l, ok := p.keys[fmt.Sprintf("%s#%d", kind, i)][key]; ok {
			return l
		}
	}
	return 0
}

func (p positions) text(kind string, i int) string {
	if b := p.texts[fmt.Sprintf("%s#%d", kind, i)]; b != nil {
		return b.String()
	}
	return ""
}
