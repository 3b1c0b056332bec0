// Package oauth logs mailflow's connectors in with OAuth 2.0 (Gmail,
// Microsoft 365, any provider that speaks RFC 6749): a person logs in once
// with "mailflow auth login" (authorization code with PKCE through a
// loopback redirect, or the device flow on a headless machine), the tokens
// are kept in state_dir/tokens/NAME.json, and a Source hands connectors a
// fresh access token, refreshing it ahead of its expiry.
package oauth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Config is the OAuth part of a connector's config.
type Config struct {
	Provider         string   `toml:"oauth2_provider"` // google, microsoft, custom
	ClientID         string   `toml:"client_id"`
	ClientSecretFile string   `toml:"client_secret_file"` // optional for public clients
	Tenant           string   `toml:"tenant"`             // microsoft: default "common"
	AuthURL          string   `toml:"auth_url"`           // custom
	TokenURL         string   `toml:"token_url"`          // custom
	DeviceURL        string   `toml:"device_url"`         // custom
	Scopes           []string `toml:"scopes"`             // default: the provider's for mail
	RefreshBefore    string   `toml:"refresh_before"`     // default 5m
	// Account is the user the connector logs in as (its username), set by
	// the connector, kept with the tokens for "mailflow auth status".
	Account string `toml:"-"`
	// NoSecrets, set by the connector for "mailflow check --no-secrets",
	// leaves client_secret_file unread.
	NoSecrets bool `toml:"-"`

	secret        string
	refreshBefore time.Duration
	endpoint      oauth2.Endpoint
	scopeRefresh  bool // the provider wants the scopes on a refresh (Microsoft)
}

// MailScopes are the scopes each provider needs for POP3, IMAP and SMTP,
// and a refresh token.
var MailScopes = map[string][]string{
	"google": {"https://mail.google.com/"},
	"microsoft": {"https://outlook.office.com/POP.AccessAsUser.All", "https://outlook.office.com/IMAP.AccessAsUser.All",
		"https://outlook.office.com/SMTP.Send", "offline_access"},
}

// Init checks the settings, reads the client secret and resolves the
// provider's endpoints; baseDir anchors a relative client_secret_file.
func (c *Config) Init(baseDir string) error {
	c.Provider = strings.ToLower(c.Provider)
	switch c.Provider {
	case "google":
		c.endpoint = oauth2.Endpoint{AuthURL: "https://accounts.google.com/o/oauth2/auth",
			TokenURL: "https://oauth2.googleapis.com/token", DeviceAuthURL: "https://oauth2.googleapis.com/device/code"}
	case "microsoft":
		tenant := c.Tenant
		if tenant == "" {
			tenant = "common"
		}
		base := "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/"
		c.endpoint = oauth2.Endpoint{AuthURL: base + "authorize", TokenURL: base + "token", DeviceAuthURL: base + "devicecode"}
		c.scopeRefresh = true
	case "custom":
		if c.TokenURL == "" || c.AuthURL == "" && c.DeviceURL == "" {
			return errors.New(`oauth2_provider = "custom" needs token_url and auth_url or device_url`)
		}
		c.endpoint = oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, DeviceAuthURL: c.DeviceURL}
		c.scopeRefresh = true
	case "":
		return errors.New(`auth = "oauth2" needs oauth2_provider ("google", "microsoft" or "custom")`)
	default:
		return fmt.Errorf(`oauth2_provider must be "google", "microsoft" or "custom", not %q`, c.Provider)
	}
	if c.ClientID == "" {
		return errors.New(`auth = "oauth2" needs client_id (from the app registration; see README, "Gmail and Microsoft 365")`)
	}
	if len(c.Scopes) == 0 {
		c.Scopes = MailScopes[c.Provider]
	}
	if c.ClientSecretFile != "" {
		path := c.ClientSecretFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		c.ClientSecretFile = path
	}
	if c.ClientSecretFile != "" && !c.NoSecrets {
		b, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			return fmt.Errorf("client_secret_file: %w", err)
		}
		c.secret = strings.TrimSpace(string(b))
	}
	c.refreshBefore = 5 * time.Minute
	if c.RefreshBefore != "" {
		d, err := time.ParseDuration(c.RefreshBefore)
		if err != nil || d < 0 {
			return fmt.Errorf("refresh_before %q: give a duration such as \"5m\"", c.RefreshBefore)
		}
		c.refreshBefore = d
	}
	return nil
}

// Files lists the files Init read (for reload).
func (c *Config) Files() []string {
	if c.ClientSecretFile == "" {
		return nil
	}
	return []string{c.ClientSecretFile}
}

// oauth2Config is the x/oauth2 form of c, for the login flows.
func (c *Config) oauth2Config(redirect string) *oauth2.Config {
	return &oauth2.Config{ClientID: c.ClientID, ClientSecret: c.secret, Endpoint: c.endpoint, Scopes: c.Scopes, RedirectURL: redirect}
}

// User is implemented by the connectors that log in with OAuth when their
// config says auth = "oauth2".
type User interface {
	// OAuth returns the connector's OAuth config, or nil when it does not
	// use OAuth.
	OAuth() *Config
	// Tokens is the connector's token source (nil without OAuth).
	Tokens() *Source
}
