// Package tlsconf turns the TLS options that every network connector shares
// into a *tls.Config: certificates are verified against the system roots
// unless a private CA file is given; skipping verification is possible but
// logged loudly every time a connector starts.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
)

// Options are the TLS keys of a connector's config.
type Options struct {
	CAFile             string `toml:"tls_ca_file"`
	ServerName         string `toml:"tls_server_name"`
	InsecureSkipVerify bool   `toml:"tls_insecure_skip_verify"`
}

// Resolve makes a relative tls_ca_file relative to base (the config's
// directory).
func (o *Options) Resolve(base string) {
	if o.CAFile != "" && !filepath.IsAbs(o.CAFile) {
		o.CAFile = filepath.Join(base, o.CAFile)
	}
}

// Files lists the files the options read, for reloads (plugin.FileUser).
func (o Options) Files() []string {
	if o.CAFile == "" {
		return nil
	}
	return []string{o.CAFile}
}

// Config builds the client TLS config for a server at address (host:port).
func (o Options) Config(address string, log *slog.Logger) (*tls.Config, error) {
	name := o.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", address, err)
		}
		name = host
	}
	cfg := &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca_file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.InsecureSkipVerify {
		if log != nil {
			log.Warn("TLS CERTIFICATE VERIFICATION IS OFF (tls_insecure_skip_verify = true): anyone on the path can read the password and the mail", "server", address)
		}
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

// CheckEndpoint checks a connector's address ("host:port") and tls mode
// ("implicit", "starttls" or "none"; "" gives def), and returns the mode.
func CheckEndpoint(address, mode, def string) (string, error) {
	if address == "" {
		return "", errors.New("address is required (host:port)")
	}
	if _, _, err := net.SplitHostPort(address); err != nil {
		return "", fmt.Errorf("address %q: %v", address, err)
	}
	switch mode {
	case "":
		return def, nil
	case "implicit", "starttls", "none":
		return mode, nil
	}
	return "", fmt.Errorf("tls must be \"implicit\", \"starttls\" or \"none\", not %q", mode)
}
