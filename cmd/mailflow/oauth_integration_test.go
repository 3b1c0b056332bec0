//go:build integration

package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/oauth/oauthtest"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// Dovecot user u5 is this file's: its POP3 and IMAP logins and Postfix's
// submission (through Dovecot's SASL) take the bearer tokens that the test
// authorization server, on MAILFLOW_TEST_OAUTH, issued for it.

func oauthServer(t *testing.T, srv *enginetest.Servers, ttl time.Duration) *oauthtest.Server {
	t.Helper()
	if srv.OAuth == "" {
		t.Fatal("the testenv has no OAuth address (MAILFLOW_TEST_OAUTH): restart it with this .ci/testenv")
	}
	as, err := oauthtest.NewAt(srv.OAuth, "u5", ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	return as
}

// mailflow run with auth = "oauth2" on a POP3S input and a submission
// output (Postfix, SASL through Dovecot), tokens lasting 5 s, over 60 s of
// mail arriving: every message delivered once, no token refused; then the
// tokens are revoked: new mail stays in the mailbox, the log names the
// command to run, the metric counts failures, and auth status shows the
// error.
//
// It runs before the test that makes Dovecot refuse tokens, and the
// authorization server lets Dovecot take a token 20 s past its lifetime:
// after failed logins from 127.0.0.1 (here or in another package's tests)
// Dovecot holds AUTHs back for up to 15 s. That mailflow never sends a token
// past its lifetime is tested against servers that check it strictly
// (TestOAuth2TokensRefreshAsTheyExpire, TestSMTPOAuth2, TestIMAPOAuth2).
func TestOAuth2RunOverSixtySeconds(t *testing.T) {
	srv := enginetest.RealServers(t)
	as := oauthServer(t, srv, 5*time.Second)
	as.IntrospectGrace(20 * time.Second)
	srv.SeedPOP3(t, "u5", nil)
	dir := t.TempDir()
	metricsAddr := freeAddr(t)
	conf := filepath.Join(dir, "mailflow.toml")
	oauthConf := fmt.Sprintf(`auth = "oauth2"
oauth2_provider = "custom"
client_id = "mailflow-test"
auth_url = "%[1]s/authorize"
token_url = "%[1]s/token"
device_url = "%[1]s/device"
scopes = ["mail"]
refresh_before = "2s"
tls_ca_file = %[2]q`, as.URL, srv.CA)
	os.WriteFile(conf, fmt.Appendf(nil, `state_dir = "state"
[metrics]
listen = %[1]q
[[input]]
name = "mailbox"
type = "pop3"
address = %[2]q
username = "u5"
schedule = "1s"
pipeline = "main"
%[5]s
[[pipeline]]
name = "main"
outputs = ["submission"]
[[output]]
name = "submission"
type = "smtp"
address = %[3]q
tls = "starttls"
username = "u5"
to = ["oauth-run@example.net"]
idle_timeout = "1s"
%[5]s
`, metricsAddr, srv.POP3S, srv.Submission, "", oauthConf), 0o600)
	for _, name := range []string{"mailbox", "submission"} {
		cmd := exec.Command(binary, "auth", "login", "--device", "-c", conf, name)
		out, _ := cmd.StdoutPipe()
		cmd.Start()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 1 {
				as.Approve(f[0])
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("auth login %s: %v", name, err)
		}
	}

	var logBuf syncBuffer
	run := exec.Command(binary, "run", "-c", conf)
	run.Stderr, run.Stdout = &logBuf, &logBuf
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	defer func() {
		if t.Failed() {
			l := logBuf.String()
			t.Logf("mailflow's log (last 6 KB):\n%s", l[max(0, len(l)-6000):])
		}
	}()
	prefix := fmt.Sprintf("oauth-%d-", time.Now().UnixNano())
	sent := 0
	start := time.Now()
	for time.Since(start) < 60*time.Second {
		var msgs [][]byte
		for range 2 {
			msgs = append(msgs, []byte(fmt.Sprintf("Message-ID: <%s%d@x.test>\r\nSubject: oauth %d\r\n\r\nbody\r\n", prefix, sent, sent)))
			sent++
		}
		srv.AddPOP3(t, "u5", msgs)
		time.Sleep(3 * time.Second)
	}
	waitFor(t, "every message at the sink", 30*time.Second, func() bool { return sinkCount(t, srv, prefix) >= sent })
	if n := sinkCount(t, srv, prefix); n != sent {
		t.Fatalf("%d at the sink, want %d", n, sent)
	}
	t.Logf("%d messages over 60 s with 5 s tokens: %d refreshes", sent, as.Refreshes())
	if strings.Contains(logBuf.String(), "refused") || strings.Contains(logBuf.String(), "invalid_token") {
		t.Fatalf("an authentication error surfaced:\n%s", logBuf.String())
	}
	if as.Refreshes() < 10 {
		t.Fatalf("only %d refreshes in 60 s of 5 s tokens", as.Refreshes())
	}

	as.RevokeAll()
	srv.AddPOP3(t, "u5", [][]byte{[]byte("Message-ID: <" + prefix + "late@x.test>\r\nSubject: after the revocation\r\n\r\nstays\r\n")})
	waitFor(t, "the log line naming the command", 30*time.Second, func() bool {
		return strings.Contains(logBuf.String(), "mailflow auth login -c "+conf+" mailbox")
	})
	if n := srv.POP3Count("u5"); n != 1 {
		t.Fatalf("%d messages in the mailbox, want the 1 that came after the revocation", n)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`mailflow_auth_failures_total{connector="mailbox"}`)) || bytes.Contains(body, []byte(`mailflow_auth_failures_total{connector="mailbox"} 0`)) {
		t.Fatalf("metrics:\n%s", grepLines(string(body), "auth"))
	}
	run.Process.Signal(syscall.SIGTERM)
	run.Wait()
	r := mailflow(t, "auth", "status", "-c", conf)
	if !strings.Contains(r.stdout, "invalid_grant") {
		t.Fatalf("auth status does not show the error:\n%s%s", r.stdout, r.stderr)
	}
}

// Dovecot really takes XOAUTH2 and OAUTHBEARER over POP3 and IMAP, with a
// token the authorization server vouches for, and refuses one it does not.
func TestDovecotTakesBearerTokens(t *testing.T) {
	srv := enginetest.RealServers(t)
	as := oauthServer(t, srv, time.Minute)
	tok, err := as.Issue()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(srv.CA)
	pool.AppendCertsFromPEM(pem)
	ir := map[string]string{
		"XOAUTH2":     "user=u5\x01auth=Bearer %s\x01\x01",
		"OAUTHBEARER": "n,a=u5,\x01auth=Bearer %s\x01\x01",
	}
	for _, proto := range []struct{ name, addr, auth, ok string }{
		{"POP3", srv.POP3S, "AUTH %s %s", "+OK"},
		{"IMAP", srv.IMAPS, "a AUTHENTICATE %s %s", "a OK"},
	} {
		for mech, format := range ir {
			for _, token := range []string{tok, "not-a-token"} {
				c, err := tls.Dial("tcp", proto.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
				if err != nil {
					t.Fatal(err)
				}
				r := bufio.NewReader(c)
				r.ReadString('\n') // greeting
				fmt.Fprintf(c, proto.auth+"\r\n", mech, base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(format, token))))
				c.SetDeadline(time.Now().Add(10 * time.Second))
				line, _ := r.ReadString('\n')
				if strings.HasPrefix(line, "+ ") { // the error challenge
					fmt.Fprintf(c, "%s\r\n", base64.StdEncoding.EncodeToString([]byte{1}))
					line, _ = r.ReadString('\n')
				}
				c.Close()
				if got := strings.HasPrefix(line, proto.ok); got != (token == tok) {
					t.Errorf("%s %s with token %q: %q", proto.name, mech, token[:8], line)
				}
			}
		}
	}
}

func sinkCount(t *testing.T, srv *enginetest.Servers, prefix string) int {
	t.Helper()
	msgs, _ := enginetest.ReadMaildir(srv.SinkDir)
	n := 0
	for _, m := range msgs {
		if bytes.Contains(m, []byte("<"+prefix)) {
			n++
		}
	}
	return n
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
