package smtp_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/internal/srs"
)

func secretFile(t *testing.T, secrets ...string) string {
	p := filepath.Join(t.TempDir(), "srs.secret")
	os.WriteFile(p, []byte(strings.Join(secrets, "\n")+"\n"), 0o600)
	return p
}

// The envelope sender of forwarded mail becomes SRS0 in srs_domain, which
// reverses to the original; the null sender and the output's own from are
// never rewritten.
func TestSRSRewritesTheForwardedSender(t *testing.T) {
	p := newPeer(t, peerOpts{})
	secrets := secretFile(t, "a-secret-of-some-length", "an-older-secret-still-valid")
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"},
		To: []string{"me@fwd.example"}, Forwarding: smtp.Forwarding{SRSDomain: "fwd.example", SRSSecretFile: secrets}})
	for _, raw := range []string{
		"Return-Path: <alice@orig.example>\r\nFrom: Alice <alice@orig.example>\r\nSubject: hi\r\n\r\nbody\r\n",
		"Return-Path: <>\r\nFrom: MAILER-DAEMON@orig.example\r\nSubject: bounce\r\n\r\nbody\r\n",
	} {
		if _, err := deliver(o, []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	got := p.received()
	rw := &srs.Rewriter{Secrets: []string{"a-secret-of-some-length"}}
	if back, err := rw.Reverse(got[0].from); !strings.HasPrefix(got[0].from, "SRS0=") || !strings.HasSuffix(got[0].from, "@fwd.example") || err != nil || back != "alice@orig.example" {
		t.Errorf("MAIL FROM %q (reverses to %q, %v)", got[0].from, back, err)
	}
	if got[1].from != "" {
		t.Errorf("a bounce went out as MAIL FROM:<%s>", got[1].from)
	}
	own := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"},
		To: []string{"me@fwd.example"}, From: "account@fwd.example", Forwarding: smtp.Forwarding{SRSDomain: "fwd.example", SRSSecretFile: secrets}})
	deliver(own, []byte("From: alice@orig.example\r\n\r\nx\r\n"))
	if f := p.received()[2].from; f != "account@fwd.example" {
		t.Errorf("the output's own from was rewritten: %q", f)
	}
	bad := &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"}, Forwarding: smtp.Forwarding{SRSDomain: "fwd.example", SRSSecretFile: secretFile(t, "short")}}
	bad.Provision(plugin.Env{Name: "x"})
	if err := bad.Init(); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("a 5-character secret: %v", err)
	}
}

// Every message carries this output's trace; one that comes back with it,
// or with more Received fields than max_hops, is refused for good.
func TestLoopsAreRefused(t *testing.T) {
	p := newPeer(t, peerOpts{})
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"}, To: []string{"a@x.test"}})
	if _, err := deliver(o, []byte("Subject: once\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	trace := p.received()[0].trace
	if trace != "mailflow/mailflow/out" { // newOutput's Env has no instance: the default name
		t.Fatalf("trace %q", trace)
	}
	_, err := deliver(o, []byte("X-Loop: "+trace+"\r\nSubject: again\r\n\r\nbody\r\n"))
	if err == nil || !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "mail loop detected") {
		t.Fatalf("the same message again: %v", err)
	}
	// Another output's trace is no loop for this one.
	if _, err := deliver(o, []byte("X-Loop: mailflow/mailflow/other\r\nSubject: via other\r\n\r\nbody\r\n")); err != nil {
		t.Fatalf("another output's trace: %v", err)
	}
	hops := strings.Repeat("Received: from a by b; Mon, 30 Nov 2026 10:00:00 +0000\r\n", 51)
	if _, err := deliver(o, []byte(hops+"Subject: far\r\n\r\nbody\r\n")); err == nil || !strings.Contains(err.Error(), "max_hops") {
		t.Fatalf("51 hops: %v", err)
	}
	if n := len(p.received()); n != 2 {
		t.Fatalf("%d messages went out, want 2", n)
	}
}

func TestRewriteFrom(t *testing.T) {
	p := newPeer(t, peerOpts{})
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"},
		To: []string{"a@x.test"}, Forwarding: smtp.Forwarding{RewriteFrom: "{name} via Forwarder <forwarder@example.net>"}})
	body := "Line one\r\n.dot line\r\n"
	deliver(o, []byte("From: Jörg Müller <joerg@orig.example>\r\nSubject: s\r\n\r\n"+body))
	deliver(o, []byte("From: bare@orig.example\r\nReply-To: list@orig.example\r\nSubject: s\r\n\r\n"+body))
	got := p.received()
	m0, _ := message.New(got[0].data, message.Source{}), 0
	if f := m0.Header.Get("From"); !strings.Contains(f, "<forwarder@example.net>") || !strings.Contains(f, "=?utf-8?q?J=C3=B6rg_M=C3=BCller_via_Forwarder?=") {
		t.Errorf("From %q", f)
	}
	if m0.Header.Get("Reply-To") != "Jörg Müller <joerg@orig.example>" || m0.Header.Get("X-Original-From") != "Jörg Müller <joerg@orig.example>" {
		t.Errorf("Reply-To %q X-Original-From %q", m0.Header.Get("Reply-To"), m0.Header.Get("X-Original-From"))
	}
	if !bytes.HasSuffix(got[0].data, []byte("\r\n\r\n"+body)) {
		t.Errorf("the body changed: %q", got[0].data)
	}
	m1 := message.New(got[1].data, message.Source{})
	if m1.Header.Get("From") != "\"bare@orig.example via Forwarder\" <forwarder@example.net>" || m1.Header.Get("Reply-To") != "list@orig.example" {
		t.Errorf("From %q Reply-To %q", m1.Header.Get("From"), m1.Header.Get("Reply-To"))
	}
}

func writeKey(t *testing.T, key crypto.Signer) (path, dnsRecord string) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "dkim.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		b, _ := x509.MarshalPKIXPublicKey(pub)
		return path, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(b)
	case ed25519.PublicKey:
		return path, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	t.Fatal("key type")
	return
}

// The signature verifies over what arrived, for RSA and Ed25519 keys, and
// after the 7-bit conversion for a server without 8BITMIME (it is made
// over the bytes sent, not the bytes fetched); From was rewritten first.
func TestDKIMSignatureVerifiesOnWhatArrived(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{"rsa": rsaKey, "ed25519": edKey} {
		for _, eight := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/8bitmime=%v", name, eight), func(t *testing.T) {
				s, err := smtptest.NewServer()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				if !eight {
					s.Set(func(b *smtptest.Behaviour) { b.Extensions = []string{"PIPELINING"} })
				}
				keyFile, record := writeKey(t, key)
				o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"},
					To: []string{"a@x.test"}, Forwarding: smtp.Forwarding{DKIMDomain: "fwd.example", DKIMSelector: "mf", DKIMKeyFile: keyFile, RewriteFrom: "{name} <fwd@fwd.example>"}})
				raw := "From: =?utf-8?q?Zo=C3=AB?= <zoe@orig.example>\r\nTo: a@x.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <d1@orig.example>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\nbare LF line\r\n.leading dot\r\n"
				if _, err := deliver(o, []byte(raw)); err != nil {
					t.Fatal(err)
				}
				// What the server got, the dot-stuffing undone.
				arrived := bytes.ReplaceAll(s.Mails()[0].Raw, []byte("\r\n.."), []byte("\r\n."))
				verifs, err := dkim.VerifyWithOptions(bytes.NewReader(arrived), &dkim.VerifyOptions{
					LookupTXT: func(domain string) ([]string, error) {
						if domain == "mf._domainkey.fwd.example" {
							return []string{record}, nil
						}
						return nil, errors.New("no such record")
					}})
				if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != "fwd.example" {
					t.Fatalf("verification: %v %+v\n%s", err, verifs, arrived)
				}
				if !eight && bytes.Contains(arrived, []byte("Grüße aus")) {
					t.Fatal("not converted to 7-bit")
				}
				// A changed byte breaks it: the verifier is not lenient.
				tampered := bytes.Replace(arrived, []byte("bare LF"), []byte("bare lf"), 1)
				if !eight {
					tampered = bytes.Replace(arrived, []byte("leading dot"), []byte("leading Dot"), 1)
				}
				verifs, _ = dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{
					LookupTXT: func(string) ([]string, error) { return []string{record}, nil }})
				if len(verifs) != 1 || verifs[0].Err == nil {
					t.Fatal("a tampered body verified")
				}
			})
		}
	}
}

var _ = context.Background
