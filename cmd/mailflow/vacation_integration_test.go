//go:build integration

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// sinkWith returns the messages in Postfix's sink that contain marker,
// waiting up to wait for at least want of them.
func sinkWith(dir, marker string, want int, wait time.Duration) [][]byte {
	deadline := time.Now().Add(wait)
	for {
		var out [][]byte
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
				if err == nil && bytes.Contains(b, []byte(marker)) {
					out = append(out, b)
				}
			}
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vacation.lua in a real run: three messages from one sender over two runs
// of mailflow (a restart between them) get one reply, which reaches
// Postfix with MAIL FROM:<> (virtual(8) writes it as Return-Path: <>);
// a list message, an auto-reply and a bounce get none; every message is
// delivered to its own output and leaves the source.
func TestVacationRepliesOnceThroughPostfix(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("vac%d", os.Getpid())
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	bob := "bob-" + run + "@x.test"
	msg := func(n int, extra string) []byte {
		return fmt.Appendf(nil, "%sTo: Alice <alice@example.org>\r\nSubject: note %d\r\nMessage-ID: <m%d-%s@x.test>\r\n\r\nHello %d.\r\n", extra, n, n, run, n)
	}
	if err := enginetest.WriteMaildir(src, [][]byte{msg(1, "From: Bob <"+bob+">\r\n")}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "vacation.lua"), fmt.Appendf(nil, `function filter(msg)
  vacation{output = "postfix", from = "Alice <alice@example.org>", subject = "Away %s", text = "I am away.", days = 7}
  return keep()
end
`, run), 0o600)
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `state_dir = "state"
[[input]]
name = "src"
type = "maildir"
path = "src"
pipeline = "main"
[[pipeline]]
name = "main"
scripts = ["vacation.lua"]
outputs = ["archive"]
[[output]]
name = "archive"
type = "maildir"
path = "archive"
[[output]]
name = "postfix"
type = "smtp"
address = %q
tls = "starttls"
tls_ca_file = %q
`, srv.SMTP, srv.CA), 0o600)
	once := func() {
		r := mailflow(t, "run", "--once", "-c", conf)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		t.Logf("summary: %s", strings.TrimSpace(r.stdout))
	}
	once()
	// Restart, with two more from Bob and three that must not be answered.
	enginetest.WriteMaildir(src, [][]byte{
		msg(2, "From: Bob <"+bob+">\r\n"),
		msg(3, "From: "+bob+"\r\n"),
		msg(4, "From: news-"+run+"@lists.x.test\r\nList-Id: <news.x.test>\r\n"),
		msg(5, "From: carol-"+run+"@x.test\r\nAuto-Submitted: auto-replied\r\n"),
		msg(6, "Return-Path: <>\r\nFrom: MAILER-DAEMON@x.test\r\n"),
	})
	once()

	replies := sinkWith(srv.SinkDir, "Subject: Away "+run, 1, 60*time.Second)
	time.Sleep(2 * time.Second) // a second reply would arrive by now
	replies = sinkWith(srv.SinkDir, "Subject: Away "+run, 1, 0)
	if len(replies) != 1 {
		t.Fatalf("%d replies arrived, want 1", len(replies))
	}
	r := string(replies[0])
	for _, want := range []string{"Return-Path: <>", "Auto-Submitted: auto-replied", "In-Reply-To: <m1-" + run + "@x.test>", "To: " + bob} {
		if !strings.Contains(r, want) {
			t.Errorf("the reply lacks %q:\n%s", want, r)
		}
	}
	archived, _ := enginetest.ReadMaildir(filepath.Join(dir, "archive"))
	left, _ := enginetest.ReadMaildir(src)
	if len(archived) != 6 || len(left) != 0 {
		t.Fatalf("%d archived, %d left at the source", len(archived), len(left))
	}
	t.Logf("6 messages archived, 1 reply at Postfix's sink:\n%s", strings.SplitN(r, "\n\n", 2)[0])
}
