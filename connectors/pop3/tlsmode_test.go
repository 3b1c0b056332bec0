package pop3_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// proxy listens on 127.0.0.1 in front of the server at target: with cfg,
// as a port of implicit TLS; with delay, it holds the server's greeting
// back that long.
func proxy(t *testing.T, target string, cfg *tls.Config, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer wg.Done(); time.Sleep(delay); io.Copy(c, s); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// tlsJob is a POP3 → Maildir job with the timeout at 60 s, as a user has
// it, and the given tls keys.
func tlsJob(t *testing.T, addr, keys string) *job {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`state_dir = "state"
[[input]]
name = "pop"
type = "pop3"
address = %q
username = "u"
password = "p"
allow_plaintext_auth = true
timeout = "60s"
pipeline = "main"
%s
[[pipeline]]
name = "main"
outputs = ["out"]
[[output]]
name = "out"
type = "maildir"
path = "out"
`, addr, keys)
	os.WriteFile(filepath.Join(dir, "mailflow.toml"), []byte(conf), 0o600)
	j := &job{t: t, dir: dir}
	j.open()
	return j
}

// pollWithin polls once under a 20 s context: a poll that fails with the
// fix must fail long before the 60 s timeout, and the context ending
// would show that it waited.
func pollWithin(t *testing.T, j *job) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := j.engine.PollOnce(ctx, "pop")
	if ctx.Err() != nil {
		t.Fatalf("the poll waited out its context: %v", err)
	}
	return err
}

// tls = "starttls" on a port of implicit TLS (995) used to wait the whole
// 60 s and say "i/o timeout": it now says, within a second or two, to set
// tls = "implicit", and with that set the mail comes.
func TestStartTLSOnAnImplicitPortSaysSetImplicit(t *testing.T) {
	t.Parallel()
	srv := newServer(t, crlfMix(1))
	cert, caFile := enginetest.TLSCert(t)
	addr := proxy(t, srv.Addr(), &tls.Config{Certificates: []tls.Certificate{cert}}, 0)

	j := tlsJob(t, addr, fmt.Sprintf("tls = \"starttls\"\ntls_ca_file = %q\n", caFile))
	err := pollWithin(t, j)
	want := addr + `: the server speaks TLS at once, with no greeting in plain text: set tls = "implicit" (tls = "starttls" is for port 110)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if len(srv.Messages()) != 1 || len(j.delivered()) != 0 {
		t.Fatal("nothing may move")
	}

	j = tlsJob(t, addr, fmt.Sprintf("tls = \"implicit\"\ntls_ca_file = %q\n", caFile))
	if err := pollWithin(t, j); err != nil || len(j.delivered()) != 1 {
		t.Fatalf("with the fix: %d delivered, %v", len(j.delivered()), err)
	}
}

// A server whose certificate this machine does not trust (self-signed, a
// private CA) is refused with the key that fixes it.
func TestUntrustedCertificateNamesTLSCAFile(t *testing.T) {
	t.Parallel()
	srv := newServer(t, crlfMix(1))
	cert, _ := enginetest.TLSCert(t)
	addr := proxy(t, srv.Addr(), &tls.Config{Certificates: []tls.Certificate{cert}}, 0)
	err := pollWithin(t, tlsJob(t, addr, ""))
	if err == nil || !strings.Contains(err.Error(), addr+": the server's certificate is signed by an authority this machine does not trust") ||
		!strings.Contains(err.Error(), "set tls_ca_file to its PEM file") {
		t.Fatalf("got %v", err)
	}
}

// A server in clear that greets only after a second and a half (past the
// second after which mailflow asks whether the port wants TLS) is waited
// for: its mail comes.
func TestSlowGreetingInClearStillDelivers(t *testing.T) {
	t.Parallel()
	srv := newServer(t, crlfMix(2))
	addr := proxy(t, srv.Addr(), nil, 1500*time.Millisecond)
	j := tlsJob(t, addr, "tls = \"none\"\n")
	if err := pollWithin(t, j); err != nil || len(j.delivered()) != 2 {
		t.Fatalf("%d delivered, %v", len(j.delivered()), err)
	}
}
