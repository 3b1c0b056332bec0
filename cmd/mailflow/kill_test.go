package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// mailflow run --once, POP3 → Maildir, is killed with SIGKILL at ten
// random points; a last run finishes. Every message is in the Maildir
// exactly once and the mailbox is empty: the ledger, not the session,
// carries what was delivered across the kills (no session got to QUIT).
func TestPOP3ToMaildirKilledTenTimes(t *testing.T) {
	srv, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	msgs := enginetest.CRLF(enginetest.Mix(1000))
	srv.Add(msgs...)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `state_dir = "state"
[[input]]
name = "pop"
type = "pop3"
address = %q
tls = "none"
allow_plaintext_auth = true
username = "u"
password = "p"
pipeline = "main"
[[pipeline]]
name = "main"
outputs = ["dst"]
[[output]]
name = "dst"
type = "maildir"
path = "dst"
`, srv.Addr()), 0o600)
	dst := filepath.Join(dir, "dst", "new")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	for round := range 10 {
		before, _ := os.ReadDir(dst)
		target := len(before) + 1 + rng.IntN(90)
		cmd := exec.Command(binary, "run", "--once", "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		deadline := time.After(60 * time.Second)
	wait:
		for {
			select {
			case <-exited:
				break wait
			case <-deadline:
				break wait
			case <-time.After(time.Millisecond):
				if ents, _ := os.ReadDir(dst); len(ents) >= target {
					break wait
				}
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		after, _ := os.ReadDir(dst)
		t.Logf("round %d: killed at %d delivered (aimed at %d); %d left on the server", round, len(after), target, len(srv.Messages()))
	}
	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 {
		t.Fatalf("final run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got, err := enginetest.ReadMaildir(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	assertSameMessages(t, msgs, got)
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages left on the server", n)
	}
}
