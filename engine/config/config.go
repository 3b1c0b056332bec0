// Package config reads mailflow.toml: it decodes the file, makes and
// decodes each input's and output's plugin through the registry, checks
// every name and key, and says where a mistake is (file and line). It
// builds nothing: provisioning and starting plugins is the engine's job
// (engine.Build), so that "mailflow check" and a reload can parse a file
// without touching anything.
package config

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
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

// Config is a parsed, validated mailflow.toml, or one made in code (a
// migration builds its own).
type Config struct {
	Path        string // the file it was read from; empty for one made in code
	Instance    string // names this mailflow in its trace fields (loop detection)
	BaseDir     string // relative paths are relative to it
	StateDir    string
	MaxInFlight int
	// MemoryBudget bounds the bytes of messages held in memory at once
	// (memory_budget); others are spooled to disk.
	MemoryBudget int64
	Spool        message.SpoolOptions
	Script       plugin.ScriptLimits
	// HTTP is the [http] table: the status page, /healthz, /readyz and
	// /metrics (an older config's [metrics] listen is its Listen).
	HTTP      HTTP
	Inputs    []*Input
	Pipelines []*Pipeline
	Outputs   []*Output
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

	lines    map[string]int    // the line of each key outside any table
	declared map[string]string // "output#1" → the name of each table in the file
}

// Declared lists the names of the tables of kind ("output") in the file,
// those with a mistake of their own too: a reference to one of those is
// not a second mistake.
func (c *Config) Declared(kind string) []string {
	var names []string
	for at, name := range c.declared {
		if strings.HasPrefix(at, kind+"#") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// KeyLine is the line of a key outside any table (state_dir), 0 if it is
// not in the file: where "mailflow check" reports a problem with it.
func (c *Config) KeyLine(key string) int { return c.lines[key] }

// Metrics is the [metrics] table, of configs from before [http].
type Metrics struct {
	Listen string `toml:"listen"`
}

// HTTP is the [http] table.
type HTTP struct {
	// Listen is host:port for the status page, the health endpoints and
	// the metrics; empty: none. Beyond loopback it needs TLS and an admin
	// token (the page shows quarantined mail).
	Listen string `toml:"listen"`
	// AdminTokenFile holds the secret a person gives to resend and delete
	// quarantined messages from the page; without it the page is
	// read-only.
	AdminTokenFile string `toml:"admin_token_file"`
	// DegradedAfter is how many failed polls in a row of an input make
	// the health "degraded" (default 3).
	DegradedAfter int    `toml:"degraded_after"`
	TLSCertFile   string `toml:"tls_cert_file"`
	TLSKeyFile    string `toml:"tls_key_file"`
}

// Input is one [[input]] table.
type Input struct {
	Name     string `toml:"name"`
	Type     string `toml:"type"`
	Pipeline string `toml:"pipeline"`
	Schedule string `toml:"schedule"`
	// MaxMessageSize overrides the global max_message_size for this input.
	MaxMessageSize int64 `toml:"max_message_size"`

	Line   int // where the table starts in the file
	Plugin plugin.Input
	Sched  Schedule
	// Settings is the table's text, as written: a reload takes over the
	// running plugin only when it is unchanged (engine.Build). A config
	// made in code leaves it empty, and its plugins are never taken over.
	Settings string
}

// Output is one [[output]] table.
type Output struct {
	Name string `toml:"name"`
	Type string `toml:"type"`

	Line     int
	Plugin   plugin.Output
	Settings string // see Input.Settings
}

// Pipeline is one [[pipeline]] table.
type Pipeline struct {
	Name    string   `toml:"name"`
	Scripts []string `toml:"scripts"`
	Outputs []string `toml:"outputs"`

	Line int
	// ScriptsLine is the line of its scripts key (the table's, if none):
	// where a script that cannot be loaded is reported.
	ScriptsLine int
	// Filters run before the scripts. They are given in code, never in
	// the file: a migration's --since is one.
	Filters []NamedFilter
}

// NamedFilter is a filter given in code, with the name its verdicts and
// errors are logged under.
type NamedFilter struct {
	Name   string
	Filter plugin.Filter
}

// Resolve makes a path from the config absolute, relative to the config's directory.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.BaseDir, p)
}

// Output returns the named output's config, or nil.
func (c *Config) Output(name string) *Output {
	for _, o := range c.Outputs {
		if o.Name == name {
			return o
		}
	}
	return nil
}

// Pipeline returns the named pipeline's config, or nil.
func (c *Config) Pipeline(name string) *Pipeline {
	for _, p := range c.Pipelines {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Input returns the named input's config, or nil.
func (c *Config) Input(name string) *Input {
	for _, i := range c.Inputs {
		if i.Name == name {
			return i
		}
	}
	return nil
}

// OutputNames lists the defined outputs, sorted, or "(none)".
func (c *Config) OutputNames() string { return listOrNone(namesOf(c.Outputs)) }

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func namesOf[T interface{ name() string }](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.name()
	}
	return out
}

func (c *Input) name() string    { return c.Name }
func (c *Output) name() string   { return c.Name }
func (c *Pipeline) name() string { return c.Name }
