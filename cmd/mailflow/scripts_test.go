package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// scriptJob writes a config: Maildir src, one pipeline running rule.lua,
// outputs a and b (Maildirs), and the script itself.
func scriptJob(t *testing.T, dir, script, extra string) string {
	t.Helper()
	conf := fmt.Sprintf(`state_dir = "state"
%s
[[input]]
name = "src"
type = "maildir"
path = "src"
pipeline = "main"
schedule = "1s"

[[pipeline]]
name = "main"
scripts = ["rule.lua"]
outputs = ["a"]

[[output]]
name = "a"
type = "maildir"
path = "a"

[[output]]
name = "b"
type = "maildir"
path = "b"
`, extra)
	path := filepath.Join(dir, "mailflow.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	writeByRename(t, filepath.Join(dir, "rule.lua"), script)
	for _, d := range []string{"src", "a", "b"} {
		for _, sub := range []string{"new", "cur", "tmp"} {
			os.MkdirAll(filepath.Join(dir, d, sub), 0o700)
		}
	}
	return path
}

// writeByRename replaces a file the way editors do: write a new file beside
// it, then rename it over the old one.
func writeByRename(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".swp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tagged(tag string, i int) []byte {
	return []byte(fmt.Sprintf("From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: %s %d\r\nMessage-ID: <%s-%d@example.org>\r\n\r\nbody of %s %d\r\n", tag, i, tag, i, tag, i))
}

func TestMisbehavingScriptsQuarantineTheirMessageOnly(t *testing.T) {
	dir := t.TempDir()
	conf := scriptJob(t, dir, `
		function filter(msg)
			local s = msg:header("Subject")
			if s == "loop" then while true do end end
			if s == "error" then error("deliberate failure") end
			if s == "huge" then local x = "x"; while true do x = x .. x end end
			if s == "inject" then msg:set_header("X-A", "a\r\nBcc: victim@example.com") end
		end`, "script_timeout = \"3s\"\nscript_max_memory = 16777216\nmax_in_flight = 1 # one at a time: the memory bound is the heap's growth during a call\n")
	var msgs [][]byte
	for _, s := range []string{"loop", "fine 1", "error", "fine 2", "huge", "inject", "fine 3"} {
		msgs = append(msgs, []byte("From: x@example.org\r\nSubject: "+s+"\r\n\r\nbody\r\n"))
	}
	if err := enginetest.WriteMaildir(filepath.Join(dir, "src"), msgs); err != nil {
		t.Fatal(err)
	}
	r := mailflow(t, "run", "--once", "-c", conf)
	// Exit 3: everything settled, some of it in the quarantine.
	if r.code != 3 || !strings.Contains(r.stdout, "src: fetched=7 delivered=3 dropped=0 quarantined=4") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got, _ := enginetest.ReadMaildir(filepath.Join(dir, "a"))
	if len(got) != 3 {
		t.Fatalf("%d delivered, want the 3 fine ones", len(got))
	}
	list := mailflow(t, "quarantine", "list", "-c", conf)
	for _, want := range []string{"ran longer than 3s", "rule.lua:5: deliberate failure", "16 MB", "value contains CR, LF or NUL"} {
		if !strings.Contains(list.stdout, want) {
			t.Errorf("quarantine list lacks %q:\n%s", want, list.stdout)
		}
	}
	if left, _ := enginetest.ReadMaildir(filepath.Join(dir, "src")); len(left) != 0 {
		t.Errorf("%d messages left at the source; quarantined ones are safe and leave it", len(left))
	}
}

// syncBuffer is a bytes.Buffer safe to write from the child's stderr pipe
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond every 20 ms for at most limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countIn(dir string) int {
	msgs, _ := enginetest.ReadMaildir(dir)
	return len(msgs)
}

// TestScriptReloadWhileRunning drives `mailflow run` (not --once) with mail
// arriving in batches: the rule routes to a; rewritten by rename it routes to
// b; a broken version is then saved, which must change nothing but a logged
// file:line error. No message may be lost or delivered twice.
func TestScriptReloadWhileRunning(t *testing.T) {
	dir := t.TempDir()
	rule := filepath.Join(dir, "rule.lua")
	conf := scriptJob(t, dir, `function filter(msg) return route("a") end`, "")
	var stderr syncBuffer
	cmd := exec.Command(binary, "run", "-c", conf)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("mailflow did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("mailflow's log:\n%s", stderr.String())
		}
	}()
	src := filepath.Join(dir, "src")
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	const batch = 25
	feed := func(tag string) []byte {
		var msgs [][]byte
		for i := 0; i < batch; i++ {
			msgs = append(msgs, tagged(tag, i))
		}
		if err := enginetest.WriteMaildir(src, msgs); err != nil {
			t.Fatal(err)
		}
		return nil
	}

	// Phase 1: the first rule.
	feed("before")
	waitFor(t, "phase 1 delivered to a", 30*time.Second, func() bool { return countIn(a) == batch })

	// Phase 2: the rule is rewritten by rename; new mail follows it.
	reloads := strings.Count(stderr.String(), "config reloaded")
	writeByRename(t, rule, `function filter(msg) msg:set_header("X-Rule", "two"); return route("b") end`)
	waitFor(t, "the reload", 30*time.Second, func() bool { return strings.Count(stderr.String(), "config reloaded") > reloads })
	feed("after")
	waitFor(t, "phase 2 delivered to b", 30*time.Second, func() bool { return countIn(b) == batch })

	// Phase 3: a broken version changes nothing and is logged with file:line.
	writeByRename(t, rule, "function filter(msg)\n  return route(\"a\"\nend\n")
	waitFor(t, "the failed reload to be logged", 30*time.Second, func() bool {
		return strings.Contains(stderr.String(), "reload failed") && strings.Contains(stderr.String(), "rule.lua:3:")
	})
	feed("broken")
	waitFor(t, "phase 3 delivered to b by the working rule", 30*time.Second, func() bool { return countIn(b) == 2*batch })

	// Every message exactly once, where its phase's rule sent it.
	gotA, _ := enginetest.ReadMaildir(a)
	gotB, _ := enginetest.ReadMaildir(b)
	for _, m := range gotA {
		if !bytes.Contains(m, []byte("Subject: before ")) {
			t.Errorf("a holds a message of a later phase:\n%s", m)
		}
	}
	seen := map[string]int{}
	for _, m := range gotB {
		if bytes.Contains(m, []byte("Subject: before ")) || !bytes.Contains(m, []byte("X-Rule: two")) {
			t.Errorf("b holds a message the second rule did not handle:\n%s", m)
		}
		seen[string(m[bytes.Index(m, []byte("Subject: ")):bytes.Index(m, []byte("Message-ID"))])]++
	}
	if len(gotA) != batch || len(gotB) != 2*batch || len(seen) != 2*batch {
		t.Errorf("a has %d, b has %d (%d distinct); want %d and %d", len(gotA), len(gotB), len(seen), batch, 2*batch)
	}
	// A message is removed from the source just after it was delivered.
	waitFor(t, "the source to be empty", 30*time.Second, func() bool { return countIn(src) == 0 })
}

// SIGTERM while a script runs away (its own bound is far off) ends `run`
// within shutdown_timeout; the message it was filtering stays at its
// source, neither delivered nor quarantined.
func TestSIGTERMDuringRunawayScript(t *testing.T) {
	dir := t.TempDir()
	conf := scriptJob(t, dir, `function filter(msg) log.info("looping") while true do end end`, "script_timeout = \"60s\"\nshutdown_timeout = \"2s\"")
	if err := enginetest.WriteMaildir(filepath.Join(dir, "src"), [][]byte{tagged("loop", 1)}); err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd := exec.Command(binary, "run", "--log-level", "debug", "-c", conf)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the script to start looping", 20*time.Second, func() bool { return strings.Contains(stderr.String(), "looping") })
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("mailflow still running 20 s after SIGTERM (shutdown_timeout 2s); log:\n%s", stderr.String())
	}
	took := time.Since(start)
	t.Logf("stopped %v after SIGTERM", took.Round(time.Millisecond))
	if took > 2*time.Second+3*time.Second {
		t.Errorf("took %v to stop with a 2 s shutdown_timeout", took)
	}
	if n := countIn(filepath.Join(dir, "src")); n != 1 {
		t.Errorf("%d messages at the source, want the 1 being filtered", n)
	}
	if n := countIn(filepath.Join(dir, "a")); n != 0 {
		t.Errorf("%d delivered", n)
	}
}
