package smtp_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
	"github.com/mailflow/mailflow/engine"
)

func newFake(t *testing.T, f func(*smtptest.Behaviour)) *smtptest.Server {
	t.Helper()
	s, err := smtptest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if f != nil {
		s.Set(f)
	}
	return s
}

// RCPT answered 251 ("not local; will forward") is a success, pipelined
// or not: the message is sent once, and a retry does not send it again.
func TestRcpt251IsAccepted(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			s := newFake(t, func(b *smtptest.Behaviour) {
				b.RcptReply = map[string]string{"fwd@x.test": "251 2.1.5 user not local; will forward"}
			})
			o := newOutput(t, &smtp.Output{Address: s.Addr(), TLS: "none", To: []string{"fwd@x.test"}, Pipelining: &pipelining})
			res, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n"))
			if err != nil || len(res) != 1 || res[0].Err != nil {
				t.Fatalf("251 must count as accepted: %v %v", res, err)
			}
			if m := s.Mails(); len(m) != 1 || string(m[0].Raw) != "Subject: x\r\n\r\nbody\r\n" {
				t.Fatalf("server has %+v", m)
			}
		})
	}
}

// The reply after the final dot never comes: the output says in doubt
// (temporary), and does not silently try again itself.
func TestReplyLostAfterDataIsInDoubt(t *testing.T) {
	s := newFake(t, func(b *smtptest.Behaviour) { b.LoseReplies = 1 })
	o := newOutput(t, &smtp.Output{Address: s.Addr(), TLS: "none", To: []string{"a@x.test"}})
	_, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n"))
	if !engine.IsInDoubt(err) || engine.IsPermanent(err) {
		t.Fatalf("want an in-doubt, temporary error; got %v", err)
	}
	if n := len(s.Mails()); n != 1 {
		t.Fatalf("the output retried by itself: %d copies", n)
	}
}

// No bare CR or LF reaches the wire, and no "." line but the terminator:
// the SMTP smuggling patterns arrive as data.
func TestBareCRAndLFAreNormalisedOnTheWire(t *testing.T) {
	s := newFake(t, nil)
	o := newOutput(t, &smtp.Output{Address: s.Addr(), TLS: "none", To: []string{"a@x.test"}})
	body := "Subject: smuggle\r\n\r\na\r.\r\nMAIL FROM:<evil@x.test>\r\nb\n.\nc\r\n.\rd"
	if _, err := deliver(o, []byte(body)); err != nil {
		t.Fatal(err)
	}
	m := s.Mails()
	want := "Subject: smuggle\r\n\r\na\r\n..\r\nMAIL FROM:<evil@x.test>\r\nb\r\n..\r\nc\r\n..\r\nd\r\n"
	if len(m) != 1 || string(m[0].Raw) != want {
		t.Fatalf("on the wire:\n%q\nwant\n%q", m[0].Raw, want)
	}
	raw := m[0].Raw
	for i, c := range raw {
		if c == '\r' && (i+1 == len(raw) || raw[i+1] != '\n') || c == '\n' && (i == 0 || raw[i-1] != '\r') {
			t.Fatalf("bare line end at %d", i)
		}
	}
}

// A content filter that takes longer than the command timeout to answer
// after the data is waited for (data_timeout, default 10 minutes), so the
// message is accepted once. Scaled down: a 3 s reply against a 1 s
// command timeout.
func TestSlowReplyAfterDataIsWaitedFor(t *testing.T) {
	s := newFake(t, func(b *smtptest.Behaviour) { b.DataDelay = 3 * time.Second })
	o := newOutput(t, &smtp.Output{Address: s.Addr(), TLS: "none", To: []string{"a@x.test"}, Timeout: "1s"})
	if _, err := deliver(o, []byte("Subject: slow\r\n\r\nbody\r\n")); err != nil {
		t.Fatalf("the reply after the data must get data_timeout, not timeout: %v", err)
	}
	if n := len(s.Mails()); n != 1 {
		t.Fatalf("%d copies", n)
	}
	// And data_timeout bounds it.
	o2 := newOutput(t, &smtp.Output{Address: s.Addr(), TLS: "none", To: []string{"a@x.test"}, Timeout: "1s", DataTimeout: "1s"})
	if _, err := deliver(o2, []byte("Subject: slow\r\n\r\nbody\r\n")); !engine.IsInDoubt(err) {
		t.Fatalf("past data_timeout the delivery is in doubt: %v", err)
	}
}

// A relay that stops offering STARTTLS or AUTH is in trouble of its own:
// temporary, so messages wait at their source; nothing goes in clear.
func TestStartTLSOrAuthVanishingIsTemporary(t *testing.T) {
	cases := map[string]*smtp.Output{
		"STARTTLS": {TLS: "starttls"},
		"AUTH":     {TLS: "none", Username: "u", Password: "p", AllowPlaintextAuth: true},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			s := newFake(t, nil) // offers neither
			o.Address, o.To = s.Addr(), []string{"a@x.test"}
			o = newOutput(t, o)
			_, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n"))
			if err == nil || engine.IsPermanent(err) || !strings.Contains(err.Error(), name) {
				t.Fatalf("want a temporary error naming %s, got %v", name, err)
			}
			if n := len(s.Mails()); n != 0 {
				t.Fatal("a message went out")
			}
		})
	}
}

func TestRawBytesKeptWhereNothingIsBare(t *testing.T) {
	s := newFake(t, nil)
	o := newOutput(t, &smtp.Output{Address: s.Addr(), TLS: "none", To: []string{"a@x.test"}})
	body := []byte("Subject: ok\r\n\r\n.leading dot\r\nlast")
	if _, err := deliver(o, body); err != nil {
		t.Fatal(err)
	}
	if got := s.Mails()[0].Raw; !bytes.Equal(got, []byte("Subject: ok\r\n\r\n..leading dot\r\nlast\r\n")) {
		t.Fatalf("%q", got)
	}
}
