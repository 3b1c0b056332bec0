package smtpd

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"
)

// A reload that rebuilds the input (here its hostname changed) keeps the
// port open: the new input takes the listener over before the config is
// swapped in, new connections meet it, and a transaction under way on the
// old one finishes there (then the old one hangs up: it is stopping).
func TestReloadKeepsTheListener(t *testing.T) {
	r := newRig(t, "smtp", `hostname = "one.example"`, "")
	old := r.dial()
	if greet := old.expect(220); !strings.HasPrefix(greet, "one.example") {
		t.Fatalf("greeting %q", greet)
	}
	old.send("EHLO client.example.org", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>")
	old.expect(250)
	old.expect(250)
	old.expect(250)

	path := r.dir + "/mailflow.toml"
	conf, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(conf), "one.example", "two.example", 1)), 0o600)
	if ok, err := r.e.Reload(); !ok || err != nil {
		t.Fatalf("reload: %v %v", ok, err)
	}
	fresh := r.dial()
	if greet := fresh.expect(220); !strings.HasPrefix(greet, "two.example") {
		t.Fatalf("after the reload a new connection is greeted %q", greet)
	}
	fresh.send("EHLO client.example.org", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>", "DATA")
	fresh.expect(250)
	fresh.expect(250)
	fresh.expect(250)
	fresh.expect(354)
	fresh.send("Subject: new", "", "x", ".")
	fresh.expect(250)

	old.send("DATA")
	old.expect(354)
	old.send("Subject: old", "", "x", ".")
	old.expect(250)
	// The old input is stopping: it hangs up once its transaction ended.
	if !old.closed(5 * time.Second) {
		t.Fatal("the old input kept its connection")
	}
	got := r.waitFor(2)
	for _, g := range got {
		s := string(g.msg)
		if strings.Contains(s, "Subject: new") != strings.Contains(s, "by two.example") {
			t.Errorf("served by the wrong input:\n%s", s)
		}
	}
	r.waitSpoolEmpty()
	again := r.dial()
	again.expect(220)
}

// A reload that fails (a script that does not compile) leaves the input
// it would have replaced serving.
func TestFailedReloadKeepsServing(t *testing.T) {
	r := newRig(t, "smtp", `hostname = "one.example"`, "function filter(msg) end")
	path := r.dir + "/mailflow.toml"
	conf, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(conf), "one.example", "two.example", 1)), 0o600)
	os.WriteFile(r.dir+"/f.lua", []byte("function filter(msg"), 0o600)
	if ok, _ := r.e.Reload(); ok {
		t.Fatal("a broken script was loaded")
	}
	w := r.dial()
	if greet := w.expect(220); !strings.HasPrefix(greet, "one.example") {
		t.Fatalf("after a failed reload: %q", greet)
	}
	w.hello2()
}

// A new certificate (the files' bytes changed) is served after a reload,
// without the port closing.
func TestNewCertificateAfterReload(t *testing.T) {
	cert, key, oldClient := tlsFiles(t)
	r := newRig(t, "smtp", "tls = \"starttls\"\ntls_cert_file = \""+cert+"\"\ntls_key_file = \""+key+"\"", "")
	handshake := func(cfg *tls.Config) error {
		w := r.dial()
		w.hello()
		w.send("STARTTLS")
		w.expect(220)
		return tls.Client(w.c, cfg).Handshake()
	}
	if err := handshake(oldClient); err != nil {
		t.Fatal(err)
	}
	newCert, newKey, newClient := tlsFiles(t)
	for src, dst := range map[string]string{newCert: cert, newKey: key} {
		b, _ := os.ReadFile(src)
		os.WriteFile(dst, b, 0o600)
	}
	if ok, err := r.e.Reload(); !ok || err != nil {
		t.Fatalf("reload: %v %v", ok, err)
	}
	if err := handshake(newClient); err != nil {
		t.Fatalf("the new certificate is not served: %v", err)
	}
	if err := handshake(oldClient); err == nil {
		t.Fatal("the old certificate is still served")
	}
}
