//go:build integration

package main

import (
	"bytes"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
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

// These tests drive the mailflow binary through each of the three uses,
// against the real Dovecot and Postfix that .ci/testenv starts. Dovecot users
// u6..u8 are theirs (the connector tests use the others).

// exampleConfig copies examples/ into a temp dir (the examples refer to
// ../scripts), points the example's config at the test servers by replacing
// strings in it, and returns the config's path.
func exampleConfig(t *testing.T, example string, replace ...string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "examples")
	if err := os.CopyFS(root, os.DirFS(filepath.Join("..", "..", "examples"))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, example, "mailflow.toml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(conf, replace[i]) {
			t.Fatalf("%s: the example no longer has %q", example, replace[i])
		}
		conf = strings.ReplaceAll(conf, replace[i], replace[i+1])
	}
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// headerAndBody splits a message at its blank line, CRLF normalised.
func headerAndBody(m []byte) (string, []byte) {
	m = enginetest.CRLF([][]byte{m})[0]
	i := bytes.Index(m, []byte("\r\n\r\n"))
	if i < 0 {
		return string(m), nil
	}
	return string(m[:i+2]), m[i+4:]
}

func TestForwardingExampleEndToEnd(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("forwarding-%d", time.Now().UnixNano())
	var msgs [][]byte
	dir := filepath.Join("..", "..", "examples", "scripts", "testdata", "messages")
	for _, name := range []string{"1-alice.eml", "2-newsletter.eml", "3-spam.eml", "4-reply.eml", "5-subject-spam.eml"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	msgs = enginetest.Tagged(run, msgs)
	srv.SeedPOP3(t, "u7", msgs)
	ca := fmt.Sprintf("\ntls_ca_file = %q", srv.CA)
	conf := exampleConfig(t, "forwarding",
		`address = "pop.example.org:995"`, fmt.Sprintf("address = %q", srv.POP3S),
		`address = "smtp.example.org:587"`, fmt.Sprintf("address = %q", srv.Submission),
		`tls = "implicit"`, `tls = "implicit"`+ca,
		`tls = "starttls"`, `tls = "starttls"`+ca,
		`username = "me@example.org"`, `username = "u7"`,
		`listen = "127.0.0.1:9090"`, fmt.Sprintf("listen = %q", freePort(t)))
	t.Setenv("MAILFLOW_POP3_PASSWORD", srv.Password)
	t.Setenv("MAILFLOW_SMTP_PASSWORD", srv.Password)
	// What the example's header says to make: the SRS secret and the DKIM key.
	os.WriteFile(filepath.Join(filepath.Dir(conf), "srs.secret"), []byte("a-secret-for-the-example-test-0123\n"), 0o600)
	_, key, _ := ed25519.GenerateKey(crand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(filepath.Dir(conf), "dkim.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	r := mailflow(t, "run", "--once", "-c", conf)
	if r.code != 0 || !strings.Contains(r.stdout, "mailbox: fetched=5 delivered=3 dropped=2 quarantined=0 deferred=0") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// Alice's message was forwarded: the envelope went to the new address,
	// the original header and body are intact, a Resent-* trail is on top.
	sent := enginetest.SinkMessages(t, srv.SinkDir, run, 1)
	if len(sent) != 1 {
		t.Fatalf("the sink holds %d forwarded messages, want 1", len(sent))
	}
	fwdHdr, fwdBody := headerAndBody(enginetest.WithoutTrace(sent[0]))
	origHdr, origBody := headerAndBody(msgs[0])
	if !bytes.Equal(fwdBody, origBody) {
		t.Error("the forwarded body is not byte-identical")
	}
	for _, line := range strings.SplitAfter(origHdr, "\r\n") {
		// Postfix replaces Return-Path with its own (a trace field).
		if line != "" && !strings.HasPrefix(line, "Return-Path:") && !strings.Contains(fwdHdr, line) {
			t.Errorf("the forwarded header lost %q", line)
		}
	}
	for _, want := range []string{"Resent-To: bob@elsewhere.example\r\n", "Resent-Date: ", "X-Forwarded-By: mailflow forward.lua\r\n"} {
		if !strings.Contains(fwdHdr, want) {
			t.Errorf("the forwarded header lacks %q:\n%s", want, fwdHdr)
		}
	}
	// Alice is at example.org, the srs_domain itself: her address needs no
	// rewriting (SRS of other domains is in TestForwardingThroughPostfix).
	if !bytes.Contains(sent[0], []byte("Return-Path: <alice@example.org>")) || !bytes.Contains(sent[0], []byte("DKIM-Signature: ")) || !bytes.Contains(sent[0], []byte("X-Loop: mailflow/gw1/forward")) {
		t.Errorf("not sent with the sender kept, a DKIM signature and the loop trace:\n%s", sent[0])
	}
	if !bytes.Contains(sent[0], []byte("X-Original-To: bob@elsewhere.example")) {
		t.Errorf("Postfix did not get bob@elsewhere.example as the envelope recipient:\n%s", sent[0])
	}
	// The archive has Alice's copy and Carol's reply; newsletters the tagged
	// newsletter; the two blocked ones are nowhere; the mailbox is empty.
	base := filepath.Dir(conf)
	archive, _ := enginetest.ReadMaildir(filepath.Join(base, "mail", "archive"))
	news, _ := enginetest.ReadMaildir(filepath.Join(base, "mail", "newsletters"))
	if len(archive) != 2 || len(news) != 1 {
		t.Fatalf("archive has %d, newsletters %d; want 2 and 1", len(archive), len(news))
	}
	if !bytes.Contains(news[0], []byte("X-Mailflow-Category: newsletter")) {
		t.Errorf("newsletter not tagged:\n%s", news[0])
	}
	for _, m := range append(archive, news...) {
		if bytes.Contains(m, []byte("spam.example")) || bytes.Contains(m, []byte("Cheap watches")) {
			t.Errorf("a blocked message was delivered:\n%s", m)
		}
	}
	if n := srv.POP3Count("u7"); n != 0 {
		t.Errorf("%d messages left in the POP3 mailbox", n)
	}
}

// migrateSetup seeds 2,000 mixed messages into Dovecot user and returns
// them, with the migrate command line for them.
func migrateSetup(t *testing.T, srv *enginetest.Servers, user, run string) ([][]byte, []string) {
	var msgs [][]byte
	for _, m := range enginetest.Mix(2400) {
		// Postfix adds fields of its own to a message without a header.
		if !bytes.HasPrefix(m, []byte("no header")) && len(msgs) < 2000 {
			msgs = append(msgs, m)
		}
	}
	msgs = enginetest.Tagged(run, msgs)
	srv.SeedPOP3(t, user, msgs)
	t.Setenv("MAILFLOW_PASSWORD", srv.Password)
	state := filepath.Join(t.TempDir(), "state")
	args := []string{"migrate", "--from", "pop3://" + user + "@" + srv.POP3, "--to", "smtp://" + srv.SMTP,
		"--rcpt", "moved@example.net", "--ca-file", srv.CA, "--state", state, "--progress", "log"}
	return msgs, args
}

// interruptAtRandom starts the migration three times and stops it with sig
// once a random number more of this run's messages reached Postfix. It
// returns what each run wrote to stderr.
func interruptAtRandom(t *testing.T, srv *enginetest.Servers, run string, args []string, sig syscall.Signal) []string {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var logs []string
	lo := 0
	for round := range 3 {
		at := lo + 50 + rng.IntN(500)
		cmd := exec.Command(binary, args...)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		n := 0
		for time.Now().Before(deadline) {
			if n = countTagged(srv.SinkDir, run); n >= at {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Signal(sig)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatalf("round %d: mailflow did not stop within a minute of %v", round+1, sig)
		}
		t.Logf("round %d: %v at %d arrived (aimed at %d)", round+1, sig, n, at)
		logs = append(logs, stderr.String())
		lo = n
	}
	return logs
}

// finishMigration runs the migration to the end, as a user would after the
// interruptions.
func finishMigration(t *testing.T, args []string) result {
	var final result
	for try := 0; try < 3; try++ {
		// Dovecot may still hold the killed session's lock for a moment
		// ([IN-USE]); that is a temporary failure, retried as a user would.
		if final = mailflow(t, args...); final.code == 0 || !strings.Contains(final.stdout+final.stderr, "IN-USE") {
			break
		}
		time.Sleep(time.Second)
	}
	if final.code != 0 {
		t.Fatalf("final run: exit %d\n%s\n%s", final.code, final.stdout, final.stderr)
	}
	t.Logf("final run:\n%s", final.stdout)
	return final
}

// arrivals counts, per message sent, how many byte-identical copies (apart
// from Postfix's trace fields) arrived.
func arrivals(t *testing.T, srv *enginetest.Servers, run string, msgs [][]byte) (copies map[string]int, ids map[string]string) {
	got := enginetest.SinkMessages(t, srv.SinkDir, run, len(msgs))
	have := map[string]int{}
	for _, m := range got {
		have[enginetest.Digest(enginetest.WithoutTrace(m))]++
	}
	copies, ids = map[string]int{}, map[string]string{}
	for _, m := range msgs {
		d := enginetest.Digest(enginetest.WithoutTrace(m))
		copies[d] = have[d]
		h, _ := headerAndBody(m)
		if i := strings.Index(h, "Message-ID: <"); i >= 0 {
			ids[d] = h[i+13 : i+13+strings.Index(h[i+13:], ">")]
		}
	}
	if extra := len(got) - len(msgs); extra < 0 {
		t.Errorf("%d messages missing from the sink", -extra)
	}
	return copies, ids
}

// TestMigrateTwoThousandSurvivesThreeKills stops the migration with kill
// (SIGTERM, as Ctrl-C, systemd or a shutdown do) at three random points;
// run again, every message arrives exactly once, byte-identical.
func TestMigrateTwoThousandSurvivesThreeKills(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("migrate-%d", time.Now().UnixNano())
	msgs, args := migrateSetup(t, srv, "u6", run)

	dry := mailflow(t, append(args, "--dry-run")...)
	if dry.code != 0 || !strings.Contains(dry.stdout, "would move 2000 messages") {
		t.Fatalf("dry run: exit %d\n%s\n%s", dry.code, dry.stdout, dry.stderr)
	}
	if n := countTagged(srv.SinkDir, run); n != 0 {
		t.Fatalf("the dry run sent %d messages", n)
	}
	interruptAtRandom(t, srv, run, args, syscall.SIGTERM)
	finishMigration(t, args)

	copies, ids := arrivals(t, srv, run, msgs)
	for d, n := range copies {
		if n != 1 {
			t.Errorf("%s arrived %d times", ids[d], n)
		}
	}
	if n := srv.POP3Count("u6"); n != 0 {
		t.Errorf("%d messages left on the old server", n)
	}
	again := mailflow(t, args...)
	if again.code != 0 || !strings.Contains(again.stdout, "moved:                  0") {
		t.Errorf("a run after the end must move nothing: exit %d\n%s", again.code, again.stdout)
	}
}

// TestMigrateHardKillsLoseNothing stops the migration with SIGKILL three
// times. Nothing may be lost. A message the server had accepted when the
// process died, before the acceptance could be read and recorded, is sent
// again: SMTP cannot tell. Each such message must have been reported as
// in doubt by the run that sent it again, so the user knows which.
func TestMigrateHardKillsLoseNothing(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("hardkill-%d", time.Now().UnixNano())
	msgs, args := migrateSetup(t, srv, "u6", run)
	logs := interruptAtRandom(t, srv, run, args, syscall.SIGKILL)
	final := finishMigration(t, args)
	logs = append(logs, final.stderr)

	reported := map[string]bool{}
	for _, l := range logs {
		for _, line := range strings.Split(l, "\n") {
			if !strings.Contains(line, "stopped hard") {
				continue
			}
			if i := strings.Index(line, "message_id="); i >= 0 {
				reported[strings.Fields(line[i+11:])[0]] = true
			}
		}
	}
	copies, ids := arrivals(t, srv, run, msgs)
	twice := 0
	for d, n := range copies {
		switch {
		case n == 0:
			t.Errorf("%s was lost", ids[d])
		case n > 1:
			twice++
			if !reported[ids[d]] {
				t.Errorf("%s arrived %d times but was not reported in doubt", ids[d], n)
			}
		}
	}
	t.Logf("after 3 SIGKILLs: %d of %d messages arrived twice; %d were reported in doubt", twice, len(msgs), len(reported))
	if n := srv.POP3Count("u6"); n != 0 {
		t.Errorf("%d messages left on the old server", n)
	}
}

func countTagged(sink, run string) int {
	n := 0
	tag := []byte("X-Test-Run: " + run + "\n")
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(sink, sub))
		for _, e := range ents {
			f, err := os.Open(filepath.Join(sink, sub, e.Name()))
			if err != nil {
				continue
			}
			head := make([]byte, 2048)
			k, _ := io.ReadFull(f, head)
			f.Close()
			if bytes.Contains(head[:k], tag) {
				n++
			}
		}
	}
	return n
}

func TestScheduledExampleRunsBothInputsOnTheirSchedules(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("scheduled-%d", time.Now().UnixNano())
	report := func(i int) []byte {
		return []byte(fmt.Sprintf("From: monitor@example.org\r\nTo: reports@example.org\r\nSubject: disk usage %d\r\nMessage-ID: <report-%d-%s@example.org>\r\n\r\nall fine\r\n", i, i, run))
	}
	srv.SeedPOP3(t, "u8", enginetest.Tagged(run, [][]byte{report(1), report(2), report(3)}))
	metricsAddr := freePort(t)
	ca := fmt.Sprintf("\ntls_ca_file = %q", srv.CA)
	conf := exampleConfig(t, "scheduled",
		`address = "pop.example.org:995"`, fmt.Sprintf("address = %q", srv.POP3S),
		`address = "relay.example.org:25"`, fmt.Sprintf("address = %q", srv.SMTP),
		`address = "smtp.example.org:587"`, fmt.Sprintf("address = %q", srv.Submission),
		`tls = "implicit"`, `tls = "implicit"`+ca,
		`tls = "starttls"`, `tls = "starttls"`+ca,
		`username = "reports@example.org"`, `username = "u8"`,
		`username = "app@example.org"`, `username = "u8"`,
		`schedule = "30s"`, `schedule = "1s"`,
		`listen = "127.0.0.1:9091"`, fmt.Sprintf("listen = %q", metricsAddr))
	outbox := filepath.Join(filepath.Dir(conf), "outbox")
	app := func(i int) []byte {
		return []byte(fmt.Sprintf("From: app@example.org\r\nTo: customer%d@example.net\r\nSubject: AW: your order %d\r\nX-Mailer: shop 1.0\r\nMessage-ID: <order-%d-%s@example.org>\r\n\r\norder %d shipped\r\n", i, i, i, run, i))
	}
	if err := enginetest.WriteMaildir(outbox, enginetest.Tagged(run, [][]byte{app(1), app(2)})); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MAILFLOW_POP3_PASSWORD", srv.Password)
	t.Setenv("MAILFLOW_SMTP_PASSWORD", srv.Password)

	var stderr syncBuffer
	cmd := exec.Command(binary, "run", "-c", conf)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("mailflow's log:\n%s", stderr.String())
		}
	}()
	// Both inputs poll at start-up, then on their schedules.
	got := enginetest.SinkMessages(t, srv.SinkDir, run, 5)
	if len(got) != 5 {
		t.Fatalf("the sink holds %d of the 5 messages", len(got))
	}
	// A second batch of reports is picked up by the 1 s interval alone.
	srv.SeedPOP3(t, "u8", enginetest.Tagged(run, [][]byte{report(4), report(5)}))
	got = enginetest.SinkMessages(t, srv.SinkDir, run, 7)
	if len(got) != 7 {
		t.Fatalf("the sink holds %d of the 7 messages", len(got))
	}
	reports, orders := 0, 0
	for _, m := range got {
		switch {
		case bytes.Contains(m, []byte("Subject: [report] disk usage")):
			reports++
			if !bytes.Contains(m, []byte("X-Original-To: team@example.net")) || !bytes.Contains(m, []byte("X-Report-Source: reports")) {
				t.Errorf("report not sent to the team, or not tagged:\n%s", m)
			}
		case bytes.Contains(m, []byte("Subject: Re: your order")):
			orders++
			if bytes.Contains(m, []byte("X-Mailer")) || !bytes.Contains(m, []byte("X-Original-To: customer")) {
				t.Errorf("order mail not cleaned, or not sent to its own recipient:\n%s", m)
			}
		default:
			t.Errorf("unexpected message:\n%s", m)
		}
	}
	if reports != 5 || orders != 2 {
		t.Errorf("%d reports and %d orders arrived; want 5 and 2", reports, orders)
	}
	log := stderr.String()
	for _, want := range []string{`input=reports schedule="every 1s"`, `input=outbox schedule="cron */5 * * * *"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mailflow_messages_total{input="reports",outcome="delivered"} 5`,
		`mailflow_messages_total{input="outbox",outcome="delivered"} 2`,
		`mailflow_output_deliveries_total{output="team",result="accepted"} 5`,
		`mailflow_last_successful_poll_timestamp_seconds{input="outbox"}`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if resp, err := http.Get("http://" + metricsAddr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	}
}
