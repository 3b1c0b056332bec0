// Package plugin is the contract between the engine and what it runs:
// inputs, outputs and filters, their lifecycle, and the errors they answer
// with. Connectors and the script runtime implement it; the engine calls
// it. It imports nothing of mailflow's but the message type, so that
// everything else can stand on it.
package plugin

import (
	"context"
	"log/slog"

	"github.com/mailflow/mailflow/engine/message"
)

// The lifecycle of every plugin, in the order the engine calls it:
//
//	new (the registry's constructor: no side effects)
//	→ decode (the TOML table into the plugin's exported struct)
//	→ Provision(env) (optional: receive logger, ledger, spool options)
//	→ Init() (optional: validate the config, no I/O)
//	→ Start(ctx) (optional: the I/O that should fail at start-up, such as
//	  creating a Maildir; never called by "mailflow check")
//	→ use (Open / Deliver / Filter, from several goroutines where stated)
//	→ Close() (optional: after the last use has returned)
//
// If any step fails, what was set up so far is closed again.

// Provisioner is implemented by plugins that need the engine's services.
type Provisioner interface {
	// Provision is called once, after the config was decoded, before Init.
	Provision(env Env) error
}

// Initializer is implemented by plugins that validate their config.
type Initializer interface {
	// Init checks the decoded config and sets defaults. It does no I/O.
	Init() error
}

// Starter is implemented by plugins with I/O worth failing at start-up for
// (a Maildir output creates its directories).
type Starter interface {
	// Start is called once after Init, before the first use, by "run" and
	// "migrate" but not by "check". On error the plugin is closed.
	Start(ctx context.Context) error
}

// FileUser is implemented by plugins that read files named in their config
// (a password_file, a tls_ca_file). A plugin is rebuilt on reload when the
// bytes of one of these files changed, and the files are watched.
type FileUser interface {
	// Files lists the absolute paths the plugin read at Init.
	Files() []string
}

// Closer is implemented by plugins that hold resources (connections).
type Closer interface {
	// Close is called once, after the last call into the plugin returned.
	Close() error
}

// Env is what the engine gives a plugin at Provision.
type Env struct {
	Name   string // the configured name
	Logger *slog.Logger
	Spool  message.SpoolOptions
	// BaseDir is the directory of the config file; relative paths in a
	// plugin's config are relative to it.
	BaseDir string
	// StateDir is the config's state_dir (OAuth tokens live under it), and
	// ConfigPath the config file (for hints that name a command).
	StateDir   string
	ConfigPath string
	// Instance names this mailflow in the trace field its outputs add to
	// what they send (loop detection): the config's instance, or the host
	// name.
	Instance string
	// NoSecrets is set by "mailflow check --no-secrets": the plugin checks
	// that a secret is named (password_env, a key file) but reads none,
	// so that a config can be checked where its secrets are not at hand.
	// A plugin so made is never used.
	NoSecrets bool
}
