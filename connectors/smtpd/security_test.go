package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

// STARTTLS works with the configured certificate, and the scripts and the
// Received field see the TLS; a client hello that is garbage ends that
// connection (after STARTTLS, and on an implicit-TLS port) and the server
// goes on serving the next client.
func TestTLS(t *testing.T) {
	cert, key, clientTLS := tlsFiles(t)
	r := newRig(t, "smtp", fmt.Sprintf("tls = \"starttls\"\ntls_cert_file = %q\ntls_key_file = %q\nrequire_tls = true", cert, key), "")

	w := r.dial()
	w.hello()
	w.send("MAIL FROM:<alice@example.org>")
	w.expect(530) // require_tls
	w.send("STARTTLS")
	w.expect(220)
	w.c.Write([]byte("\x16\x03\x01\x00\x05hello, this is not a TLS client hello\r\n"))
	w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if !w.closed(5 * time.Second) {
		t.Fatal("a bad client hello left the connection open")
	}

	c, err := smtp.DialStartTLS(r.addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("alice@example.org", []string{"bob@example.net"}, strings.NewReader(msg("secret", "x\r\n"))); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	got := r.waitFor(1)[0]
	if !strings.HasPrefix(got.client.Client.TLS, "TLSv1.3 ") || got.client.Client.Protocol != "ESMTPS" {
		t.Fatalf("client %+v", got.client.Client)
	}
	if !strings.Contains(string(got.msg), "(using TLSv1.3 with cipher ") || !strings.Contains(string(got.msg), "with ESMTPS id") {
		t.Fatalf("Received field:\n%s", got.msg)
	}

	t.Run("implicit", func(t *testing.T) {
		r := newRig(t, "smtp", fmt.Sprintf("tls = \"implicit\"\ntls_cert_file = %q\ntls_key_file = %q", cert, key), "")
		w := r.dial()
		w.c.Write([]byte("EHLO plain.example.org\r\n"))
		if !w.closed(5 * time.Second) {
			t.Fatal("a client speaking clear text to an implicit-TLS port was not cut off")
		}
		tc, err := tls.Dial("tcp", r.addr, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClient(tc)
		if err := c.SendMail("alice@example.org", []string{"bob@example.net"}, strings.NewReader(msg("implicit", "x\r\n"))); err != nil {
			t.Fatal(err)
		}
		c.Quit()
		r.waitFor(1)
	})
}

// usersFile writes a users file with alice's password "right".
func usersFile(t *testing.T) string {
	h, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	p := filepath.Join(t.TempDir(), "users")
	os.WriteFile(p, []byte("# name:hash\nalice:"+string(h)+"\n"), 0o600)
	return p
}

// AUTH PLAIN and LOGIN against the users file; a client that fails to log
// in auth_failure_limit times is refused and hung up on, the right
// password included, on this connection and the next; a client that
// logged in may relay, and the scripts see who it is.
func TestAuth(t *testing.T) {
	cert, key, clientTLS := tlsFiles(t)
	r := newRig(t, "smtp", fmt.Sprintf("tls = \"starttls\"\ntls_cert_file = %q\ntls_key_file = %q\nusers_file = %q\nrequire_auth = true\n"+
		"trusted_networks = []\nauth_failure_limit = \"3/1h\"\nauth_failure_delay = \"10ms\"", cert, key, usersFile(t)),
		`function filter(msg) msg:set_header("X-Auth", msg.client.auth or "none") end`)
	dial := func() *smtp.Client {
		c, err := smtp.DialStartTLS(r.addr, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Fatalf("AUTH offered: %v %q", ok, mechs)
	}
	if err := c.Mail("alice@example.org", nil); err == nil || !strings.Contains(err.Error(), "530") {
		t.Fatalf("MAIL before AUTH: %v", err)
	}
	if err := c.Auth(sasl.NewLoginClient("alice", "right")); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := c.SendMail("alice@example.org", []string{"anyone@elsewhere.example"}, strings.NewReader(msg("authed", "x\r\n"))); err != nil {
		t.Fatalf("an authenticated client relays: %v", err)
	}
	c.Quit()
	if got := r.waitFor(1)[0]; !strings.Contains(string(got.msg), "X-Auth: alice") || got.client.Client.Protocol != "ESMTPSA" {
		t.Fatalf("the script does not see the login: %s %+v", got.msg, got.client.Client)
	}

	// Brute force: three wrong passwords, then even the right one is refused.
	c = dial()
	for i := range 3 {
		err := c.Auth(sasl.NewPlainClient("", "alice", fmt.Sprint("guess", i)))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 535 && !(i == 2 && se.Code == 421) {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "right")); err == nil {
		t.Fatal("the right password after the limit was taken on the same connection")
	}
	c.Close()
	c = dial()
	err := c.Auth(sasl.NewPlainClient("", "alice", "right"))
	if err == nil || !strings.Contains(err.Error(), "too many failed logins") {
		t.Fatalf("a new connection after the limit: %v", err)
	}
	c.Close()
	if !strings.Contains(r.log.String(), "AUTH refused: too many failed logins") {
		t.Fatal("the lockout is not logged")
	}
}

// A client outside trusted_networks that did not log in may send only to
// accept_recipients and accept_domains; with neither, it relays nowhere.
func TestRelayRules(t *testing.T) {
	r := newRig(t, "smtp", "trusted_networks = []\naccept_domains = [\"example.net\"]\naccept_recipients = [\"postmaster@example.com\"]", "")
	w := r.dial()
	w.hello()
	w.send("MAIL FROM:<x@elsewhere.example>", "RCPT TO:<Bob@EXAMPLE.net>", "RCPT TO:<postmaster@example.com>", "RCPT TO:<other@example.com>")
	w.expect(250)
	w.expect(250)
	w.expect(250)
	if m := w.expect(550); !strings.Contains(m, "not accepted here") {
		t.Fatalf("reply %q", m)
	}
	w.send("XFORWARD ADDR=192.0.2.1")
	w.expect(550) // XFORWARD from an untrusted client

	r2 := newRig(t, "smtp", "trusted_networks = []", "")
	w = r2.dial()
	w.hello()
	w.send("MAIL FROM:<x@elsewhere.example>", "RCPT TO:<bob@example.net>")
	w.expect(250)
	if m := w.expect(554); !strings.Contains(m, "Relay access denied") {
		t.Fatalf("reply %q", m)
	}
}

// Per-client limits: connections at once and per period; a trusted
// client is bound by neither.
func TestConnectionLimits(t *testing.T) {
	r := newRig(t, "smtp", "trusted_networks = []\nmax_connections_per_client = 2\nconnection_rate_per_client = \"4/h\"", "")
	a, b := r.dial(), r.dial()
	a.expect(220)
	b.expect(220)
	c := r.dial()
	if code, m := c.reply(); code != 421 || !strings.Contains(m, "too many connections from 127.0.0.1") {
		t.Fatalf("a third connection: %d %q", code, m)
	}
	a.send("QUIT")
	a.expect(221)
	time.Sleep(50 * time.Millisecond)
	d := r.dial()
	d.expect(220) // the fourth in the hour, with one closed
	d.send("QUIT")
	d.expect(221)
	time.Sleep(50 * time.Millisecond)
	e := r.dial()
	if code, m := e.reply(); code != 421 || !strings.Contains(m, "in a short time") {
		t.Fatalf("a fifth connection in the hour: %d %q", code, m)
	}

	trusted := newRig(t, "smtp", "max_connections_per_client = 1\nconnection_rate_per_client = \"1/h\"", "")
	for range 3 {
		trusted.dial().expect(220)
	}
}

// A spool that holds max_spool_size of mail waiting (the output down)
// refuses more for now, 452.
func TestSpoolFull(t *testing.T) {
	r := newRig(t, "smtp", "max_spool_size = 1000", "")
	r.out.setFail(func(m *messageT, d deliveryT) (resultsT, error) { return nil, errors.New("down") })
	body := msg("big", strings.Repeat("y", 1200)+"\r\n")
	if err := sendMail(r.addr, "alice@example.org", []string{"bob@example.net"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	err := sendMail(r.addr, "alice@example.org", []string{"bob@example.net"}, strings.NewReader(body))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 {
		t.Fatalf("a second message into a full spool: %v", err)
	}
}
