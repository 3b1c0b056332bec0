package migrate

import (
	"fmt"

	"github.com/mailflow/mailflow/connectors/imap"
	"github.com/mailflow/mailflow/connectors/pop3"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

// The names a migration's config gives its parts.
const (
	inputName    = "old"
	outputName   = "new"
	pipelineName = "migrate"
)

// buildConfig makes the engine's config for the plan: one input for the
// source, one output for the destination, and a pipeline between them
// that --since filters. deleteNow sets an IMAP source to delete what is
// settled (only after a verification found nothing missing); an IMAP
// source leaves out the folders of skip (those the destination refused).
func (p *Plan) buildConfig(from, to endpoint, stateDir string, deleteNow bool, skip ...string) (*config.Config, error) {
	if p.Config != "" {
		return config.Load(p.Config, plugins.Default)
	}
	cfg, err := config.New(stateDir, stateDir)
	if err != nil {
		return nil, err
	}
	// What "-c" names for this migration's config: "mailflow quarantine -c
	// STATE_DIR", "mailflow auth login -c STATE_DIR gmail".
	cfg.Path = stateDir
	// Eight messages at once keep a server of either kind busy without
	// opening more sessions than a mailbox provider allows.
	cfg.MaxInFlight = 8
	cfg.Spool.MaxSize = p.MaxMessageSize
	parallel := max(1, p.Parallel)
	if p.Parallel == 0 {
		parallel = 4
	}

	var source plugin.Input
	switch from.scheme {
	case "pop3":
		in := &pop3.Input{}
		in.Address, in.TLS, in.Username = from.addr, from.tls, from.user
		p.From.secret(&in.PasswordEnv, &in.PasswordFile, "MAILFLOW_PASSWORD")
		in.OnSettled = "delete"
		if p.Keep {
			in.OnSettled = "keep"
		}
		in.AllowPlaintextAuth, in.CAFile = p.AllowPlaintextAuth, p.CAFile
		source = in
	case "imap":
		in := &imap.Input{}
		in.Address, in.TLS, in.Username = from.addr, from.tls, from.user
		p.From.secret(&in.PasswordEnv, &in.PasswordFile, "MAILFLOW_PASSWORD")
		in.Folders, in.Exclude, in.Parallel = p.Folders, skip, parallel
		if len(in.Folders) == 0 {
			in.Folders = []string{"*"}
		}
		// An IMAP mailbox being migrated is kept: the verification at the
		// end compares it with the destination.
		in.OnSettled = "keep"
		if deleteNow {
			in.OnSettled = "delete"
		}
		in.AllowPlaintextAuth, in.CAFile = p.AllowPlaintextAuth, p.CAFile
		p.gmailInput(in, to)
		source = in
	case "mbox":
		source = mboxInput(from, to)
	default:
		return nil, fmt.Errorf("no source of type %q", from.scheme)
	}

	var dest plugin.Output
	switch to.scheme {
	case "smtp":
		out := &smtp.Output{}
		out.Address, out.TLS, out.Username = to.addr, to.tls, to.user
		if to.user != "" {
			p.To.secret(&out.PasswordEnv, &out.PasswordFile, "")
		}
		out.To, out.Rate = []string{p.Rcpt}, p.Rate
		out.AllowPlaintextAuth, out.CAFile = p.AllowPlaintextAuth, p.CAFile
		dest = out
	case "imap":
		out := &imap.Output{}
		out.Address, out.TLS, out.Username = to.addr, to.tls, to.user
		p.To.secret(&out.PasswordEnv, &out.PasswordFile, "")
		out.FolderMap = p.FolderMap
		// A migration run again with a fresh state, or one that took
		// over from another machine, copies nothing twice.
		out.SkipExisting, out.MaxConnections = true, parallel
		out.AddMessageID, out.MaxBytesPerSecond = p.AddMessageID, p.MaxBytesPerSecond
		out.MaxBytesPerDay, out.SyncDeletes, out.Rate = p.MaxBytesPerDay, p.SyncDeletes, p.Rate
		out.AllowPlaintextAuth, out.CAFile = p.AllowPlaintextAuth, p.CAFile
		dest = out
	case "gmail":
		dest = gmailOutput(to)
	default:
		return nil, fmt.Errorf("no destination of type %q", to.scheme)
	}

	sched, _ := config.ParseSchedule("")
	out := outputName
	if to.scheme == "gmail" {
		out = gmailOutputName
	}
	pipe := &config.Pipeline{Name: pipelineName, Outputs: []string{out}}
	if !p.Since.IsZero() {
		pipe.Filters = []config.NamedFilter{{Name: "--since", Filter: since(p.Since)}}
	}
	if to.scheme == "gmail" {
		pipe.Filters = append(pipe.Filters, gmailFilter(from, to))
	}
	cfg.Inputs = []*config.Input{{Name: inputName, Type: from.scheme, Pipeline: pipelineName, Plugin: source, Sched: sched}}
	cfg.Pipelines = []*config.Pipeline{pipe}
	cfg.Outputs = []*config.Output{{Name: out, Type: to.scheme, Plugin: dest}}
	return cfg, nil
}

// secret sets a connector's password_env or password_file from the
// endpoint, or, when it gives neither, password_env to def.
func (ep Endpoint) secret(env, file *string, def string) {
	switch {
	case ep.PasswordFile != "":
		*file = absPath(ep.PasswordFile)
	case ep.PasswordEnv != "":
		*env = ep.PasswordEnv
	default:
		*env = def
	}
}
