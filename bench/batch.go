package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// The batch bench (go run ./bench -batch): 50 Dovecot IMAP mailboxes of
// 400 messages each (over three folders) are copied into 50 empty ones,
// by mailflow migrate --batch at --parallel 1, 4 and 16, and by imapsync
// in a shell loop, one and four at once (xargs -P), as imapsync's own
// documentation has people do it. Every run is checked mailbox by mailbox;
// the modes alternate within each round; medians of o.runs.

const (
	batchBoxes  = 50
	batchPerBox = 400
)

var batchFolders = []string{"INBOX", "Archive", "Sent"}

func runBatchBench(o options, root, work string, e *env, mailflow string) error {
	if err := installIMAPAnchors(); err != nil {
		return err
	}
	imapsync := filepath.Join(filepath.Dir(root), "shared", "anchors", "imapsync", "imapsync")
	if _, err := os.Stat(imapsync); err != nil {
		return fmt.Errorf("imapsync: %v", err)
	}
	cache := filepath.Join(e.testenvDir, "bench-cache-mailboxes")
	n := batchBoxes * batchPerBox
	fmt.Printf("== generating %d messages (90%% 2-20 KB, 10%% 50-500 KB with attachments)\n", n)
	total, err := generate(cache, n, e.mailUID, setMailboxes)
	if err != nil {
		return err
	}
	fmt.Printf("   %d messages, %.1f MB, into %d mailboxes of %d\n", n, float64(total)/(1<<20), batchBoxes, batchPerBox)
	ents, err := os.ReadDir(cache)
	if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	src := func(i int) string { return fmt.Sprintf("m%d", i+1) }
	dst := func(i int) string { return fmt.Sprintf("m%d", i+51) }
	want := map[int]string{}
	for i := range batchBoxes {
		if err := e.seedBox(src(i), cache, ents[i*batchPerBox:(i+1)*batchPerBox]); err != nil {
			return err
		}
		want[i] = e.folderSummary(src(i))
	}

	csvFile := filepath.Join(work, "batch.csv")
	var csv strings.Builder
	csv.WriteString("from,to,password_env,to_password_env,allow_plaintext_auth\n")
	var pairs strings.Builder
	for i := range batchBoxes {
		fmt.Fprintf(&csv, "imap://%s@%s?tls=none,imap://%s@%s?tls=none,MAILFLOW_PASSWORD,MAILFLOW_PASSWORD,true\n", src(i), e.imap, dst(i), e.imap)
		fmt.Fprintf(&pairs, "%s %s\n", src(i), dst(i))
	}
	if err := os.WriteFile(csvFile, []byte(csv.String()), 0o600); err != nil {
		return err
	}
	pairsFile := filepath.Join(work, "batch-pairs.txt")
	if err := os.WriteFile(pairsFile, []byte(pairs.String()), 0o600); err != nil {
		return err
	}
	host, portNo := "127.0.0.1", port(e.imap)
	state := filepath.Join(work, "batch-state")
	mailflowAt := func(parallel int) func() *exec.Cmd {
		return func() *exec.Cmd {
			p := fmt.Sprint(parallel)
			cmd := exec.Command(mailflow, "migrate", "--batch", csvFile, "--parallel", p, "--max-per-host", p,
				"--state", state, "--progress", "lines")
			cmd.Env = append(os.Environ(), "MAILFLOW_PASSWORD="+e.password)
			return cmd
		}
	}
	// The loop imapsync's FAQ suggests, with xargs -P for "several at once".
	imapsyncAt := func(parallel int) func() *exec.Cmd {
		return func() *exec.Cmd {
			script := fmt.Sprintf(`xargs -P %d -L 1 sh -c 'perl %s --host1 %s --port1 %s --user1 "$0" --password1 "$IMAPSYNC_PASSWORD" --host2 %s --port2 %s --user2 "$1" --password2 "$IMAPSYNC_PASSWORD" --nossl1 --nossl2 --notls1 --notls2 --nolog --noreleasecheck --tmpdir %s/imapsync-tmp-"$0" >/dev/null' < %s`,
				parallel, imapsync, host, portNo, host, portNo, work, pairsFile)
			cmd := exec.Command("bash", "-c", script)
			cmd.Env = append(os.Environ(), "IMAPSYNC_PASSWORD="+e.password)
			return cmd
		}
	}
	modes := []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{"mailflow-p1", mailflowAt(1)}, {"mailflow-p4", mailflowAt(4)}, {"mailflow-p16", mailflowAt(16)},
		{"imapsync-1", imapsyncAt(1)}, {"imapsync-4", imapsyncAt(4)},
	}
	runs := map[string][]measure{}
	for r := 0; r < o.runs; r++ {
		for _, m := range modes {
			for i := range batchBoxes {
				if err := e.resetIMAP(dst(i)); err != nil {
					return err
				}
			}
			os.RemoveAll(state)
			res, err := timed(m.cmd())
			if err != nil {
				return fmt.Errorf("%s: %v", m.name, err)
			}
			for i := range batchBoxes {
				if got := e.folderSummary(dst(i)); got != want[i] {
					return fmt.Errorf("%s: %s differs from %s:\n%s\nwant\n%s", m.name, dst(i), src(i), got, want[i])
				}
			}
			res.msgs, res.bytes = n, total
			fmt.Printf("   %-13s run %d: %6.1f s  %6.1f mailboxes/min  %6.1f MB/s  CPU %6.1f s  machine busy %3.0f%%\n",
				m.name, r+1, res.wall.Seconds(), batchBoxes/res.wall.Minutes(), res.mbPerSec(), res.cpu.Seconds(), 100*res.busy)
			runs[m.name] = append(runs[m.name], res)
		}
	}
	md := batchMarkdown(o, total, modes[0].name, func(yield func(string, result) bool) {
		for _, m := range modes {
			if !yield(m.name, summarise(m.name, runs[m.name])) {
				return
			}
		}
	})
	fmt.Println()
	fmt.Println(md)
	out := o.out
	if out == filepath.Join("bench", "RESULTS.md") {
		out = filepath.Join(root, "bench", "RESULTS-batch.md")
	}
	return os.WriteFile(out, []byte(md), 0o644)
}

// seedBox fills user's mailbox with the given cached messages, round-robin
// over batchFolders, every other one Seen.
func (e *env) seedBox(user, cache string, msgs []os.DirEntry) error {
	box := filepath.Join(e.mailDirs, user, "Maildir")
	os.RemoveAll(box)
	for i, en := range msgs {
		folder := batchFolders[i%len(batchFolders)]
		dir := box
		if folder != "INBOX" {
			dir = filepath.Join(box, "."+folder)
		}
		for _, sub := range []string{"new", "cur", "tmp"} {
			os.MkdirAll(filepath.Join(dir, sub), 0o700)
		}
		name := strings.SplitN(en.Name(), ":", 2)[0] + ":2," + []string{"", "S"}[i%2]
		if err := os.Link(filepath.Join(cache, en.Name()), filepath.Join(dir, "cur", name)); err != nil {
			return err
		}
	}
	return filepath.Walk(box, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, e.mailUID, e.mailUID) })
}

func batchMarkdown(o options, total int64, base string, results func(func(string, result) bool)) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# mailflow batch bench\n\n%s, on %s: %s, %d CPUs, %s; %s; imapsync 2.229.\n\n",
		time.Now().UTC().Format("2006-01-02"), host, cpuModel(), runtime.NumCPU(), memTotal(), version("dovecot", "--version"))
	fmt.Fprintf(&b, "%d IMAP mailboxes of %d messages each (%d in all, %.1f MB: 90%% 2-20 KB, 10%% 50-500 KB with attachments, over three folders, half of them Seen) copied into %d empty mailboxes of the same Dovecot on 127.0.0.1 (no TLS), every destination checked folder by folder (count, flags, bytes) after each run. mailflow: `mailflow migrate --batch` with `--parallel N --max-per-host N` (each mailbox a verified `mailflow migrate` of its own). imapsync: the shell loop its documentation suggests, one mailbox per line through `xargs -P N`. Median of %d rounds, the modes alternating within each round. CPU is the tool's own, its child processes included. `go run ./bench -batch` reproduces it.\n\n",
		batchBoxes, batchPerBox, batchBoxes*batchPerBox, float64(total)/(1<<20), batchBoxes, o.runs)
	b.WriteString("| mode | mailboxes/min | MB/s | msgs/s | CPU | machine busy | wall |\n|---|---:|---:|---:|---:|---:|---:|\n")
	byName := map[string]result{}
	var order []string
	results(func(name string, r result) bool {
		byName[name] = r
		order = append(order, name)
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.0f | %.1f s | %.0f%% | %.1f s |\n",
			name, batchBoxes/r.wall.Minutes(), r.mbps, r.msgsPerSec, r.cpu.Seconds(), 100*r.busy, r.wall.Seconds())
		return true
	})
	b.WriteString("\n")
	for _, pair := range [][2]string{{"mailflow-p1", "imapsync-1"}, {"mailflow-p4", "imapsync-4"}, {"mailflow-p16", "imapsync-4"}} {
		a, c := byName[pair[0]], byName[pair[1]]
		if a.wall > 0 && c.wall > 0 {
			fmt.Fprintf(&b, "- %s / %s: **%.1f×** the mailboxes per minute\n", pair[0], pair[1], c.wall.Seconds()/a.wall.Seconds())
		}
	}
	return b.String()
}
