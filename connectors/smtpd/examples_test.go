package smtpd

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/scripts"
)

// The example scripts do what their comments say, on mail as the smtp
// input hands it over (envelope and client).
func TestExampleScripts(t *testing.T) {
	received := func(body string, rcpts []string, client message.Client) *message.Message {
		m := message.New([]byte(body), message.Source{Input: "mx", ID: "1"})
		m.Received = &message.Received{Sender: "someone@sender.example", Recipients: rcpts, Client: client}
		m.Envelope = m.Received.Envelope()
		t.Cleanup(func() { m.Close() })
		return m
	}
	load := func(path string, limits plugin.ScriptLimits) *scripts.Script {
		s, err := scripts.Load(filepath.Join("..", "..", "examples", path), limits)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	outside := message.Client{Address: "203.0.113.9", Helo: "mx.sender.example", Protocol: "ESMTP", Forwarded: true}

	t.Run("content-filter", func(t *testing.T) {
		s := load("content-filter/filter.lua", plugin.ScriptLimits{Timeout: 5 * time.Second})
		m := received("From: Boss <boss@example.org>\r\nTo: staff@example.org\r\nSubject: pay this\r\n\r\nurgent\r\n", []string{"staff@example.org"}, outside)
		v, err := s.Filter(context.Background(), m)
		if err != nil || v.Action != plugin.ActionKeep {
			t.Fatalf("%+v %v", v, err)
		}
		if m.Header.Get("Subject") != "[external] pay this" || m.Header.Get("X-Filtered-By") != "mailflow (203.0.113.9)" {
			t.Fatalf("header: %q %q", m.Header.Get("Subject"), m.Header.Get("X-Filtered-By"))
		}
		exe := "From: x@sender.example\r\nTo: a@example.org\r\nSubject: invoice\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n\r\nMZ\r\n--b--\r\n"
		v, err = s.Filter(context.Background(), received(exe, []string{"a@example.org"}, outside))
		if err != nil || v.Action != plugin.ActionReject || !strings.Contains(v.Reason, ".exe") {
			t.Fatalf("an .exe attachment: %+v %v", v, err)
		}
	})

	t.Run("receive-and-forward", func(t *testing.T) {
		s := load("receive-and-forward/forward.lua", plugin.ScriptLimits{Timeout: 5 * time.Second, SRSSecrets: []string{"a test secret of sixteen+"}})
		body := "From: someone@sender.example\r\nTo: team@example.org\r\nSubject: hello\r\n\r\nhi\r\n"
		m := received(body, []string{"team@example.org", "alice+news@example.org"}, outside)
		v, err := s.Filter(context.Background(), m)
		if err != nil || v.Action != plugin.ActionRoute || !slices.Equal(v.Outputs, []string{"out"}) {
			t.Fatalf("%+v %v", v, err)
		}
		want := []string{"alice.smith@mail.example.net", "bob@isp.example"}
		if !slices.Equal(m.Envelope.Recipients, want) {
			t.Fatalf("forwarded to %v, want %v", m.Envelope.Recipients, want)
		}
		v, err = s.Filter(context.Background(), received(body, []string{"nobody@example.org"}, outside))
		if err != nil || v.Action != plugin.ActionReject || !strings.Contains(v.Reason, "5.1.1 <nobody@example.org>: no such user here") {
			t.Fatalf("an unknown address: %+v %v", v, err)
		}
	})
}
