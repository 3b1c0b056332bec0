//go:build integration

package main

import (
	"encoding/csv"
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

// Dovecot users m1..m50 (sources) and m51..m100 (destinations) are this
// file's.

// mailflow migrate --batch on real Dovecot: 50 IMAP mailboxes of 40 to 800
// messages (20,000 in all, over three folders), six at once. The batch is
// SIGKILLed twice while it runs (its child migrates die with it) and run
// again: every mailbox is verified and holds each of its messages exactly
// once; the one with a wrong password is reported failed and the 49 others
// complete.
func TestMigrateBatchOfFiftyDovecotMailboxes(t *testing.T) {
	srv := enginetest.RealServers(t)
	const boxes = 50
	sizes := []int{40, 160, 400, 600, 800} // 2,000 per five mailboxes
	folders := []string{"INBOX", "Archive", "Sent"}
	all := enginetest.CRLF(enginetest.Mix(20000))
	want := map[int]int{} // mailbox → messages
	next := 0
	var rows []string
	for i := range boxes {
		n := sizes[i%len(sizes)]
		seeded := map[string][]enginetest.Stored{}
		for k := range n {
			m := all[next]
			next++
			seeded[folders[k%len(folders)]] = append(seeded[folders[k%len(folders)]],
				enginetest.Stored{Data: m, Flags: []string{"", "S", "FS"}[k%3], Date: time.Date(2020, 1, 1+k%28, 9, 0, 0, 0, time.UTC)})
		}
		src, dst := fmt.Sprintf("m%d", i+1), fmt.Sprintf("m%d", i+51)
		srv.SeedIMAP(t, src, seeded)
		srv.SeedIMAP(t, dst, nil)
		want[i] = n
		pass := "MF_BATCH_PASSWORD"
		if i == 17 {
			pass = "MF_BATCH_WRONG"
		}
		rows = append(rows, fmt.Sprintf("imap://%s@%s,imap://%s@%s,%s,MF_BATCH_PASSWORD,%s", src, srv.IMAP, dst, srv.IMAP, pass, srv.CA))
	}
	if next != 20000 {
		t.Fatalf("seeded %d messages", next)
	}
	t.Setenv("MF_BATCH_PASSWORD", srv.Password)
	t.Setenv("MF_BATCH_WRONG", "not-the-password")
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "school.csv")
	os.WriteFile(csvFile, []byte("from,to,password_env,to_password_env,ca_file\n"+strings.Join(rows, "\n")+"\n"), 0o600)
	state := filepath.Join(dir, "state")
	args := []string{"migrate", "--batch", csvFile, "--parallel", "6", "--max-per-host", "6",
		"--retries", "2", "--retry-wait", "200ms", "--state", state, "--progress", "lines"}

	mailDirs := filepath.Join(filepath.Dir(filepath.Dir(srv.SinkDir)), "mail")
	stored := func() int {
		n := 0
		for i := range boxes {
			n += countStored(filepath.Join(mailDirs, fmt.Sprintf("m%d", i+51), "Maildir"))
		}
		return n
	}
	// Two hard kills: at 3,000 and at 11,000 messages stored.
	for _, at := range []int{3000, 11000} {
		cmd := exec.Command(binary, args...)
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		deadline := time.Now().Add(8 * time.Minute)
		for stored() < at && time.Now().Before(deadline) {
			select {
			case <-exited:
				t.Fatalf("the batch ended before %d messages were stored:\n%s", at, out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
		if n := stored(); n < at {
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			t.Fatalf("only %d messages stored after 8 minutes, waiting for %d:\n%s", n, at, out.String())
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		t.Logf("batch killed with %d messages stored", stored())
		time.Sleep(200 * time.Millisecond) // its children get their SIGKILL too
	}
	r := mailflow(t, args...)
	t.Logf("report:\n%s", r.stdout)
	if r.code != exitFailed || !strings.Contains(r.stdout, "50 mailboxes: 49 done, 1 failed") {
		t.Fatalf("exit %d, want 1 with one failed\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	f, err := os.Open(filepath.Join(state, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	report, err := csv.NewReader(f).ReadAll()
	if err != nil || len(report) != boxes+1 {
		t.Fatalf("report.csv: %d rows, %v", len(report), err)
	}
	for i, row := range report[1:] {
		// row, mailbox, state, tries, moved, verified, seconds, exit, error
		switch {
		case i == 17 && (row[2] != "failed" || !strings.Contains(strings.ToLower(row[8]), "auth")):
			t.Errorf("the mailbox with a wrong password: %v", row)
		case i != 17 && (row[2] != "done" || row[5] != "yes"):
			t.Errorf("mailbox %d: %v", i+1, row)
		}
	}
	for i := range boxes {
		got := countStored(filepath.Join(mailDirs, fmt.Sprintf("m%d", i+51), "Maildir"))
		switch {
		case i == 17 && got != 0:
			t.Errorf("m%d (wrong password) has %d messages at its destination", i+51, got)
		case i != 17 && got != want[i]:
			t.Errorf("m%d holds %d messages, want %d (each once)", i+51, got, want[i])
		}
	}
}
