//go:build integration

package srs

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// postsrsd is Debian's postsrsd (1.x) on two free ports on 127.0.0.1,
// answering Postfix's tcp_table protocol.
func postsrsd(t *testing.T, domain string, secrets ...string) (forward, reverse string) {
	t.Helper()
	bin, err := exec.LookPath("postsrsd")
	if err != nil {
		const how = "postsrsd is not installed: .ci/testenv install puts it in"
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the SRS interop test, but " + how)
		}
		t.Skip(how)
	}
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	fp, rp := free(), free()
	secretFile := filepath.Join(t.TempDir(), "secrets")
	os.WriteFile(secretFile, []byte(strings.Join(secrets, "\n")+"\n"), 0o600)
	cmd := exec.Command(bin, "-s"+secretFile, "-d"+domain, "-l127.0.0.1", "-4", fmt.Sprintf("-f%d", fp), fmt.Sprintf("-r%d", rp))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	forward, reverse = fmt.Sprintf("127.0.0.1:%d", fp), fmt.Sprintf("127.0.0.1:%d", rp)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", reverse)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postsrsd did not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lookup asks a tcp_table server for key: "200 value" gives value.
func lookup(t *testing.T, addr, key string) (string, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "get %s\n", url.PathEscape(key))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	code, val, _ := strings.Cut(strings.TrimSpace(line), " ")
	v, _ := url.PathUnescape(val)
	return code, v
}

// Addresses mailflow rewrites are reversed by postsrsd and the other way
// round, with one secret, and after a rotation with two.
func TestInteropWithPostsrsd(t *testing.T) {
	fwd, rev := postsrsd(t, "fwd.example", "new-secret", "old-secret")
	ours := &Rewriter{Domain: "fwd.example", Secrets: []string{"new-secret", "old-secret"}}
	for _, sender := range []string{"alice@orig.example", "Bob.Jones@Sub.Orig.Example"} {
		mine, _ := ours.Forward(sender)
		code, theirs := lookup(t, fwd, sender)
		if code != "200" {
			t.Fatalf("postsrsd forward of %s: %s %s", sender, code, theirs)
		}
		if !strings.EqualFold(mine, theirs) {
			t.Errorf("forward %s: ours %s, postsrsd %s", sender, mine, theirs)
		}
		if code, back := lookup(t, rev, mine); code != "200" || !strings.EqualFold(back, sender) {
			t.Errorf("postsrsd reversing ours (%s): %s %s", mine, code, back)
		}
		if back, err := ours.Reverse(theirs); err != nil || !strings.EqualFold(back, sender) {
			t.Errorf("we reverse postsrsd's %s: %s %v", theirs, back, err)
		}
	}
	// Signed with the old secret (before the rotation): both accept it.
	old := &Rewriter{Domain: "fwd.example", Secrets: []string{"old-secret"}}
	addr, _ := old.Forward("carol@orig.example")
	if code, back := lookup(t, rev, addr); code != "200" || back != "carol@orig.example" {
		t.Errorf("postsrsd reversing an old-secret address: %s %s", code, back)
	}
	// SRS1: a second forwarder's rewrite of postsrsd's address.
	_, first := lookup(t, fwd, "dave@orig.example")
	second := &Rewriter{Domain: "second.example", Secrets: []string{"s2"}}
	srs1, _ := second.Forward(first)
	if back, err := second.Reverse(srs1); err != nil || back != first {
		t.Errorf("SRS1 over postsrsd's SRS0: %s %v", back, err)
	}
	t.Logf("e.g. ours %s, postsrsd agrees", addr)
}
