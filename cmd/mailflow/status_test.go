package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// mailflow status asks the running process for its health (exit 0 when
// mail moves, 1 when an input keeps failing), and, when none runs, says
// so and what the state_dir holds (exit 2).
func TestStatusOfARunningAndAStoppedMailflow(t *testing.T) {
	dir := t.TempDir()
	enginetest.WriteMaildir(filepath.Join(dir, "src"), enginetest.Mix(3))
	addr := freeAddr(t)
	conf := maildirJob(t, dir, fmt.Sprintf("[http]\nlisten = %q\ndegraded_after = 1", addr))
	// A second input that cannot be polled: its Maildir is a file.
	os.WriteFile(filepath.Join(dir, "broken"), []byte("not a Maildir"), 0o600)
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(b, []byte("\n[[input]]\nname = \"broken\"\ntype = \"maildir\"\npath = \"broken\"\npipeline = \"main\"\nschedule = \"1s\"\n")...), 0o600)

	cmd := exec.Command(binary, "run", "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mailflow never became ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var r result
	for time.Now().Before(deadline) {
		if r = mailflow(t, "status", "-c", conf); r.code == exitFailed {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.code != exitFailed || !strings.Contains(r.stdout, "DEGRADED") || !strings.Contains(r.stdout, "input broken") || !strings.Contains(r.stdout, "src") {
		t.Fatalf("status of a running mailflow with a broken input: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	r = mailflow(t, "status", "-c", conf)
	if r.code != exitConfig || !strings.Contains(r.stdout, "not running") || !strings.Contains(r.stdout, "ledger:") {
		t.Fatalf("status of a stopped mailflow: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// freeAddr is a 127.0.0.1 address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
