//go:build integration

package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/enginetest"
)

// Dovecot users u9, u13 (sources) and u10, u14 (destinations) are this
// file's.

// countStored counts the messages in every folder of a Maildir on disk,
// without reading them.
func countStored(root string) int {
	n := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() && (filepath.Base(filepath.Dir(p)) == "cur" || filepath.Base(filepath.Dir(p)) == "new") {
			n++
		}
		return nil
	})
	return n
}

// mailflow migrate, IMAP → IMAP on real Dovecot: 2,000 messages over 9
// folders with flags and dates, killed with SIGKILL at three random points
// and run again: every message exactly once, in its folder, with its flags;
// the verification lists none missing; one more run copies nothing.
func TestMigrateIMAPToIMAPSurvivesHardKills(t *testing.T) {
	srv := enginetest.RealServers(t)
	folders := []string{"INBOX", "Archive", "Archive/2024", "Archive/2025", "Projects", "Sent", "Drafts", "Lists/go", "Lists/rust"}
	flags := []string{"", "S", "FS", "RS", "DS"}
	seeded := map[string][]enginetest.Stored{}
	var all []enginetest.Stored
	for i, m := range enginetest.CRLF(enginetest.Mix(2000)) {
		// Messages without a Message-ID (the corpus has some without any
		// header) are found again after a kill by Date, From, Subject and
		// size (skip_existing).
		s := enginetest.Stored{Data: m, Flags: flags[i%len(flags)], Date: time.Date(2016+i%9, time.Month(1+i%12), 1+i%28, 9, 0, 0, 0, time.UTC)}
		f := folders[len(all)%len(folders)]
		seeded[f] = append(seeded[f], s)
		all = append(all, s)
	}
	srv.SeedIMAP(t, "u9", seeded)
	srv.SeedIMAP(t, "u10", nil)
	dest := filepath.Join(filepath.Dir(filepath.Dir(srv.SinkDir)), "mail", "u10", "Maildir")
	t.Setenv("MAILFLOW_PASSWORD", srv.Password)
	t.Setenv("MAILFLOW_TO_PASSWORD", srv.Password)
	state := filepath.Join(t.TempDir(), "state")
	args := []string{"migrate", "--from", "imap://u9@" + srv.IMAP, "--to", "imaps://u10@" + srv.IMAPS,
		"--to-password-env", "MAILFLOW_TO_PASSWORD", "--ca-file", srv.CA, "--state", state, "--progress", "none"}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	lo := 0
	for round := range 3 {
		at := lo + 50 + rng.IntN(400)
		cmd := exec.Command(binary, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		n := 0
		for time.Now().Before(deadline) {
			if n = countStored(dest); n >= at {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("round %d: SIGKILL at %d stored (aimed at %d)", round+1, n, at)
		lo = n
	}
	r := mailflow(t, args...)
	if r.code != 0 || !strings.Contains(r.stdout, "verification, old → new") {
		t.Fatalf("final run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("final run:\n%s", r.stdout)
	got := srv.IMAPStore(t, "u10")
	for _, f := range folders {
		want := map[string]int{}
		for _, s := range seeded[f] {
			want[enginetest.Digest(s.Data)+"|"+sortLetters(s.Flags)]++
		}
		have := map[string]int{}
		for _, s := range got[f] {
			have[enginetest.Digest(s.Data)+"|"+sortLetters(s.Flags)]++
		}
		for k, n := range want {
			if have[k] != n {
				t.Errorf("%s: message %s… with flags %q: want %d, have %d", f, k[:12], k[strings.Index(k, "|")+1:], n, have[k])
			}
		}
		if len(got[f]) != len(seeded[f]) {
			t.Errorf("%s: %d messages, want %d", f, len(got[f]), len(seeded[f]))
		}
	}
	if r := mailflow(t, args...); r.code != 0 || !strings.Contains(r.stdout, "moved:                  0") {
		t.Fatalf("a further run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := countStored(dest); n != len(all) {
		t.Fatalf("after a further run the destination holds %d, want %d", n, len(all))
	}
}

func sortLetters(s string) string {
	b := []byte(strings.ToUpper(s))
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

// mailflow migrate as a user would run it between two Dovecot mailboxes,
// one with a \Sent folder called "Sent Items": --dry-run lists the folders;
// a run with --add-message-id, --parallel and --max-bytes-per-second moves
// everything (Sent into Sent Items) and verifies it; a run with a fresh
// --state (another machine) copies nothing again; --delete-source then
// empties the source and nothing else.
func TestMigrateIMAPDeleteSourceAfterVerification(t *testing.T) {
	srv := enginetest.RealServers(t)
	folders := []string{"INBOX", "Sent", "Archive/2024", "Lists/go"}
	seeded := map[string][]enginetest.Stored{}
	total, noID := 0, 0
	for i, m := range enginetest.CRLF(enginetest.Mix(300)) {
		f := folders[i%len(folders)]
		seeded[f] = append(seeded[f], enginetest.Stored{Data: m, Flags: []string{"", "S", "FS"}[i%3], Date: time.Date(2021, 3, 1+i%28, 0, 0, 0, 0, time.UTC)})
		total++
		if !bytes.Contains(m, []byte("Message-ID:")) {
			noID++
		}
	}
	srv.SeedIMAP(t, "u13", seeded)
	srv.SeedIMAP(t, "u14", map[string][]enginetest.Stored{"Sent Items": nil})
	t.Setenv("MAILFLOW_PASSWORD", srv.Password)
	t.Setenv("MAILFLOW_TO_PASSWORD", srv.Password)
	dir := t.TempDir()
	args := func(state string, more ...string) []string {
		return append([]string{"migrate", "--from", "imap://u13@" + srv.IMAP, "--to", "imaps://u14@" + srv.IMAPS,
			"--to-password-env", "MAILFLOW_TO_PASSWORD", "--ca-file", srv.CA, "--state", filepath.Join(dir, state),
			"--progress", "none", "--add-message-id"}, more...)
	}

	r := mailflow(t, args("a", "--dry-run")...)
	if r.code != 0 || !strings.Contains(r.stdout, "FOLDER") || !strings.Contains(r.stdout, "Archive/2024") ||
		!strings.Contains(r.stdout, fmt.Sprintf("would move %d messages", total)) {
		t.Fatalf("dry run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := len(srv.IMAPStore(t, "u14")["INBOX"]); n != 0 {
		t.Fatalf("a dry run stored %d messages", n)
	}

	r = mailflow(t, args("a", "--parallel", "2", "--max-bytes-per-second", "200000000")...)
	t.Logf("first run:\n%s", r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("moved:                  %d", total)) {
		t.Fatalf("first run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got := srv.IMAPStore(t, "u14")
	if len(got["Sent Items"]) != len(seeded["Sent"]) || len(got["Sent"]) != 0 {
		t.Fatalf("Sent Items holds %d, Sent %d; want %d and 0", len(got["Sent Items"]), len(got["Sent"]), len(seeded["Sent"]))
	}
	added := 0
	for _, msgs := range got {
		for _, m := range msgs {
			if bytes.HasPrefix(m.Data, []byte("Message-ID: <")) && bytes.Contains(m.Data[:80], []byte("@mailflow.invalid>")) {
				added++
			}
		}
	}
	if added != noID {
		t.Fatalf("%d messages got a Message-ID, want the %d without one", added, noID)
	}

	r = mailflow(t, args("b")...)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("found at the destination already and not copied again: %d", total)) {
		t.Fatalf("run with a fresh --state: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := countStored(filepath.Join(filepath.Dir(filepath.Dir(srv.SinkDir)), "mail", "u14", "Maildir")); n != total {
		t.Fatalf("after a run with a fresh --state the destination holds %d, want %d", n, total)
	}

	r = mailflow(t, args("b", "--delete-source")...)
	t.Logf("--delete-source run:\n%s", r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("deleted at the source:  %d", total)) {
		t.Fatalf("--delete-source: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	left := 0
	for _, msgs := range srv.IMAPStore(t, "u13") {
		left += len(msgs)
	}
	if left != 0 {
		t.Fatalf("%d left at the source after --delete-source", left)
	}
	if n := countStored(filepath.Join(filepath.Dir(filepath.Dir(srv.SinkDir)), "mail", "u14", "Maildir")); n != total {
		t.Fatalf("the destination holds %d after --delete-source, want %d", n, total)
	}
}
