// Command mboxbench imports the same mbox into a Maildir three ways and
// reports medians side by side:
//
//  1. mailflow: the mbox input and the Maildir output through the engine,
//     in a process of its own (this command run as a child), as "mailflow
//     run" would poll it once: every message synced to disk, file and
//     directory, and recorded in the ledger;
//  2. formail -s (procmail), splitting the file into one file per message,
//     From_ line included, through sh -c 'cat > …' as its manual shows;
//  3. Python's mailbox module: for m in mbox: maildir.add(m), the way its
//     documentation copies a mailbox; and, as "python-bytes", the fastest
//     way the module allows (get_bytes, no parsing).
//
// Neither formail nor Python syncs anything. The modes alternate within
// each round (the machine's noise falls on all of them alike), each run
// into an empty directory, and each run is checked: as many files as
// messages. CPU and peak RSS are the tool's own, its child processes
// included (wait4's rusage; each starts with this command's own few MB,
// which Linux counts in a child's peak).
//
//	go run ./connectors/mbox/mboxbench                  # mixed sizes, 3 rounds, in $TMPDIR
//	go run ./connectors/mbox/mboxbench -mix small -n 20000
//	go run ./connectors/mbox/mboxbench -dir /dev/shm    # without the disk
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	_ "github.com/mailflow/mailflow/connectors/maildir"
	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/plugins"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "import" {
		os.Exit(importOnce(os.Args[2]))
	}
	if len(os.Args) == 5 && os.Args[1] == "generate" {
		var n int
		fmt.Sscan(os.Args[3], &n)
		if _, err := generate(os.Args[2], n, os.Args[4]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	n := flag.Int("n", 0, "messages (default: 2000 mixed, 20000 small)")
	mix := flag.String("mix", "mixed", `"mixed" (70% 2-20 KB text, 25% 50-500 KB with an attachment, 5% 1-5 MB) or "small" (2 KB each)`)
	runs := flag.Int("runs", 3, "rounds; the median of each mode is reported")
	dir := flag.String("dir", os.TempDir(), "where the mbox and the Maildirs are written")
	modes := flag.String("modes", "mailflow,formail,python,python-bytes", "modes to run")
	flag.Parse()
	if *n == 0 {
		*n = map[string]int{"mixed": 2000, "small": 20000}[*mix]
	}
	if err := run(*n, *mix, *runs, *dir, strings.Split(*modes, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "mboxbench:", err)
		os.Exit(1)
	}
}

type result struct {
	wall, cpu time.Duration
	rss       int64 // KB
}

func run(n int, mix string, runs int, base string, modes []string) error {
	work, err := os.MkdirTemp(base, "mboxbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src.mbox")
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// In a child: the peak RSS a process reports includes what its parent
	// held when it was started (Linux carries the parent's high-water mark
	// over a vfork and exec), and making the file takes tens of MB.
	gen := exec.Command(self, "generate", src, fmt.Sprint(n), mix)
	gen.Stderr = os.Stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("generating the mbox: %w", err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	size := st.Size()
	fmt.Fprintf(os.Stderr, "%d messages, %.1f MB in %s\n", n, float64(size)/1e6, src)
	results := map[string][]result{}
	for round := range runs {
		order := slices.Clone(modes)
		// A different mode goes first each round.
		for range round % len(order) {
			order = append(order[1:], order[0])
		}
		for _, mode := range order {
			out := filepath.Join(work, "out-"+mode)
			os.RemoveAll(out)
			cmd, err := command(mode, self, work, src, out)
			if err != nil {
				return err
			}
			r, err := measure(cmd)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			if got := count(out); got != n {
				return fmt.Errorf("%s made %d messages of %d", mode, got, n)
			}
			fmt.Fprintf(os.Stderr, "round %d %-13s %6.2f s wall %6.2f s CPU %7.1f MB RSS\n", round+1, mode, r.wall.Seconds(), r.cpu.Seconds(), float64(r.rss)/1024)
			results[mode] = append(results[mode], r)
			os.RemoveAll(out)
			os.RemoveAll(filepath.Join(work, "state"))
		}
	}
	report(os.Stdout, n, size, mix, runs, base, modes, results)
	return nil
}

// command is the command line of one mode.
func command(mode, self, work, src, out string) (*exec.Cmd, error) {
	switch mode {
	case "mailflow":
		var conf bytes.Buffer
		err := toml.NewEncoder(&conf).Encode(map[string]any{
			"state_dir": filepath.Join(work, "state"),
			"input":     []map[string]any{{"name": "src", "type": "mbox", "path": src, "pipeline": "p"}},
			"pipeline":  []map[string]any{{"name": "p", "outputs": []string{"dst"}}},
			"output":    []map[string]any{{"name": "dst", "type": "maildir", "path": out}},
		})
		if err != nil {
			return nil, err
		}
		path := filepath.Join(work, "mailflow.toml")
		if err := os.WriteFile(path, conf.Bytes(), 0o600); err != nil {
			return nil, err
		}
		return exec.Command(self, "import", path), nil
	case "formail":
		if err := os.MkdirAll(filepath.Join(out, "new"), 0o700); err != nil {
			return nil, err
		}
		cmd := exec.Command("formail", "-s", "sh", "-c", `cat > "$0/new/$FILENO"`, out)
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		cmd.Stdin = f
		return cmd, nil
	case "python":
		return exec.Command("python3", "-c", `import mailbox, sys
src = mailbox.mbox(sys.argv[1], create=False)
dst = mailbox.Maildir(sys.argv[2])
for m in src:
    dst.add(m)
`, src, out), nil
	case "python-bytes":
		return exec.Command("python3", "-c", `import mailbox, sys
src = mailbox.mbox(sys.argv[1], create=False)
dst = mailbox.Maildir(sys.argv[2])
for key in src.iterkeys():
    dst.add(src.get_bytes(key))
`, src, out), nil
	}
	return nil, fmt.Errorf("no mode %q", mode)
}

func measure(cmd *exec.Cmd) (result, error) {
	cmd.Stderr = os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if f, ok := cmd.Stdin.(*os.File); ok {
		f.Close()
	}
	if err != nil {
		return result{}, err
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return result{wall: wall, cpu: cpu, rss: ru.Maxrss}, nil
}

// count is the number of files in out's new/ and cur/.
func count(out string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(out, sub))
		n += len(ents)
	}
	return n
}

// importOnce is the mailflow mode: it opens the engine on the config at
// path and polls the input once, as "mailflow run" would on its schedule.
func importOnce(path string) int {
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e, err := engine.Open(cfg, plugins.Default, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Close()
	st, err := e.PollOnce(context.Background(), "src")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if st.Deferred > 0 || st.Quarantined > 0 {
		fmt.Fprintf(os.Stderr, "not every message was delivered: %+v\n", st)
		return 1
	}
	return 0
}

// generate writes an mbox of n messages as Google Takeout writes it
// (CRLF, X-Gmail-Labels, "From " lines in bodies quoted), and returns its
// size.
func generate(path string, n int, mix string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w, _ := mbox.NewWriter(f, mbox.Mboxrd)
	r := rand.New(rand.NewPCG(29, 1))
	labels := []string{"Inbox,Opened,Category Updates", "Archived,Work,Opened", "Sent,Opened", "Inbox,Unread,Important", "Archived,Receipts,Category Purchases,Opened"}
	words := strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa From quebec romeo")
	for i := range n {
		var b strings.Builder
		fmt.Fprintf(&b, "X-GM-THRID: 17%017d\r\nX-Gmail-Labels: %s\r\nDelivered-To: me@example.org\r\nReceived: by 2002:a05:6a10:1234 with SMTP id x; Wed, 5 Jan 2022 04:34:56 -0800 (PST)\r\n", i, labels[i%len(labels)])
		fmt.Fprintf(&b, "Message-ID: <%d.bench@example.org>\r\nDate: Wed, 5 Jan 2022 12:34:56 +0000\r\nFrom: Sender %d <sender%d@example.org>\r\nTo: me@example.org\r\nSubject: message %d\r\nMIME-Version: 1.0\r\n", i, i%50, i%50, i)
		text := func(size int) {
			for line := 0; b.Len() < size; line++ {
				for k := 0; k < 10; k++ {
					if k == 0 && line%20 == 7 {
						b.WriteString("From ")
					}
					b.WriteString(words[r.IntN(len(words))])
					b.WriteByte(' ')
				}
				b.WriteString("\r\n")
			}
		}
		var size, attach int
		switch p := r.IntN(100); {
		case mix == "small":
			size = 2 << 10
		case p < 70:
			size = 2<<10 + r.IntN(18<<10)
		case p < 95:
			size, attach = 2<<10, 50<<10+r.IntN(450<<10)
		default:
			size, attach = 2<<10, 1<<20+r.IntN(4<<20)
		}
		if attach == 0 {
			b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
			text(size)
		} else {
			b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
			text(b.Len() + size)
			b.WriteString("--b1\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
			raw := make([]byte, attach)
			for k := range raw {
				raw[k] = byte(r.Uint32())
			}
			enc := base64.StdEncoding.EncodeToString(raw)
			for len(enc) > 76 {
				b.WriteString(enc[:76] + "\r\n")
				enc = enc[76:]
			}
			b.WriteString(enc + "\r\n--b1--\r\n")
		}
		from := fmt.Sprintf("From 17%017d@xxx Wed Jan 05 12:34:56 +0000 2022", i)
		if _, err := w.WriteMessage(from, strings.NewReader(b.String())); err != nil {
			return 0, err
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func report(w io.Writer, n int, size int64, mix string, runs int, dir string, modes []string, results map[string][]result) {
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "%s, on %s: %s, %d CPUs; load average before: %s\n\n", time.Now().Format("2006-01-02"), host, cpuModel(), runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(w, "%d messages (%s), %.1f MB, imported from an mbox into a Maildir in %s; median of %d rounds, the modes alternating.\n\n", n, mix, float64(size)/1e6, dir, runs)
	fmt.Fprintln(w, "| mode | msgs/s | MB/s | CPU s | peak RSS | wall | wall, every run |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
	rate := map[string]float64{}
	for _, m := range modes {
		rs := results[m]
		wall := median(rs, func(r result) float64 { return r.wall.Seconds() })
		rate[m] = float64(n) / wall
		var each []string
		for _, r := range rs {
			each = append(each, fmt.Sprintf("%.2f", r.wall.Seconds()))
		}
		fmt.Fprintf(w, "| %s | %.0f | %.1f | %.2f | %.1f MB | %.2f s | %s |\n", m, rate[m], float64(size)/1e6/wall,
			median(rs, func(r result) float64 { return r.cpu.Seconds() }), median(rs, func(r result) float64 { return float64(r.rss) / 1024 }), wall, strings.Join(each, " / "))
	}
	fmt.Fprintln(w)
	for _, other := range modes {
		if other != "mailflow" && rate["mailflow"] > 0 {
			fmt.Fprintf(w, "- mailflow / %s: **%.1f×** the messages per second\n", other, rate["mailflow"]/rate[other])
		}
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
