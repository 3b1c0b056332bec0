package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/connectors/smtp/smtptest"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// A batch of six mailboxes (six POP3 servers) into one SMTP server, three
// at once, two per server: five are moved, each message once; the one with
// a wrong password is tried three times and reported failed, the others
// unaffected; the report CSV says so and the exit code is 1. Run again,
// the five are not moved twice.
func TestMigrateBatch(t *testing.T) {
	dst, err := smtptest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	all := enginetest.CRLF(enginetest.Mix(120))
	var rows []string
	for i := range 6 {
		src, err := pop3test.NewServer()
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		src.Add(all[i*20 : (i+1)*20]...)
		pass := "MF_BATCH_GOOD"
		if i == 3 {
			pass = "MF_BATCH_WRONG"
		}
		rows = append(rows, fmt.Sprintf("pop3://u@%s?tls=none,smtp://%s?tls=none,box%d@example.net,%s,true", src.Addr(), dst.Addr(), i, pass))
	}
	t.Setenv("MF_BATCH_GOOD", "p")
	t.Setenv("MF_BATCH_WRONG", "nope")
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "boxes.csv")
	os.WriteFile(csvFile, []byte("from,to,rcpt,password_env,allow_plaintext_auth\n"+strings.Join(rows, "\n")+"\n"), 0o600)
	state := filepath.Join(dir, "state")
	r := mailflow(t, "migrate", "--batch", csvFile, "--parallel", "3", "--max-per-host", "2", "--retry-wait", "100ms", "--state", state)
	if r.code != exitFailed {
		t.Fatalf("exit %d, want 1 (one mailbox failed)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("report:\n%s", r.stdout)
	if !strings.Contains(r.stdout, "6 mailboxes: 5 done, 1 failed") {
		t.Fatalf("summary:\n%s", r.stdout)
	}
	report, _ := os.ReadFile(filepath.Join(state, "report.csv"))
	lines := strings.Split(strings.TrimSpace(string(report)), "\n")
	if len(lines) != 7 || !strings.Contains(lines[4], ",failed,3,") {
		t.Fatalf("report.csv:\n%s", report)
	}
	if strings.Contains(string(report)+r.stdout+r.stderr, "nope") {
		t.Fatal("a password was written out")
	}
	if n := len(dst.Mails()); n != 100 {
		t.Fatalf("%d messages arrived, want 100 (5 mailboxes of 20)", n)
	}
	// Again: nothing is moved twice; the wrong password still fails.
	r = mailflow(t, "migrate", "--batch", csvFile, "--retries", "1", "--state", state)
	if n := len(dst.Mails()); n != 100 || r.code != exitFailed {
		t.Fatalf("second run: %d messages, exit %d\n%s", n, r.code, r.stdout)
	}
	// A password in the CSV is refused.
	os.WriteFile(csvFile, []byte("from,to,password\npop3://u@h,smtp://h,secret\n"), 0o600)
	if r := mailflow(t, "migrate", "--batch", csvFile); r.code != exitConfig || !strings.Contains(r.stderr, "never in the CSV") {
		t.Fatalf("a password column: exit %d %s", r.code, r.stderr)
	}
}
