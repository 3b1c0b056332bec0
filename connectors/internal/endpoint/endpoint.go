// Package endpoint is what the network connectors (POP3, IMAP, SMTP) share
// about reaching and logging in to their server: the config keys (address,
// tls and the tls_* keys, username, the password and its _env and _file
// forms, auth, allow_plaintext_auth, timeout, the oauth2 keys), their
// checks, and the dial up to a connection ready for the protocol's
// greeting. What differs between the protocols (the default TLS mode, the
// auth methods, whether a username is needed) is a Protocol value that
// each connector gives Init; speaking the protocol, STARTTLS included,
// stays the connector's.
package endpoint

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/connectors/oauth"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Settings are the endpoint and login keys of a connector's config. A
// connector embeds them, so that the keys stand in its own table.
type Settings struct {
	// Address is host:port.
	Address string `toml:"address"`
	// TLS is "implicit", "starttls" or "none"; "" gives the protocol's
	// default.
	TLS      string `toml:"tls"`
	Username string `toml:"username"`
	// The password (or a fixed bearer token), given one way of three.
	Password     string `toml:"password"`
	PasswordEnv  string `toml:"password_env"`
	PasswordFile string `toml:"password_file"`
	// Auth is "oauth2" (a token from the oauth keys beside these) or one
	// of the protocol's methods (Protocol.CheckAuth).
	Auth               string `toml:"auth"`
	AllowPlaintextAuth bool   `toml:"allow_plaintext_auth"`
	// Timeout bounds the wait for the server; "" gives the protocol's.
	Timeout string `toml:"timeout"`
	tlsconf.Options
	// With auth = "oauth2": the provider and app (see connectors/oauth).
	oauth.Config

	log     *slog.Logger
	env     plugin.Env
	proto   Protocol
	secret  string
	tokens  *oauth.Source
	timeout time.Duration
	tlsCfg  *tls.Config
}

// Protocol is what differs between the connectors that use Settings.
type Protocol struct {
	// DefaultTLS is the tls mode when none is given: "implicit" or
	// "starttls".
	DefaultTLS string
	// StartTLSPort and ImplicitPort are the protocol's usual ports for
	// the two modes, named in the hint when a server answers an implicit
	// TLS handshake in clear.
	StartTLSPort, ImplicitPort string
	// ALPN is offered in an implicit TLS handshake (RFC 7301), if set.
	ALPN []string
	// Timeout is the default of the timeout key.
	Timeout time.Duration
	// CheckAuth checks the auth key when it is not "oauth2" (whatever the
	// case); nil takes only "".
	CheckAuth func(auth string) error
	// UsernameOptional is set where a server may take mail without a login
	// (an SMTP relay); then no username means no AUTH.
	UsernameOptional bool
	// SafeInClear are the auth methods (lower case) that do not put a
	// replayable secret on the wire (APOP, CRAM-MD5): the only ones that
	// tls = "none" allows without allow_plaintext_auth.
	SafeInClear []string
}

// Provision resolves a relative password_file or tls_ca_file against the
// config's directory, and keeps env for Init.
func (s *Settings) Provision(env plugin.Env) {
	s.log, s.env = env.Logger, env
	if s.PasswordFile != "" && !filepath.IsAbs(s.PasswordFile) {
		s.PasswordFile = filepath.Join(env.BaseDir, s.PasswordFile)
	}
	s.Options.Resolve(env.BaseDir)
}

// Init checks the settings for protocol p and prepares the login: it reads
// the secret, or sets up the OAuth token source, and builds the TLS config.
// No I/O but reading the secret and CA files.
func (s *Settings) Init(p Protocol) error {
	s.proto = p
	mode, err := tlsconf.CheckEndpoint(s.Address, s.TLS, p.DefaultTLS)
	if err != nil {
		return err
	}
	s.TLS = mode
	oauth2 := strings.EqualFold(s.Auth, "oauth2")
	if !oauth2 {
		check := p.CheckAuth
		if check == nil {
			check = onlyPassword
		}
		if err := check(s.Auth); err != nil {
			return err
		}
	}
	if s.Username == "" {
		switch {
		case !p.UsernameOptional:
			return errors.New("username is required")
		case oauth2:
			return errors.New(`auth = "oauth2" needs username (the account's address)`)
		}
	}
	if oauth2 {
		s.Config.NoSecrets = s.env.NoSecrets
		if err := s.Config.Init(s.env.BaseDir); err != nil {
			return err
		}
		s.Config.Account = s.Username
		s.tokens = oauth.NewSource(&s.Config, oauth.NewStore(s.env.StateDir), s.env.Name, s.env.ConfigPath)
	} else if s.env.NoSecrets {
		if err := CheckSecret("password", s.Password, s.PasswordEnv, s.PasswordFile); err != nil {
			return err
		}
	} else if s.secret, err = ResolveSecret("password", s.Password, s.PasswordEnv, s.PasswordFile); err != nil {
		return err
	}
	if s.Username != "" && s.TLS == "none" && !s.AllowPlaintextAuth && !s.safeInClear() {
		hint := ""
		for _, m := range p.SafeInClear {
			hint += fmt.Sprintf(", or use auth = %q", m)
		}
		return fmt.Errorf(`tls = "none" would send the password in clear; set allow_plaintext_auth = true if you mean it%s`, hint)
	}
	s.timeout = p.Timeout
	if s.Timeout != "" {
		if s.timeout, err = time.ParseDuration(s.Timeout); err != nil {
			return fmt.Errorf("timeout: %v", err)
		}
	}
	if s.TLS != "none" {
		if s.tlsCfg, err = s.Options.Config(s.Address, s.log); err != nil {
			return err
		}
	}
	return nil
}

func onlyPassword(auth string) error {
	if auth != "" {
		return fmt.Errorf("auth must be \"oauth2\" or left out, not %q", auth)
	}
	return nil
}

// safeInClear reports whether the auth method keeps the secret safe on a
// connection without TLS (Protocol.SafeInClear).
func (s *Settings) safeInClear() bool {
	return slices.Contains(s.proto.SafeInClear, strings.ToLower(s.Auth))
}

// Secret is the password (or fixed token) that Init read; "" with OAuth.
func (s *Settings) Secret() string { return s.secret }

// TLSConfig is the TLS client config that Init built; nil with tls = "none".
func (s *Settings) TLSConfig() *tls.Config { return s.tlsCfg }

// Wait is how long to wait for the server: the timeout key, or the
// protocol's default.
func (s *Settings) Wait() time.Duration { return s.timeout }

// Tokens implements oauth.User: the token source with auth = "oauth2",
// else nil.
func (s *Settings) Tokens() *oauth.Source { return s.tokens }

// OAuth implements oauth.User.
func (s *Settings) OAuth() *oauth.Config {
	if s.tokens == nil {
		return nil
	}
	return &s.Config
}

// Files implements plugin.FileUser: a changed password, CA or client
// secret file rebuilds the connector on reload.
func (s *Settings) Files() []string {
	var files []string
	if s.PasswordFile != "" {
		files = append(files, s.PasswordFile)
	}
	files = append(files, s.Options.Files()...)
	return append(files, s.Config.Files()...)
}

var (
	_ oauth.User      = (*Settings)(nil)
	_ plugin.FileUser = (*Settings)(nil)
)
