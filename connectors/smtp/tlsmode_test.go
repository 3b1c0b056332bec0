package smtp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// newImplicitPeer is newPeer on a port of implicit TLS (465), with a
// certificate from a test CA.
func newImplicitPeer(t *testing.T) *peer {
	t.Helper()
	p := &peer{rcptErr: map[string]*gosmtp.SMTPError{}}
	s := gosmtp.NewServer(p)
	s.Domain = "peer.test"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	cert, caFile := testCert(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	p.srv, p.addr, p.caFile = s, ln.Addr().String(), caFile
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return p
}

// deliverWithin delivers under a 20 s context, which a delivery that fails
// with the fix must not wait out (the timeout is SMTP's default, 2 min).
func deliverWithin(t *testing.T, o *smtp.Output) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := message.New(enginetest.Message(enginetest.Plain, 1, 100), message.Source{Input: "t", ID: "1"})
	res, err := o.Deliver(ctx, msg, plugin.Delivery{Key: "k"})
	if ctx.Err() != nil {
		t.Fatalf("the delivery waited out its context: %v", err)
	}
	if err == nil && len(res) == 1 {
		err = res[0].Err
	}
	return err
}

// A TLS mode that does not match the port is told at once, with the fix,
// and the fix works; a certificate from a CA this machine does not know,
// after STARTTLS, names tls_ca_file.
func TestTLSModeThatDoesNotMatchThePort(t *testing.T) {
	t.Parallel()
	implicit := newImplicitPeer(t)
	plain := newPeer(t, peerOpts{})
	starttls := newPeer(t, peerOpts{tls: true})
	to := []string{"x@example.net"}
	cases := []struct {
		name     string
		p        *peer
		settings endpoint.Settings
		want     string // "" for delivered
		mode     string // the ModeError's Want
	}{
		{"starttls, the default, on port 465", implicit, endpoint.Settings{Options: tlsOpts(implicit)},
			`the server speaks TLS at once, with no greeting in plain text: set tls = "implicit" (tls = "starttls" is for port 587)`, "implicit"},
		{"none on port 465", implicit, endpoint.Settings{TLS: "none"},
			`the server speaks TLS at once, with no greeting in plain text: set tls = "implicit"`, "implicit"},
		{"implicit on port 465", implicit, endpoint.Settings{TLS: "implicit", Options: tlsOpts(implicit)}, "", ""},
		{"implicit on port 587", plain, endpoint.Settings{TLS: "implicit"},
			`the server greets in plain text ("220 p…"), not in TLS: set tls = "starttls" (tls = "implicit" is for port 465)`, "starttls"},
		{"starttls to an unknown CA", starttls, endpoint.Settings{Options: tlsconf.Options{}},
			"smtp STARTTLS: the server's certificate is signed by an authority this machine does not trust", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.settings
			s.Address = c.p.addr
			err := deliverWithin(t, newOutput(t, &smtp.Output{Settings: s, To: to}))
			if c.want == "" {
				if err != nil || len(c.p.received()) != 1 {
					t.Fatalf("%d received, %v", len(c.p.received()), err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
			var me *endpoint.ModeError
			if c.mode != "" && (!errors.As(err, &me) || me.Want != c.mode || me.Address != c.p.addr) {
				t.Fatalf("%v is no ModeError wanting %s", err, c.mode)
			}
			if plugin.IsPermanent(err) {
				t.Fatal("a connection that failed must leave the message to be retried, not quarantine it")
			}
		})
	}
}
