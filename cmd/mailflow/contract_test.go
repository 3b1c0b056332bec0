package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// sink is emersion/go-smtp's server: it refuses the recipients in refuse
// with a 550 and records, per recipient, how many copies arrived.
type sink struct {
	addr string
	mu   sync.Mutex
	got  map[string]int
	deny map[string]bool
}

func newSink(t *testing.T, refuse ...string) *sink {
	t.Helper()
	k := &sink{got: map[string]int{}, deny: map[string]bool{}}
	for _, r := range refuse {
		k.deny[r] = true
	}
	s := gosmtp.NewServer(k)
	s.Domain, s.AllowInsecureAuth = "sink.test", true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return k
}

func (k *sink) refuse(rcpt string, yes bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deny[rcpt] = yes
}

func (k *sink) copies(rcpt string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.got[rcpt]
}

func (k *sink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &sinkSession{k: k}, nil }

type sinkSession struct {
	k    *sink
	rcpt []string
}

func (s *sinkSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if s.k.deny[to] {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	s.rcpt = append(s.rcpt, to)
	return nil
}
func (s *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	for _, to := range s.rcpt {
		s.k.got[to]++
	}
	return nil
}
func (s *sinkSession) Reset()        { s.rcpt = nil }
func (s *sinkSession) Logout() error { return nil }

// daemon starts "mailflow run" and waits until it logs that it runs.
func daemon(t *testing.T, conf string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, "run", "-c", conf)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	running := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "mailflow running") {
				once.Do(func() { close(running) })
			}
		}
	}()
	select {
	case <-running:
	case <-time.After(30 * time.Second):
		t.Fatal("mailflow run did not start")
	}
	return cmd
}

func TestSecondRunOnTheSameStateDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := enginetest.WriteMaildir(filepath.Join(dir, "src"), nil); err != nil {
		t.Fatal(err)
	}
	conf := maildirJob(t, dir, "")
	first := daemon(t, conf)
	for _, args := range [][]string{{"run", "--once", "-c", conf}, {"ledger", "stats", "-c", conf}} {
		r := mailflow(t, args...)
		want := fmt.Sprintf("is in use by mailflow pid %d", first.Process.Pid)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("%v while another runs: exit %d, stderr %q; want %q", args, r.code, r.stderr, want)
		}
	}
	first.Process.Signal(syscall.SIGTERM)
	first.Wait()
	if r := mailflow(t, "run", "--once", "-c", conf); r.code != 0 {
		t.Fatalf("after the first stopped: exit %d %s", r.code, r.stderr)
	}
}

// check looks at the paths run would make (the output Maildir, the
// state_dir) but makes none of them.
func TestCheckCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := enginetest.WriteMaildir(filepath.Join(dir, "src"), nil); err != nil {
		t.Fatal(err)
	}
	conf := maildirJob(t, dir, "")
	if r := mailflow(t, "check", "-c", conf); r.code != 0 {
		t.Fatalf("check: %d %s%s", r.code, r.stdout, r.stderr)
	}
	for _, p := range []string{"dst", "state"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("check created %s", p)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("check left %d entries in the config's directory, want mailflow.toml and src", len(entries))
	}
}

// A message refused by one of its two recipients is quarantined; while
// "mailflow run" runs, quarantine list shows it and resend sends it to the
// recipient that refused, not again to the one that has it.
func TestQuarantineResendWhileRunningSendsOnlyToTheRest(t *testing.T) {
	k := newSink(t, "b@x.test")
	conf, src := smtpJob(t, k.addr, "tls = \"none\"\nto = [\"a@x.test\", \"b@x.test\"]\n", enginetest.Mix(1))
	daemon(t, conf)
	var id string
	deadline := time.Now().Add(30 * time.Second)
	for id == "" && time.Now().Before(deadline) {
		r := mailflow(t, "quarantine", "list", "-c", conf)
		if r.code != 0 {
			t.Fatalf("quarantine list while running: %d %s", r.code, r.stderr)
		}
		if m := regexp.MustCompile(`(?m)^(\d{8}T\d{6}-[0-9a-f]+)\s.*550`).FindStringSubmatch(r.stdout); m != nil {
			id = m[1]
		}
		time.Sleep(100 * time.Millisecond)
	}
	if id == "" {
		t.Fatal("the refused message never showed in quarantine list")
	}
	if k.copies("a@x.test") != 1 || k.copies("b@x.test") != 0 {
		t.Fatalf("before resend: a has %d, b %d", k.copies("a@x.test"), k.copies("b@x.test"))
	}
	if r := mailflow(t, "quarantine", "show", "-c", conf, id); r.code != 0 || !strings.Contains(r.stdout, `"a@x.test"`) {
		t.Fatalf("show: %d %s %s", r.code, r.stdout, r.stderr)
	}
	k.refuse("b@x.test", false)
	r := mailflow(t, "quarantine", "resend", "-c", conf, id)
	if r.code != 0 || !strings.Contains(r.stdout, id+": delivered") {
		t.Fatalf("resend while running: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if k.copies("a@x.test") != 1 || k.copies("b@x.test") != 1 {
		t.Fatalf("after resend: a has %d, b %d; want 1 and 1", k.copies("a@x.test"), k.copies("b@x.test"))
	}
	if r := mailflow(t, "quarantine", "list", "-c", conf); strings.Contains(r.stdout, id) {
		t.Fatalf("resent entry still listed: %s", r.stdout)
	}
	if left, _ := enginetest.ReadMaildir(src); len(left) != 0 {
		t.Fatal("the quarantined message must have left its source")
	}
}

// SIGTERM while an output waits on its rate limit ("1/h"): mailflow gives
// the waiting messages back to their source and exits cleanly, well before
// shutdown_timeout, instead of waiting an hour.
func TestStopWhileRateLimitedReleasesAndExits(t *testing.T) {
	srv, err := smtptest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conf, src := smtpJob(t, srv.Addr(), "tls = \"none\"\nrate = \"1/h\"\n", enginetest.Mix(3))
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, append([]byte("shutdown_timeout = \"60s\"\n"), b...), 0o600)
	cmd := daemon(t, conf)
	deadline := time.Now().Add(30 * time.Second)
	for len(srv.Mails()) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the others reach the limiter
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("mailflow did not stop cleanly: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("mailflow still running 45 s after SIGTERM")
	}
	if n := len(srv.Mails()); n != 1 {
		t.Fatalf("%d sent; want the 1 the rate allowed", n)
	}
	if left, _ := enginetest.ReadMaildir(src); len(left) != 2 {
		t.Fatalf("%d left at the source; want the 2 waiting on the limit", len(left))
	}
}

// smtpJob writes a Maildir → SMTP config for srv, with extra output keys.
func smtpJob(t *testing.T, addr, extra string, msgs [][]byte) (conf, src string) {
	t.Helper()
	dir := t.TempDir()
	src = filepath.Join(dir, "src")
	if err := enginetest.WriteMaildir(src, msgs); err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "mailflow.toml")
	if !strings.Contains(extra, "to = ") {
		extra += "to = [\"a@x.test\"]\n"
	}
	os.WriteFile(conf, fmt.Appendf(nil, "state_dir = \"state\"\n[[input]]\nname = \"src\"\ntype = \"maildir\"\npath = \"src\"\npipeline = \"main\"\nschedule = \"1s\"\n[[pipeline]]\nname = \"main\"\noutputs = [\"smtp\"]\n[[output]]\nname = \"smtp\"\ntype = \"smtp\"\naddress = %q\n%s", addr, extra), 0o600)
	return conf, src
}

// The connection drops after the final dot, before the reply: the run
// reports the message in doubt and keeps it at its source; the next run
// delivers it once more, and that is the only repeat.
func TestReplyLostAfterDataIsReportedAndDeliveredOnceMore(t *testing.T) {
	srv, err := smtptest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Set(func(b *smtptest.Behaviour) { b.LoseReplies = 1 })
	conf, src := smtpJob(t, srv.Addr(), "tls = \"none\"\nmax_connections = 1\n", enginetest.Mix(1))
	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != 1 || !strings.Contains(r.stdout, "deferred=1") || !strings.Contains(r.stdout, "in_doubt=1") || !strings.Contains(r.stderr, "in doubt") {
		t.Fatalf("first run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if left, _ := enginetest.ReadMaildir(src); len(left) != 1 {
		t.Fatal("a message in doubt must stay at its source")
	}
	r = mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 || !strings.Contains(r.stdout, "delivered=1") {
		t.Fatalf("second run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := len(srv.Mails()); n != 2 {
		t.Fatalf("the server got %d copies; want the one in doubt and one more", n)
	}
	r = mailflow(t, "run", "--once", "-c", conf)
	if n := len(srv.Mails()); n != 2 || !strings.Contains(r.stdout, "fetched=0") {
		t.Fatalf("a third run sent again: %d copies", n)
	}
}

// A relay that stops offering STARTTLS (or AUTH) is in trouble of its own:
// the five messages wait at their source, none is quarantined, exit 1.
func TestRelayWithoutStartTLSKeepsTheMailbox(t *testing.T) {
	srv, err := smtptest.NewServer() // offers no STARTTLS
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conf, src := smtpJob(t, srv.Addr(), "tls = \"starttls\"\n", enginetest.Mix(5))
	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != 1 || !strings.Contains(r.stdout, "quarantined=0 deferred=5") || !strings.Contains(r.stderr, "level=ERROR") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if left, _ := enginetest.ReadMaildir(src); len(left) != 5 {
		t.Fatalf("%d left at the source, want 5", len(left))
	}
	if len(srv.Mails()) != 0 {
		t.Fatal("a message went out in clear")
	}
}
