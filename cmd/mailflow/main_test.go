package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// binary is the mailflow command built once for these tests, so that they
// drive it exactly as a user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailflow-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mailflow")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mailflow:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func mailflow(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// maildirJob writes a config moving src to dst, Maildir to Maildir.
func maildirJob(t *testing.T, dir string, extra string) string {
	t.Helper()
	conf := fmt.Sprintf(`state_dir = "state"
max_in_flight = 8
%s
[[input]]
name = "src"
type = "maildir"
path = "src"
pipeline = "main"

[[pipeline]]
name = "main"
outputs = ["dst"]

[[output]]
name = "dst"
type = "maildir"
path = "dst"
`, extra)
	path := filepath.Join(dir, "mailflow.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFiveHundredMessagesMaildirToMaildir(t *testing.T) {
	dir := t.TempDir()
	msgs := enginetest.Mix(497)
	msgs = append(msgs,
		enginetest.Message(enginetest.Huge, 1000, 20<<20),
		enginetest.Message(enginetest.Empty, 1001, 0),
		enginetest.Message(enginetest.NoHeader, 1002, 0))
	if err := enginetest.WriteMaildir(filepath.Join(dir, "src"), msgs); err != nil {
		t.Fatal(err)
	}
	conf := maildirJob(t, dir, "")
	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "src: fetched=500 delivered=500 dropped=0 quarantined=0 deferred=0") {
		t.Fatalf("summary: %s", r.stdout)
	}
	got, err := enginetest.ReadMaildir(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	assertSameMessages(t, msgs, got)
	left, _ := enginetest.ReadMaildir(filepath.Join(dir, "src"))
	if len(left) != 0 {
		t.Fatalf("%d messages left at the source", len(left))
	}
	// A second run finds nothing and delivers nothing more.
	r = mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 || !strings.Contains(r.stdout, "src: fetched=0 delivered=0") {
		t.Fatalf("second run: exit %d %s", r.code, r.stdout)
	}
	again, _ := enginetest.ReadMaildir(filepath.Join(dir, "dst"))
	if len(again) != len(msgs) {
		t.Fatalf("second run changed the output: %d messages", len(again))
	}
}

// assertSameMessages checks that got holds each of want exactly once, byte
// for byte.
func assertSameMessages(t *testing.T, want, got [][]byte) {
	t.Helper()
	w, g := enginetest.Count(want), enginetest.Count(got)
	for d, n := range w {
		if g[d] != n {
			t.Errorf("message %s…: want %d copies, have %d", d[:12], n, g[d])
		}
	}
	for d, n := range g {
		if w[d] == 0 {
			t.Errorf("unexpected message %s… (%d copies): changed on the way?", d[:12], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("want %d messages, have %d", len(want), len(got))
	}
}

func TestKilledMidBatchLosesAndDuplicatesNothing(t *testing.T) {
	dir := t.TempDir()
	msgs := enginetest.Mix(1500)
	for i := range 5 {
		msgs = append(msgs, enginetest.Message(enginetest.Huge, 2000+i, 2<<20))
	}
	if err := enginetest.WriteMaildir(filepath.Join(dir, "src"), msgs); err != nil {
		t.Fatal(err)
	}
	conf := maildirJob(t, dir, "")
	dst := filepath.Join(dir, "dst", "new")
	// Kill it three times, each time once more messages have arrived.
	for round, after := range []int{50, 400, 900} {
		cmd := exec.Command(binary, "run", "--once", "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			ents, _ := os.ReadDir(dst)
			if len(ents) >= after {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		state, _ := cmd.Process.Wait()
		ents, _ := os.ReadDir(dst)
		t.Logf("round %d: killed (%v) with %d messages delivered", round, state, len(ents))
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
	if left, _ := enginetest.ReadMaildir(filepath.Join(dir, "src")); len(left) != 0 {
		t.Fatalf("%d messages left at the source", len(left))
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "dst", "tmp")); len(tmp) > 3*8 {
		t.Fatalf("%d files in tmp/: more than the in-flight messages of three kills", len(tmp))
	}
}

func TestConfigTypoExitsTwoWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	conf := maildirJob(t, dir, "")
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, bytes.Replace(b, []byte(`outputs = ["dst"]`), []byte(`outputs = ["dts"]`), 1), 0o600)
	for _, verb := range [][]string{{"check"}, {"run", "--once"}} {
		r := mailflow(t, append(verb, "-c", conf)...)
		want := conf + `:12: pipeline "main": output "dts" is not defined; did you mean "dst"? Defined: dst`
		if r.code != 2 || !strings.Contains(r.stdout+r.stderr, want) {
			t.Fatalf("%v: exit %d, output %q; want exit 2 and %q", verb, r.code, r.stdout+r.stderr, want)
		}
	}
}

func TestQuickstartRunsAsDocumented(t *testing.T) {
	// Copy the examples (the quickstart uses ../scripts) so that state and
	// output land in a temp dir.
	src := filepath.Join("..", "..", "examples")
	dir := filepath.Join(t.TempDir(), "examples", "quickstart")
	if err := os.CopyFS(filepath.Dir(dir), os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "state"))
	os.RemoveAll(filepath.Join(dir, "out"))
	conf := filepath.Join(dir, "mailflow.toml")
	if r := mailflow(t, "check", "-c", conf); r.code != 0 {
		t.Fatalf("check: %d %s", r.code, r.stderr)
	}
	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 || !strings.Contains(r.stdout, "inbox: fetched=4") {
		t.Fatalf("quickstart: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// The scripts ran: the newsletter went to its own Maildir, the shop's
	// invoice got its subject prefix, and every body is byte-identical.
	archive, _ := enginetest.ReadMaildir(filepath.Join(dir, "out", "archive"))
	news, _ := enginetest.ReadMaildir(filepath.Join(dir, "out", "newsletters"))
	if len(archive) != 3 || len(news) != 1 {
		t.Fatalf("archive has %d, newsletters %d; want 3 and 1", len(archive), len(news))
	}
	if !bytes.Contains(news[0], []byte("X-Mailflow-Category: newsletter")) || !bytes.Contains(news[0], []byte("Subject: [de] ")) {
		t.Errorf("newsletter not tagged:\n%s", news[0])
	}
	shop := 0
	for _, m := range archive {
		if bytes.Contains(m, []byte("Subject: [shop] Your invoice")) {
			shop++
		}
	}
	if shop != 1 {
		t.Errorf("%d archived messages have the [shop] prefix, want 1", shop)
	}
	r = mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 || !strings.Contains(r.stdout, "inbox: fetched=0") {
		t.Fatalf("second quickstart run must move nothing: %s", r.stdout)
	}
	r = mailflow(t, "test", "-c", conf, filepath.Join(dir, "mail", "inbox"))
	if r.code != 0 || !strings.Contains(r.stdout, "4 messages: 3 keep, 1 route") {
		t.Fatalf("mailflow test on the quickstart: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	if r := mailflow(t, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "mailflow ") {
		t.Fatalf("version: %+v", r)
	}
	if r := mailflow(t, "run", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: mailflow run") {
		t.Fatalf("run --help: %+v", r)
	}
	if r := mailflow(t, "frobnicate"); r.code != 2 {
		t.Fatalf("unknown verb: %+v", r)
	}
}
