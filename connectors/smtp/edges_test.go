package smtp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	gomessage "github.com/emersion/go-message"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
	"github.com/mailflow/mailflow/engine/message"
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
			o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"fwd@x.test"}, Pipelining: &pipelining})
			res, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n"))
			if err != nil || len(res) != 1 || res[0].Err != nil {
				t.Fatalf("251 must count as accepted: %v %v", res, err)
			}
			if m := s.Mails(); len(m) != 1 || string(m[0].Untraced()) != "Subject: x\r\n\r\nbody\r\n" {
				t.Fatalf("server has %+v", m)
			}
		})
	}
}

// The reply after the final dot never comes: the output says in doubt
// (temporary), and does not silently try again itself.
func TestReplyLostAfterDataIsInDoubt(t *testing.T) {
	s := newFake(t, func(b *smtptest.Behaviour) { b.LoseReplies = 1 })
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}})
	_, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n"))
	if !plugin.IsInDoubt(err) || plugin.IsPermanent(err) {
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
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}})
	body := "Subject: smuggle\r\n\r\na\r.\r\nMAIL FROM:<evil@x.test>\r\nb\n.\nc\r\n.\rd"
	if _, err := deliver(o, []byte(body)); err != nil {
		t.Fatal(err)
	}
	m := s.Mails()
	want := "Subject: smuggle\r\n\r\na\r\n..\r\nMAIL FROM:<evil@x.test>\r\nb\r\n..\r\nc\r\n..\r\nd\r\n"
	if len(m) != 1 || string(m[0].Untraced()) != want {
		t.Fatalf("on the wire:\n%q\nwant\n%q", m[0].Untraced(), want)
	}
	raw := m[0].Untraced()
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
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none", Timeout: "1s"}, To: []string{"a@x.test"}})
	if _, err := deliver(o, []byte("Subject: slow\r\n\r\nbody\r\n")); err != nil {
		t.Fatalf("the reply after the data must get data_timeout, not timeout: %v", err)
	}
	if n := len(s.Mails()); n != 1 {
		t.Fatalf("%d copies", n)
	}
	// And data_timeout bounds it.
	o2 := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none", Timeout: "1s"}, To: []string{"a@x.test"}, DataTimeout: "1s"})
	if _, err := deliver(o2, []byte("Subject: slow\r\n\r\nbody\r\n")); !plugin.IsInDoubt(err) {
		t.Fatalf("past data_timeout the delivery is in doubt: %v", err)
	}
}

// A relay that stops offering STARTTLS or AUTH is in trouble of its own:
// temporary, so messages wait at their source; nothing goes in clear.
func TestStartTLSOrAuthVanishingIsTemporary(t *testing.T) {
	cases := map[string]*smtp.Output{
		"STARTTLS": {Settings: endpoint.Settings{TLS: "starttls"}},
		"AUTH":     {Settings: endpoint.Settings{TLS: "none", Username: "u", Password: "p", AllowPlaintextAuth: true}},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			s := newFake(t, nil) // offers neither
			o.Address, o.To = s.Addr(), []string{"a@x.test"}
			o = newOutput(t, o)
			_, err := deliver(o, []byte("Subject: x\r\n\r\nbody\r\n"))
			if err == nil || plugin.IsPermanent(err) || !strings.Contains(err.Error(), name) {
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
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}})
	body := []byte("Subject: ok\r\n\r\n.leading dot\r\nlast")
	if _, err := deliver(o, body); err != nil {
		t.Fatal(err)
	}
	if got := s.Mails()[0].Untraced(); !bytes.Equal(got, []byte("Subject: ok\r\n\r\n..leading dot\r\nlast\r\n")) {
		t.Fatalf("%q", got)
	}
}

// An 8-bit message to a server without 8BITMIME arrives as 7-bit MIME
// whose decoded content equals the original, structure kept.
func TestEightBitConvertedForServerWithout8BITMIME(t *testing.T) {
	s := newFake(t, func(b *smtptest.Behaviour) { b.Extensions = []string{"PIPELINING"} })
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}})
	text := "Grüße aus Köln — naïve café\r\nzweite Zeile ünd mehr\r\n"
	blob := []byte{0x00, 0xff, 0x80, 'a', '\r', '\n', 0xfe, 0x01}
	plain := "From: a@x.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text
	multi := "From: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + string(blob) + "\r\n--XX\r\nContent-Type: text/plain\r\n\r\nplain ascii part\r\n--XX--\r\nepilogue\r\n"
	for i, raw := range []string{plain, multi} {
		if _, err := deliver(o, []byte(raw)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	got := s.Mails()
	if len(got) != 2 {
		t.Fatalf("%d received", len(got))
	}
	for i, m := range got {
		for _, c := range m.Untraced() {
			if c >= 0x80 {
				t.Fatalf("message %d: an 8-bit byte on the wire to a server without 8BITMIME", i)
			}
		}
	}
	parts := decodedParts(t, got[0].Untraced())
	if len(parts) != 1 || parts[0] != text {
		t.Fatalf("text/plain: %q", parts)
	}
	parts = decodedParts(t, got[1].Untraced())
	if len(parts) != 3 || parts[0] != text || parts[1] != string(blob) || parts[2] != "plain ascii part" {
		t.Fatalf("multipart: %q", parts)
	}
	if !bytes.Contains(got[1].Untraced(), []byte("preamble\r\n--XX\r\n")) || !bytes.Contains(got[1].Untraced(), []byte("--XX--\r\nepilogue")) {
		t.Fatal("the multipart structure changed")
	}
	// Refused: on request, and where it cannot be converted without guessing.
	latin1Header := "From: a@x.test\r\nSubject: caf\xe9\r\n\r\nbody caf\xe9\r\n"
	if _, err := deliver(o, []byte(latin1Header)); !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "header") {
		t.Fatalf("an 8-bit header cannot become 7-bit: %v", err)
	}
	refusing := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}, EightBit: "refuse"})
	if _, err := deliver(refusing, []byte(plain)); !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "8BITMIME") {
		t.Fatalf("eight_bit = refuse: %v", err)
	}
}

// With 8BITMIME and no SMTPUTF8, a raw Latin-1 header goes as legacy 8-bit
// data (as Postfix relays it), not refused for want of SMTPUTF8.
func TestLegacyEightBitHeaderNeedsNoSMTPUTF8(t *testing.T) {
	s := newFake(t, nil) // PIPELINING, 8BITMIME; no SMTPUTF8
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}})
	raw := "From: a@x.test\r\nSubject: caf\xe9\r\n\r\nbody\r\n"
	if _, err := deliver(o, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	if got := s.Mails(); len(got) != 1 || string(got[0].Untraced()) != raw {
		t.Fatal("the message changed")
	}
}

// decodedParts returns each leaf part's decoded body, as a reader of the
// mail would see it.
func decodedParts(t *testing.T, raw []byte) []string {
	t.Helper()
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = ent.Walk(func(_ []int, part *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		if mr := part.MultipartReader(); mr != nil {
			return nil
		}
		b, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		out = append(out, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Lines that are no header field inside a header (a ": value", a line
// without a colon) go out where they were when another field is edited.
func TestEditedHeaderKeepsMalformedLinesOnTheWire(t *testing.T) {
	s := newFake(t, nil)
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}})
	raw := "From: a@x.test\r\n: value without a name\r\nno colon in this line\r\nSubject: old\r\n\r\nbody\r\n"
	msg := message.New([]byte(raw), message.Source{Input: "t", ID: "1"})
	msg.Header.Set("Subject", "new")
	msg.MarkHeaderChanged()
	if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(raw, "Subject: old", "Subject: new", 1)
	if got := s.Mails(); len(got) != 1 || string(got[0].Untraced()) != want {
		t.Fatalf("on the wire:\n%q\nwant\n%q", got[0].Untraced(), want)
	}
}

// The null sender of a bounce or an auto-reply, set by a script or
// arriving as Return-Path: <>, goes out as MAIL FROM:<> even where the
// output has a from of its own: a bounce must never be answered.
func TestNullSenderIsNeverReplaced(t *testing.T) {
	s := newFake(t, nil)
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: s.Addr(), TLS: "none"}, To: []string{"a@x.test"}, From: "forwarder@x.test"})
	bounce := message.New([]byte("Return-Path: <>\r\nFrom: MAILER-DAEMON@x.test\r\nSubject: failure notice\r\n\r\nbody\r\n"), message.Source{Input: "t", ID: "1"})
	reply := message.New([]byte("From: me@x.test\r\nSubject: away\r\n\r\nbody\r\n"), message.Source{Input: "t", ID: "2"})
	reply.Envelope.Sender = message.NullSender
	plain := message.New([]byte("From: someone@x.test\r\nSubject: hi\r\n\r\nbody\r\n"), message.Source{Input: "t", ID: "3"})
	for _, m := range []*message.Message{bounce, reply, plain} {
		if _, err := o.Deliver(context.Background(), m, plugin.Delivery{Key: m.Source.ID}); err != nil {
			t.Fatal(err)
		}
	}
	got := s.Mails()
	if len(got) != 3 || got[0].From != "" || got[1].From != "" || got[2].From != "forwarder@x.test" {
		t.Fatalf("MAIL FROM: %q %q %q", got[0].From, got[1].From, got[2].From)
	}
}
