package smtp

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/internal/srs"
)

// What a forwarding output adds to or changes in a message on its way out,
// for this output only (the message is shared with the other outputs, so
// nothing here changes it): the envelope sender rewritten with SRS, a trace
// field for loop detection, From rewritten for submission servers that
// insist on the account as sender, and a DKIM signature over the exact
// bytes that go on the wire, made after every script has run.

// Forwarding is the forwarding part of an SMTP output's config.
type Forwarding struct {
	SRSDomain     string `toml:"srs_domain"`
	SRSSecretFile string `toml:"srs_secret_file"`
	SRSMaxAge     string `toml:"srs_max_age"`
	RewriteFrom   string `toml:"rewrite_from"`
	DKIMDomain    string `toml:"dkim_domain"`
	DKIMSelector  string `toml:"dkim_selector"`
	DKIMKeyFile   string `toml:"dkim_key_file"`
	MaxHops       int    `toml:"max_hops"`

	srs   *srs.Rewriter
	trace string // the X-Loop value this output adds and refuses to see twice
	dkim  *dkim.SignOptions

	noSecrets bool // "mailflow check --no-secrets": read no secret file
}

// dkimHeaders are the fields signed, as RFC 6376 5.4.1 recommends; From is
// listed twice so that a From added later breaks the signature
// (oversigning, 8.15).
var dkimHeaders = []string{"From", "From", "Reply-To", "Subject", "Date", "To", "Cc",
	"Resent-Date", "Resent-From", "Resent-To", "Resent-Cc", "In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
	"Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}

// resolve makes the config's file names absolute.
func (f *Forwarding) resolve(base string) {
	for _, p := range []*string{&f.SRSSecretFile, &f.DKIMKeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// files are what a reload watches.
func (f *Forwarding) files() []string {
	var out []string
	for _, p := range []string{f.SRSSecretFile, f.DKIMKeyFile} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// init checks the forwarding settings and reads their files.
func (f *Forwarding) init(instance, output string) error {
	if f.MaxHops == 0 {
		f.MaxHops = 50 // RFC 5321 6.3 suggests at least 100 hops are a loop; 50 is what Postfix uses
	}
	if instance == "" {
		instance = "mailflow"
	}
	f.trace = "mailflow/" + instance + "/" + output
	if f.SRSDomain != "" {
		if f.SRSSecretFile == "" {
			return errors.New("srs_domain needs srs_secret_file (one secret a line; the first signs)")
		}
		var secrets []string
		if !f.noSecrets {
			var err error
			if secrets, err = srs.ReadSecrets(f.SRSSecretFile); err != nil {
				return fmt.Errorf("srs_secret_file: %v", err)
			}
		}
		r := &srs.Rewriter{Domain: f.SRSDomain, Secrets: secrets}
		var err error
		if f.SRSMaxAge != "" {
			if r.MaxAge, err = time.ParseDuration(f.SRSMaxAge); err != nil || r.MaxAge < 24*time.Hour {
				return fmt.Errorf("srs_max_age: %q is not a duration of a day or more", f.SRSMaxAge)
			}
		}
		f.srs = r
	}
	if f.RewriteFrom != "" {
		if _, err := f.rewrittenFrom("Alice Example <alice@example.org>"); err != nil {
			return fmt.Errorf("rewrite_from: %v", err)
		}
	}
	if f.DKIMDomain != "" || f.DKIMSelector != "" || f.DKIMKeyFile != "" {
		if f.DKIMDomain == "" || f.DKIMSelector == "" || f.DKIMKeyFile == "" {
			return errors.New("DKIM signing needs dkim_domain, dkim_selector and dkim_key_file")
		}
		if f.noSecrets {
			return nil
		}
		key, err := readSigningKey(f.DKIMKeyFile)
		if err != nil {
			return fmt.Errorf("dkim_key_file: %v", err)
		}
		f.dkim = &dkim.SignOptions{Domain: f.DKIMDomain, Selector: f.DKIMSelector, Signer: key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
			HeaderKeys: dkimHeaders}
	}
	return nil
}

// readSigningKey reads a PEM private key: RSA (PKCS#1 or PKCS#8) or
// Ed25519 (PKCS#8).
func readSigningKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block in the file")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("an RSA key of %d bits is too short (1024 at least, 2048 recommended)", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("a %T key cannot sign DKIM (RSA or Ed25519)", k)
}

// checkLoop refuses, for good, a message this output already sent (its
// trace field is in the header) or one with more Received fields than
// max_hops: forwarding it again would go round for ever.
func (f *Forwarding) checkLoop(msg *message.Message) error {
	for _, v := range msg.Header.Values("X-Loop") {
		if strings.EqualFold(strings.TrimSpace(v), f.trace) {
			return plugin.Permanent(fmt.Errorf("mail loop detected: this message was already sent through this output (X-Loop: %s)", f.trace))
		}
	}
	if n := len(msg.Header.Values("Received")); n > f.MaxHops {
		return plugin.Permanent(fmt.Errorf("mail loop detected: %d Received fields, more than max_hops = %d", n, f.MaxHops))
	}
	return nil
}

// envelopeSender is the SRS form of sender when srs_domain is set and the
// sender is not the output's own from; the null sender is never rewritten.
func (f *Forwarding) envelopeSender(sender string, own bool) string {
	if f.srs == nil || own || sender == "" {
		return sender
	}
	out, err := f.srs.Forward(sender)
	if err != nil {
		return sender
	}
	return out
}

// rewrittenFrom fills rewrite_from's template from the original From:
// {name} is its display name (else its address), {address} its address.
// The template is "display name <address>"; the name is quoted or encoded
// as it needs (an address in it, non-ASCII letters).
func (f *Forwarding) rewrittenFrom(orig string) (string, error) {
	name, addr := orig, orig
	if a, err := mail.ParseAddress(orig); err == nil {
		addr, name = a.Address, a.Name
		if name == "" {
			name = a.Address
		}
	}
	fill := strings.NewReplacer("{name}", name, "{address}", addr).Replace
	open, close := strings.LastIndexByte(f.RewriteFrom, '<'), strings.LastIndexByte(f.RewriteFrom, '>')
	if open < 0 || close < open {
		return "", fmt.Errorf("%q is not \"display name <address>\"", f.RewriteFrom)
	}
	out := mail.Address{Name: strings.TrimSpace(fill(f.RewriteFrom[:open])), Address: fill(f.RewriteFrom[open+1 : close])}
	if _, err := mail.ParseAddress("<" + out.Address + ">"); err != nil || checkAddress(out.Address) != nil {
		return "", fmt.Errorf("%q is not an address", out.Address)
	}
	return out.String(), nil
}

// outgoing returns what this output sends for msg, as a function that
// opens it (DKIM reads it once to sign, the client once to send), and its
// size: the trace field first, then the header (rewritten if rewrite_from
// is set), then the body, whose bytes are never touched here.
func (f *Forwarding) outgoing(msg *message.Message) (func() io.Reader, int64, error) {
	trace := []byte("X-Loop: " + f.trace + "\r\n")
	if f.RewriteFrom == "" {
		return func() io.Reader { return io.MultiReader(bytes.NewReader(trace), msg.Reader()) },
			int64(len(trace)) + msg.Size(), nil
	}
	h := msg.Header.Clone()
	orig := h.Get("From")
	from, err := f.rewrittenFrom(orig)
	if err != nil {
		return nil, 0, plugin.Permanent(fmt.Errorf("rewrite_from: %v", err))
	}
	if orig != "" {
		if !h.Has("Reply-To") {
			h.Set("Reply-To", orig)
		}
		h.Set("X-Original-From", orig)
	}
	h.Set("From", from)
	var head bytes.Buffer
	head.Write(trace)
	if _, err := h.WriteTo(&head); err != nil {
		return nil, 0, err
	}
	b := head.Bytes()
	return func() io.Reader { return io.MultiReader(bytes.NewReader(b), msg.Body()) },
		int64(len(b)) + msg.BodySize(), nil
}

// sign returns the DKIM-Signature field for the bytes open gives, with
// their line ends as they will be on the wire (CRLF everywhere).
func (f *Forwarding) sign(open func() io.Reader) ([]byte, error) {
	s, err := dkim.NewSigner(f.dkim)
	if err != nil {
		return nil, err
	}
	w := &dotWriter{w: s, bol: true, plain: true}
	if _, err := io.Copy(w, open()); err != nil {
		s.Close()
		return nil, err
	}
	if err := w.Close(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	return []byte(s.Signature()), nil
}
