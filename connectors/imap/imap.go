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
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/plugins"
)

//go:embed sample.conf
var sampleConfig string

func init() {
	plugins.AddInput("imap", func() plugin.Input { return &Input{} })
	plugins.AddOutput("imap", func() plugin.Output { return &Output{} })
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
	// Auth is "login" (default: the password) or "oauth2" (the settings
	// of connectors/oauth beside these).
	Auth    string `toml:"auth"`
	Timeout string `toml:"timeout"`
	tlsconf.Options
	oauth.Config

	log    *slog.Logger
	env    plugin.Env
	dialer dialer
}

// provision resolves relative paths against the config's directory.
func (e *Endpoint) provision(env plugin.Env) {
	e.log, e.env = env.Logger, env
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
	var secret string
	var tokens *oauth.Source
	switch strings.ToLower(e.Auth) {
	case "", "login":
		if secret, err = endpoint.ResolveSecret("password", e.Password, e.PasswordEnv, e.PasswordFile); err != nil {
			return err
		}
	case "oauth2":
		if err := e.Config.Init(e.env.BaseDir); err != nil {
			return err
		}
		e.Config.Account = e.Username
		tokens = oauth.NewSource(&e.Config, oauth.NewStore(e.env.StateDir), e.env.Name, e.env.ConfigPath)
	default:
		return fmt.Errorf(`auth must be "login" or "oauth2", not %q`, e.Auth)
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
	e.dialer = dialer{Address: e.Address, TLS: e.TLS, TLSCfg: cfg, Username: e.Username, Password: secret, Timeout: timeout, Tokens: tokens}
	return nil
}

// Tokens implements oauth.User.
func (e *Endpoint) Tokens() *oauth.Source { return e.dialer.Tokens }

// OAuth implements oauth.User.
func (e *Endpoint) OAuth() *oauth.Config {
	if e.dialer.Tokens == nil {
		return nil
	}
	return &e.Config
}

// Files implements plugin.FileUser.
func (e *Endpoint) Files() []string {
	var files []string
	if e.PasswordFile != "" {
		files = append(files, e.PasswordFile)
	}
	files = append(files, e.Options.Files()...)
	return append(files, e.Config.Files()...)
}
