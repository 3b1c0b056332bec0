//go:build integration

package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// A forwarding pipeline through real Postfix with SRS, DKIM and loop
// detection on; then a bounce to the SRS address, fetched by a second
// pipeline, goes back to the original sender; then the forwarded copy,
// put back into the first mailbox (as a forward between two mailboxes
// would), is refused as a loop.
func TestForwardingThroughPostfix(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("fwd%d", os.Getpid())
	dir := t.TempDir()
	alice := "alice-" + run + "@orig.example"
	inbox := filepath.Join(dir, "inbox")
	enginetest.WriteMaildir(inbox, [][]byte{
		fmt.Appendf(nil, "Return-Path: <%s>\r\nFrom: Alice <%s>\r\nTo: bob@fwd.example\r\nSubject: hello %s\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a-%s@orig.example>\r\n\r\nHi Bob.\r\n", alice, alice, run, run),
		fmt.Appendf(nil, "Return-Path: <>\r\nFrom: MAILER-DAEMON@orig.example\r\nTo: bob@fwd.example\r\nSubject: failure %s\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b-%s@orig.example>\r\nAuto-Submitted: auto-replied\r\n\r\nA bounce.\r\n", run, run),
	})
	os.WriteFile(filepath.Join(dir, "srs.secret"), []byte("this-is-the-test-srs-secret-1234\n"), 0o600)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "dkim.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	// The script edits a signed field: the signature must be made after it.
	os.WriteFile(filepath.Join(dir, "tag.lua"), fmt.Appendf(nil, `function filter(msg)
  msg:set_header("Subject", "[fwd] " .. (msg:header("Subject") or ""))
  msg:set_header("X-Test-Run", %q)
end
`, run), 0o600)
	// Bounces to the SRS address come back to fwd.example's mailbox; this
	// script sends each to the address it reverses to.
	os.WriteFile(filepath.Join(dir, "bounces.lua"), fmt.Appendf(nil, `function filter(msg)
  local to = msg:header("X-Original-To") or ""
  local back, why = srs.reverse(to)
  if not back then return quarantine("not a bounce to one of our SRS addresses: " .. why) end
  msg:set_header("X-Test-Run", %q)
  return redirect(back)
end
`, run+"-bounce"), 0o600)
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `state_dir = "state"
instance = "gw-%s"
srs_secret_file = "srs.secret"

[[input]]
name = "inbox"
type = "maildir"
path = "inbox"
pipeline = "forward"

[[input]]
name = "bounces"
type = "maildir"
path = "bounces"
pipeline = "bounces"

[[pipeline]]
name = "forward"
scripts = ["tag.lua"]
outputs = ["forwarder"]

[[pipeline]]
name = "bounces"
scripts = ["bounces.lua"]
outputs = ["return"]

[[output]]
name = "forwarder"
type = "smtp"
address = %q
tls = "starttls"
tls_ca_file = %q
to = ["bob-%s@dest.example"]
srs_domain = "fwd.example"
srs_secret_file = "srs.secret"
dkim_domain = "fwd.example"
dkim_selector = "mf"
dkim_key_file = "dkim.pem"

[[output]]
name = "return"
type = "smtp"
address = %q
tls = "starttls"
tls_ca_file = %q
`, run, srv.SMTP, srv.CA, run, srv.SMTP, srv.CA), 0o600)
	enginetest.WriteMaildir(filepath.Join(dir, "bounces"), nil)
	once := func() string {
		r := mailflow(t, "run", "--once", "-c", conf)
		if r.code != 0 && r.code != 3 {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	t.Logf("forward: %s", once())
	got := enginetest.SinkMessages(t, srv.SinkDir, run, 2)
	if len(got) != 2 {
		t.Fatalf("%d forwarded messages arrived, want 2", len(got))
	}
	var forwarded []byte
	for _, m := range got {
		switch {
		case bytes.Contains(m, []byte("Subject: [fwd] hello")):
			forwarded = m
		case bytes.Contains(m, []byte("Subject: [fwd] failure")):
			if !bytes.HasPrefix(m, []byte("Return-Path: <>\n")) {
				t.Errorf("the bounce was forwarded with a sender:\n%.200s", m)
			}
		}
	}
	rp := regexp.MustCompile(`(?m)^Return-Path: <(SRS0=[^>]+)>`).FindSubmatch(forwarded)
	if rp == nil || !strings.HasSuffix(string(rp[1]), "=orig.example=alice-"+run+"@fwd.example") {
		t.Fatalf("no SRS0 Return-Path on the forwarded copy:\n%.400s", forwarded)
	}
	srsAddr := string(rp[1])
	t.Logf("Postfix wrote Return-Path: <%s>", srsAddr)

	// DKIM, over the message as Postfix delivered it.
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(bytes.ReplaceAll(forwarded, []byte("\n"), []byte("\r\n"))), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain == "mf._domainkey.fwd.example" {
				return []string{record}, nil
			}
			return nil, errors.New("NXDOMAIN")
		}})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil {
		t.Fatalf("DKIM at the sink: %v %+v", err, verifs)
	}
	t.Logf("DKIM-Signature verifies for d=%s after Postfix delivered it", verifs[0].Domain)

	// The bounce: Postfix would put it in fwd.example's mailbox with
	// X-Original-To naming the SRS address.
	enginetest.WriteMaildir(filepath.Join(dir, "bounces"), [][]byte{fmt.Appendf(nil,
		"Return-Path: <>\r\nX-Original-To: %s\r\nFrom: MAILER-DAEMON@dest.example\r\nTo: %s\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <dsn-%s@dest.example>\r\n\r\nbob-%s@dest.example: mailbox full\r\n", srsAddr, srsAddr, run, run)})
	t.Logf("bounces: %s", once())
	back := enginetest.SinkMessages(t, srv.SinkDir, run+"-bounce", 1)
	if len(back) != 1 || !bytes.Contains(back[0], []byte("X-Original-To: "+alice)) || !bytes.HasPrefix(back[0], []byte("Return-Path: <>\n")) {
		t.Fatalf("the bounce did not reach %s with a null sender:\n%s", alice, back)
	}

	// The loop: the forwarded copy comes back into the inbox (a forward
	// from the destination back to this mailbox). It must go round no more.
	enginetest.WriteMaildir(inbox, [][]byte{forwarded})
	summary := once()
	t.Logf("the copy back in the inbox: %s", summary)
	if !strings.Contains(summary, "quarantined=1") {
		t.Fatalf("the looping copy was not quarantined: %s", summary)
	}
	r := mailflow(t, "quarantine", "list", "-c", conf)
	if !strings.Contains(r.stdout, "mail loop detected") {
		t.Fatalf("quarantine list:\n%s", r.stdout)
	}
	time.Sleep(time.Second)
	if n := len(enginetest.SinkMessages(t, srv.SinkDir, run, 0)); n != 2 {
		t.Fatalf("%d copies at the sink, want 2 (the message and the bounce, once each)", n)
	}
}
