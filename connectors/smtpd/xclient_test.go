package smtpd

import (
	"strings"
	"testing"
)

const clientScript = `
function filter(msg)
	local c = msg.client
	msg:set_header("X-Client", (c.address or "-") .. " " .. (c.name or "-") .. " " .. (c.helo or "-") .. " " .. tostring(c.forwarded))
end`

// XFORWARD from a trusted peer (Postfix in front of a content filter)
// names its own client for the next transaction: the script and the
// Received field see that client.
func TestXForward(t *testing.T) {
	r := newRig(t, "smtp", "", clientScript)
	w := r.dial()
	if ehlo := w.hello(); !strings.Contains(ehlo, "XFORWARD NAME ADDR") || !strings.Contains(ehlo, "XCLIENT") {
		t.Fatalf("EHLO to a trusted peer: %q", ehlo)
	}
	w.send("XFORWARD NAME=mx.sender.example ADDR=192.0.2.7 PROTO=ESMTP", "XFORWARD HELO=mx.sender.example SOURCE=REMOTE IDENT=4Xyz")
	w.expect(250)
	w.expect(250)
	w.send("MAIL FROM:<alice@sender.example>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	w.send("Subject: forwarded", "", "x", ".")
	w.expect(250)
	// The next transaction is the peer's own again.
	w.send("MAIL FROM:<alice@sender.example>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(250)
	w.expect(354)
	w.send("Subject: own", "", "x", ".")
	w.expect(250)
	got := r.waitFor(2)
	for _, g := range got {
		s := string(g.msg)
		switch {
		case strings.Contains(s, "Subject: forwarded"):
			if !strings.Contains(s, "X-Client: 192.0.2.7 mx.sender.example mx.sender.example true") ||
				!strings.Contains(s, "\r\nReceived: from mx.sender.example (mx.sender.example [192.0.2.7])\r\n") {
				t.Errorf("forwarded:\n%s", s)
			}
		case !strings.Contains(s, "X-Client: 127.0.0.1 - client.example.org false"):
			t.Errorf("own:\n%s", s)
		}
	}
	w.send("XFORWARD ADDR=not-an-address")
	w.expect(501)
}

// XCLIENT makes the session the client it names: greeted again, relaying
// judged on that client's address.
func TestXClient(t *testing.T) {
	r := newRig(t, "smtp", "accept_domains = [\"example.net\"]", clientScript)
	w := r.dial()
	w.hello()
	w.send("XCLIENT NAME=mx.sender.example ADDR=198.51.100.9 HELO=mx.sender.example")
	w.expect(220)
	w.send("EHLO proxy.example.org")
	if ehlo := w.expect(250); !strings.Contains(ehlo, "XCLIENT") {
		t.Fatalf("the real peer may still send XCLIENT: %q", ehlo)
	}
	w.send("MAIL FROM:<alice@sender.example>", "RCPT TO:<someone@elsewhere.example>", "RCPT TO:<bob@example.net>", "DATA")
	w.expect(250)
	w.expect(550) // 198.51.100.9 is not trusted
	w.expect(250)
	w.expect(354)
	w.send("Subject: xclient", "", "x", ".")
	w.expect(250)
	got := r.waitFor(1)[0]
	if !strings.Contains(string(got.msg), "X-Client: 198.51.100.9 mx.sender.example mx.sender.example true") {
		t.Fatalf("%s", got.msg)
	}
}
