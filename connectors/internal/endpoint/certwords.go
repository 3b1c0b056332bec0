package endpoint

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// certWords says why the server's certificate was not accepted, and what
// to set about it; "" when err is no certificate error it knows.
func certWords(err error, cfg *tls.Config) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	raw := ""
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) && ve.Err != nil {
		raw = " (" + ve.Err.Error() + ")"
	}
	switch {
	case errors.As(err, &unknown):
		if cfg != nil && cfg.RootCAs != nil {
			return "the server's certificate is not signed by the CA in tls_ca_file" + raw +
				": set tls_ca_file to the PEM file of the CA that signed it"
		}
		return "the server's certificate is signed by an authority this machine does not trust" + raw +
			": for a private CA or a self-signed certificate, set tls_ca_file to its PEM file"
	case errors.As(err, &hostname):
		names := certNames(hostname.Certificate)
		if len(names) == 0 {
			return fmt.Sprintf("the server's certificate names no host, so it cannot be for %s: it must be replaced on the server", hostname.Host)
		}
		return fmt.Sprintf("the server's certificate is for %s, not %s: set tls_server_name = %q, or give that name in address",
			strings.Join(names, ", "), hostname.Host, names[0])
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil:
		now := time.Now()
		if cfg != nil && cfg.Time != nil {
			now = cfg.Time()
		}
		when := fmt.Sprintf("expired on %s", invalid.Cert.NotAfter.UTC().Format(time.DateTime+" MST"))
		if now.Before(invalid.Cert.NotBefore) {
			when = fmt.Sprintf("is not valid before %s", invalid.Cert.NotBefore.UTC().Format(time.DateTime+" MST"))
		}
		return fmt.Sprintf("the server's certificate %s, and it is %s here: the server must renew it, or this machine's clock is wrong (tls_ca_file and tls_server_name cannot help)",
			when, now.UTC().Format(time.DateTime+" MST"))
	}
	return ""
}

// certNames are the names a certificate is for: its DNS names and IP
// addresses (Go takes no legacy common name).
func certNames(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}
