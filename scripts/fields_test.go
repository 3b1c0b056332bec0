package scripts

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A header value is folded at its spaces; what cannot be folded into
// RFC 5322's 998-octet lines, or would take the header past the
// max_header_size the message was read under, is refused: the script
// fails, and the message is kept as it was (and quarantined by the
// engine). The script sent a single 52,428,807-byte line.
func TestHeaderValuesBeyondTheLimitsAreRefused(t *testing.T) {
	read := func(t *testing.T, maxHeader int64) *message.Message {
		t.Helper()
		m, err := message.Read(strings.NewReader("Subject: hi\r\nTo: a@example.net\r\n\r\nbody\r\n"),
			message.Source{Input: "in", ID: "1"}, message.SpoolOptions{MaxHeader: maxHeader})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		name, call string
		maxHeader  int64
		want       string // in the error; "" when the call must succeed
	}{
		{"50 MB without a space", `msg:set_header("X", string.rep("a", 50 * 1024 * 1024))`, 0, "998 octets"},
		{"a word longer than a line", `msg:set_header("X", "a " .. string.rep("b", 1000) .. " c")`, 0, "998 octets"},
		{"add as well as set", `msg:add_header("X", string.rep("a", 999))`, 0, "998 octets"},
		{"a name longer than a line", `msg:set_header(string.rep("N", 1000), "v")`, 0, "998 octets"},
		{"50 MB with spaces: over 16 MB", `msg:set_header("X", string.rep("a ", 25 * 1024 * 1024))`, 0, "max_header_size"},
		{"over the message's own max_header_size", `msg:set_header("X", string.rep("word ", 20000))`, 64 << 10, "max_header_size"},
		{"added over it", `msg:add_header("X", string.rep("word ", 20000))`, 64 << 10, "max_header_size"},
		{"folded within it", `msg:set_header("X", string.rep("word ", 10000))`, 64 << 10, ""},
		{"non-ASCII, encoded and folded", `msg:set_header("X", string.rep("Grüße ", 2000))`, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The 50 MB values take a while under -race: the bound here is
			// memory, not time.
			s := load(t, "function filter(msg)\n  "+c.call+"\nend", plugin.ScriptLimits{MaxMemory: 64 << 20, Timeout: time.Minute})
			m := read(t, c.maxHeader)
			_, err := s.Filter(context.Background(), m)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err = %v, want it to say %q", err, c.want)
				}
				if m.HeaderChanged() || m.Header.Has("X") {
					t.Fatal("the refused field was set anyway")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			m.WriteTo(&out)
			for _, line := range strings.Split(out.String(), "\r\n") {
				if len(line) > 998 {
					t.Fatalf("a header line of %d octets was written", len(line))
				}
			}
			if c.maxHeader > 0 && int64(bytes.Index(out.Bytes(), []byte("\r\n\r\n"))) > c.maxHeader {
				t.Fatalf("a header of %d bytes, over max_header_size", bytes.Index(out.Bytes(), []byte("\r\n\r\n")))
			}
		})
	}
}

// RFC 5322 allows one Subject, From, To, Date, Message-ID and the like:
// add_header refuses a second (set_header replaces), and adds one that is
// missing. Fields that may repeat (trace fields, X-*) are added as before.
func TestSingleFieldsAreNotAddedTwice(t *testing.T) {
	s := load(t, `function filter(msg)
  if msg.id == "repeatable" then
    msg:add_header("Received", "from a by b")
    msg:add_header("X-Tag", "one")
    msg:add_header("X-Tag", "two")
    return
  end
  msg:add_header(msg.id, "added")
end`, plugin.ScriptLimits{})
	for _, name := range []string{"Subject", "from", "To", "Cc", "Date", "Message-ID", "Reply-To", "Sender", "Bcc", "In-Reply-To", "References"} {
		m := message.New([]byte(name+": old\r\n\r\nbody\r\n"), message.Source{Input: "in", ID: name})
		_, err := s.Filter(context.Background(), m)
		if err == nil || !strings.Contains(err.Error(), "use set_header") {
			t.Errorf("a second %s: err = %v", name, err)
		}
		if got := m.Header.Values(name); len(got) != 1 || got[0] != "old" {
			t.Errorf("%s is now %q", name, got)
		}
		m = message.New([]byte("X-Other: 1\r\n\r\nbody\r\n"), message.Source{Input: "in", ID: name})
		if _, err := s.Filter(context.Background(), m); err != nil || m.Header.Get(name) != "added" {
			t.Errorf("a missing %s was not added: %v", name, err)
		}
	}
	m := message.New([]byte("Received: from x by y\r\nX-Tag: zero\r\n\r\nbody\r\n"), message.Source{Input: "in", ID: "repeatable"})
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if n, tags := len(m.Header.Values("Received")), m.Header.Values("X-Tag"); n != 2 || len(tags) != 3 {
		t.Errorf("%d Received, X-Tag %q", n, tags)
	}
}

// The same recipient given twice is sent RCPT TO once: the issue's
// redirect("a@b", "a@b", "a@b") sent it three times. The domain compares
// without case, the local part exactly (RFC 5321 2.4).
func TestRecipientsAreNotRepeated(t *testing.T) {
	s := load(t, `function filter(msg)
  if msg.id == "set" then
    msg:set_recipients({"a@b.example", "a@B.EXAMPLE", "A@b.example", "a@b.example", "c@d.example"})
    return
  end
  return redirect("a@b.example", "a@b.example", "a@b.example", "a@B.example", "A@b.example")
end`, plugin.ScriptLimits{})
	v, err := s.Filter(context.Background(), mailWith("redirect", "Subject: x"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(v.Recipients, " "); got != "a@b.example A@b.example" {
		t.Errorf("redirect to %q", got)
	}
	m := mailWith("set", "Subject: x")
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Envelope.Recipients, " "); got != "a@b.example A@b.example c@d.example" {
		t.Errorf("set_recipients gave %q", got)
	}
}
