// Package imap is mailflow's IMAP input and output, on emersion/go-imap/v2.
//
// The input lists the folders it is given (patterns, less exclusions),
// names each message by folder, UIDVALIDITY and UID, fetches with
// BODY.PEEK[] (reading does not set \Seen) and, once the engine says a
// message is settled, deletes, moves or flags it, or keeps it. The output
// APPENDs each message into its folder (mapped by folder_map) with its flags
// and INTERNALDATE, creating folders as needed.
package imap

import (
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("imap", func() engine.Input { return &Input{} })
	plugins.AddOutput("imap", func() engine.Output { return &Output{} })
}

// Endpoint is the connection settings both plugins share.
type Endpoint struct {
	Address            string `toml:"address"`
	TLS                string `toml:"tls"`
	Username           string `toml:"username"`
	Password           string `toml:"password"`
	PasswordEnv        string `toml:"password_env"`
	PasswordFile       string `toml:"password_file"`
	AllowPlaintextAuth bool   `toml:"allow_plaintext_auth"`
	Timeout            string `toml:"timeout"`
	tlsconf.Options

	log    *slog.Logger
	dialer dialer
}

// provision resolves relative paths against the config's directory.
func (e *Endpoint) provision(env engine.Env) {
	e.log = env.Logger
	if e.PasswordFile != "" && !filepath.IsAbs(e.PasswordFile) {
		e.PasswordFile = filepath.Join(env.BaseDir, e.PasswordFile)
	}
	e.Options.Resolve(env.BaseDir)
}

// init checks the settings and prepares the dialer. No I/O but reading
// the secret and CA files.
func (e *Endpoint) init() error {
	mode, err := tlsconf.CheckEndpoint(e.Address, e.TLS, "implicit")
	if err != nil {
		return err
	}
	e.TLS = mode
	if e.Username == "" {
		return errors.New("username is required")
	}
	secret, err := engine.ResolveSecret("password", e.Password, e.PasswordEnv, e.PasswordFile)
	if err != nil {
		return err
	}
	if e.TLS == "none" && !e.AllowPlaintextAuth {
		return errors.New(`tls = "none" would send the password in clear; set allow_plaintext_auth = true if you mean it`)
	}
	timeout := time.Minute
	if e.Timeout != "" {
		if timeout, err = time.ParseDuration(e.Timeout); err != nil {
			return fmt.Errorf("timeout: %v", err)
		}
	}
	var cfg *tls.Config
	if e.TLS != "none" {
		if cfg, err = e.Options.Config(e.Address, e.log); err != nil {
			return err
		}
	}
	e.dialer = dialer{Address: e.Address, TLS: e.TLS, TLSCfg: cfg, Username: e.Username, Password: secret, Timeout: timeout}
	return nil
}

// Files implements engine.FileUser.
func (e *Endpoint) Files() []string {
	var files []string
	if e.PasswordFile != "" {
		files = append(files, e.PasswordFile)
	}
	return append(files, e.Options.Files()...)
}
