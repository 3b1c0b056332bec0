package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/ledger"
)

// mailflow run, POP3 → Maildir polling every second while new mail keeps
// arriving, is killed with SIGKILL ten times: half of the kills when a
// random number of messages has been delivered (mid-fetch), half at a
// random moment (so some land between the ledger's record and DELE, or
// during QUIT), and the last the moment a session's deletions are seen at
// the server (on a loaded machine a random moment may never come late
// enough). A last run --once finishes. Every message is in the Maildir
// exactly once and the mailbox is empty: the ledger, not the session,
// carries what was delivered across the kills.
func TestPOP3ToMaildirKilledTenTimes(t *testing.T) {
	srv, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	all := enginetest.CRLF(enginetest.Mix(1300))
	msgs := all[:1000]
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
schedule = "1s"
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
	committed := 0 // rounds in which a session deleted mail before the kill
	for round := range 10 {
		if round > 0 {
			// New mail arrives between the kills.
			more := all[1000+30*(round-1) : 1000+30*round]
			srv.Add(more...)
			msgs = append(msgs, more...)
		}
		before, _ := os.ReadDir(dst)
		leftBefore := len(srv.Messages())
		pending := len(msgs) - len(before) // not delivered yet
		target := len(before) + 1 + rng.IntN(max(1, min(90, pending)))
		if round%2 == 1 || pending <= 0 {
			target = 1 << 30 // killed by time instead
		}
		after := time.After(time.Duration(50+rng.IntN(3000)) * time.Millisecond)
		if target < 1<<30 {
			after = nil
		}
		limit := 20 * time.Second
		if round == 9 && committed == 0 {
			// Killed as the deletions land: whatever the machine's speed,
			// one kill reaches the commit phase.
			target, after, limit = 1<<30, nil, 2*time.Minute
		}
		cmd := exec.Command(binary, "run", "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		deadline := time.After(limit)
	wait:
		for {
			select {
			case <-exited:
				break wait
			case <-deadline:
				break wait
			case <-after:
				break wait
			case <-time.After(time.Millisecond):
				if ents, _ := os.ReadDir(dst); len(ents) >= target {
					break wait
				}
				if limit > 20*time.Second && len(srv.Messages()) < leftBefore {
					break wait
				}
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		got, _ := os.ReadDir(dst)
		left := len(srv.Messages())
		if left < leftBefore {
			committed++
		}
		t.Logf("round %d: killed with %d delivered; %d of %d left on the server", round, len(got), left, len(msgs))
	}
	if committed == 0 {
		t.Error("no kill came after a session had deleted anything: the kills did not reach the commit phase")
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

// The group commit keeps the contract: mailflow is killed the moment the
// POP3 server has applied a session's deletions (at QUIT, before its
// reply), under load, in several rounds with new mail between them; every
// message the server deleted has its settled record in the ledger's
// database when it is opened again, without the journal. The records of a
// session are written in one commit before its QUIT, not one by one.
func TestKilledAtCommitEveryDeletedMessageIsInTheLedger(t *testing.T) {
	srv, err := pop3test.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	all := enginetest.CRLF(enginetest.Mix(1200))
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
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	added := 0
	for round := range 4 {
		n := 100 + rng.IntN(200)
		srv.Add(all[added : added+n]...)
		added += n
		before := map[string]bool{}
		for _, m := range srv.Messages() {
			before[enginetest.Digest(m)] = true
		}
		atQuit, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		srv.Set(func(b *pop3test.Behaviour) {
			b.AtQuit = func() {
				once.Do(func() { close(atQuit) })
				<-release
			}
		})
		cmd := exec.Command(binary, "run", "--once", "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-atQuit:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: mailflow never reached QUIT", round)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(release)
		deleted := map[string]bool{}
		for d := range before {
			deleted[d] = true
		}
		for _, m := range srv.Messages() {
			delete(deleted, enginetest.Digest(m))
		}
		// The journal (written, not synced) is thrown away, as a power loss
		// could: what the source deleted must be in the synced database.
		os.Remove(filepath.Join(dir, "state", "ledger.journal"))
		os.Remove(filepath.Join(dir, "state", "ledger.journal.old"))
		l, err := ledger.Open(filepath.Join(dir, "state"))
		if err != nil {
			t.Fatal(err)
		}
		settled := map[string]bool{}
		for _, rec := range l.All("pop") {
			if rec.Settled != "" {
				settled[rec.Digest] = true
			}
		}
		l.Close()
		missing := 0
		for d := range deleted {
			if !settled[d] {
				missing++
			}
		}
		t.Logf("round %d: killed at QUIT with %d deleted by the server; %d of them without a settled record", round, len(deleted), missing)
		if len(deleted) == 0 {
			t.Fatalf("round %d: the session deleted nothing", round)
		}
		if missing > 0 {
			t.Fatalf("round %d: %d messages were deleted at the source without a settled record in the ledger", round, missing)
		}
		srv.Set(func(b *pop3test.Behaviour) { b.AtQuit = nil })
	}
	// A last run finds nothing to deliver twice.
	if r := mailflow(t, "run", "--once", "-c", conf); r.code != 0 {
		t.Fatalf("final run: exit %d\n%s", r.code, r.stderr)
	}
	got, _ := enginetest.ReadMaildir(filepath.Join(dir, "dst"))
	assertSameMessages(t, all[:added], got)
}
