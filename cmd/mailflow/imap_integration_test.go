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

// Dovecot users u9 (source) and u10 (destination) are this file's.

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
	for i, m := range enginetest.CRLF(enginetest.Mix(2400)) {
		// The in-doubt check after a kill looks for the Message-ID; the
		// corpus's messages without a header have none.
		if !bytes.Contains(m, []byte("Message-ID:")) || len(all) == 2000 {
			continue
		}
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

var _ = fmt.Sprint
