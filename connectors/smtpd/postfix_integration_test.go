//go:build integration

package smtpd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	_ "github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// realPostfix is the testenv's Postfix, with the two ports these tests add
// (.ci/testenv): FILTER hands its mail to a content filter at FILTER_TO,
// LMTP delivers its mail over LMTP to LMTP_TO.
func realPostfix(t *testing.T) (srv *enginetest.Servers, filterIn, filterTo, lmtpIn, lmtpTo string) {
	srv = enginetest.RealServers(t)
	filterIn, filterTo = os.Getenv("MAILFLOW_TEST_FILTER_SMTP"), os.Getenv("MAILFLOW_TEST_FILTER_TO")
	lmtpIn, lmtpTo = os.Getenv("MAILFLOW_TEST_LMTP_SMTP"), os.Getenv("MAILFLOW_TEST_LMTP_TO")
	if filterIn == "" || lmtpIn == "" {
		const how = "the testenv running is older than its content-filter and LMTP ports: .ci/testenv stop, then start it again"
		if os.Getenv("CI") != "" {
			t.Fatal(how)
		}
		t.Skip(how)
	}
	return
}

// runMailflow runs mailflow on conf (its input named "in"), in this
// process, with files (name → content) beside its config.
func runMailflow(t *testing.T, conf string, files map[string]string) *rig {
	r := &rig{t: t, out: &memOut{}, dir: t.TempDir(), log: &syncBuffer{}}
	r.state = filepath.Join(r.dir, "state")
	for name, content := range files {
		os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o600)
	}
	path := filepath.Join(r.dir, "mailflow.toml")
	os.WriteFile(path, []byte(fmt.Sprintf("state_dir = %q\n", r.state)+conf), 0o600)
	r.start(path)
	return r
}

// sinkWhere returns the sink's messages that hold every one of needles.
func sinkWhere(dir string, needles ...string) [][]byte {
	var out [][]byte
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				continue
			}
			all := true
			for _, n := range needles {
				all = all && bytes.Contains(b, []byte(n))
			}
			if all {
				out = append(out, b)
			}
		}
	}
	return out
}

// waitSink waits (at most 90 s) until sinkWhere finds want messages.
func waitSink(t *testing.T, dir string, want int, needles ...string) [][]byte {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := sinkWhere(dir, needles...)
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Postfix with content_filter = mailflow-filter:[127.0.0.1]:PORT hands
// every message to mailflow (answer = "after_delivery"), whose script
// stamps it and whose smtp output re-injects it into Postfix on a port
// without the filter: 200 messages arrive in the sink once each, stamped
// with the original client (XFORWARD). One the script rejects is answered
// 550 to Postfix, which bounces it to its sender; nothing of it is
// delivered, and mailflow keeps no copy.
func TestPostfixContentFilter(t *testing.T) {
	srv, filterIn, filterTo, _, _ := realPostfix(t)
	run := fmt.Sprintf("cf-%d", time.Now().UnixNano())
	r := runMailflow(t, fmt.Sprintf(`
[[input]]
name = "in"
type = "smtp"
pipeline = "p"
address = %q
answer = "after_delivery"
[[pipeline]]
name = "p"
scripts = ["filter.lua"]
outputs = ["postfix"]
[[output]]
name = "postfix"
type = "smtp"
address = %q
tls = "none"
`, filterTo, srv.SMTP), map[string]string{"filter.lua": `
function filter(msg)
	if (msg:header("Subject") or ""):find("REJECT", 1, true) then
		return reject("5.7.1 refused by the content filter")
	end
	local c = msg.client
	msg:add_header("X-Filtered", "mailflow; helo=" .. (c.helo or "?") .. "; forwarded=" .. tostring(c.forwarded))
end`})

	c, err := smtp.Dial(filterIn)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("cf-client.example"); err != nil {
		t.Fatal(err)
	}
	sender := "sender-" + run + "@example.org"
	send := func(subject string) {
		body := fmt.Sprintf("X-Test-Run: %s\r\nFrom: %s\r\nTo: rcpt@example.net\r\nSubject: %s\r\nMessage-ID: <%s@%s>\r\n\r\nfiltered mail\r\n",
			run, sender, subject, strings.ReplaceAll(subject, " ", "."), run)
		if err := c.SendMail(sender, []string{"rcpt@example.net"}, strings.NewReader(body)); err != nil {
			t.Fatalf("submitting %q to Postfix: %v", subject, err)
		}
	}
	for i := range 200 {
		send(fmt.Sprintf("cf %d", i))
	}
	send("REJECT " + run)
	c.Quit()

	got := waitSink(t, srv.SinkDir, 200, "X-Test-Run: "+run+"\n", "X-Filtered: ")
	seen := map[string]int{}
	subj := regexp.MustCompile(`(?m)^Subject: (cf \d+)$`)
	for _, m := range got {
		if !bytes.Contains(m, []byte("X-Filtered: mailflow; helo=cf-client.example; forwarded=true\n")) {
			t.Fatalf("not stamped with the original client:\n%s", m)
		}
		if s := subj.FindSubmatch(m); s != nil {
			seen[string(s[1])]++
		}
	}
	for i := range 200 {
		if n := seen[fmt.Sprintf("cf %d", i)]; n != 1 {
			t.Errorf("message cf %d arrived %d times", i, n)
		}
	}
	if len(got) != 200 {
		t.Errorf("%d filtered messages in the sink, want 200 (the rejected one must not be delivered)", len(got))
	}
	bounce := waitSink(t, srv.SinkDir, 1, "To: "+sender, "Subject: REJECT "+run, "refused by the content filter")
	if len(bounce) != 1 {
		t.Fatalf("no bounce to the sender of the rejected message (%d)", len(bounce))
	}
	if entries, _ := r.e.Quarantine.List(); len(entries) != 0 {
		t.Errorf("mailflow kept %d messages in its quarantine", len(entries))
	}
	r.waitSpoolEmpty()
	t.Logf("200 messages filtered and re-injected once each; the rejected one bounced to %s", sender)
}

// Postfix delivers a message with three recipients over LMTP to mailflow
// (answer = "after_delivery"), whose smtp output hands it on to Postfix's
// port 25, which refuses refuse@example.net (550 5.1.1): mailflow answers
// per recipient (RFC 2033), so Postfix delivers the two others and
// bounces that one, as its log and the sink show.
func TestPostfixLMTP(t *testing.T) {
	srv, _, _, lmtpIn, lmtpTo := realPostfix(t)
	run := fmt.Sprintf("lmtp-%d", time.Now().UnixNano())
	r := runMailflow(t, fmt.Sprintf(`
[[input]]
name = "in"
type = "lmtp"
pipeline = "p"
address = %q
answer = "after_delivery"
[[pipeline]]
name = "p"
outputs = ["postfix"]
[[output]]
name = "postfix"
type = "smtp"
address = %q
tls = "none"
`, lmtpTo, srv.SMTP), nil)
	sender := "sender-" + run + "@example.org"
	rcpts := []string{"a-" + run + "@example.net", "refuse@example.net", "b-" + run + "@example.net"}
	body := fmt.Sprintf("X-Test-Run: %s\r\nFrom: %s\r\nTo: %s\r\nSubject: three recipients %s\r\nMessage-ID: <three@%s>\r\n\r\nfor three\r\n",
		run, sender, strings.Join(rcpts, ", "), run, run)
	c, err := smtp.Dial(lmtpIn)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(sender, rcpts, strings.NewReader(body)); err != nil {
		t.Fatalf("submitting to Postfix: %v", err)
	}
	c.Quit()

	for _, rc := range []string{rcpts[0], rcpts[2]} {
		if got := waitSink(t, srv.SinkDir, 1, "Delivered-To: "+rc+"\n", "Subject: three recipients "+run+"\n"); len(got) != 1 {
			t.Fatalf("%d copies delivered to %s, want 1", len(got), rc)
		}
	}
	bounce := waitSink(t, srv.SinkDir, 1, "To: "+sender, "refuse@example.net", "no such user here")
	if len(bounce) != 1 {
		t.Fatalf("no bounce for refuse@example.net")
	}
	// Postfix's own account of the LMTP delivery, recipient by recipient.
	maillog := filepath.Join(filepath.Dir(os.Getenv("MAILFLOW_TEST_POSTFIX_CONF")), "maillog")
	lmtpPort := lmtpTo[strings.LastIndexByte(lmtpTo, ':')+1:]
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(maillog)
		// The queue id of this run's message names its lines.
		queueID := regexp.MustCompile(`postfix/lmtp\[\d+\]: ([0-9A-F]+): to=<` + regexp.QuoteMeta(rcpts[0]) + `>`).FindSubmatch(b)
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if queueID != nil && strings.Contains(l, "lmtp[") && strings.Contains(l, ": "+string(queueID[1])+": to=") && strings.Contains(l, ":"+lmtpPort+",") {
				lines = append(lines, l)
			}
		}
		sent, bounced := 0, 0
		for _, l := range lines {
			switch {
			case strings.Contains(l, "status=sent") && (strings.Contains(l, rcpts[0]) || strings.Contains(l, rcpts[2])):
				sent++
			case strings.Contains(l, "status=bounced") && strings.Contains(l, "refuse@example.net") && strings.Contains(l, "550 5.1.1"):
				bounced++
			}
		}
		if sent == 2 && bounced >= 1 {
			for _, l := range lines {
				t.Log(l)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix's log does not show two recipients sent and one bounced over LMTP:\n%s", strings.Join(lines, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := sinkWhere(srv.SinkDir, "Delivered-To: refuse@example.net\n", "X-Test-Run: "+run+"\n"); len(got) != 0 {
		t.Fatal("the refused recipient got the message")
	}
	r.waitSpoolEmpty()
}
