// Command bench moves the same POP3 mailbox to the same SMTP sink four ways
// and reports medians side by side:
//
//  1. limit: a minimal client that pipelines RETR for every message and
//     discards it (what this Dovecot can give);
//  2. fetchmail, forwarding every message to the Postfix sink, deleting;
//  3. mailflow doing the same with a pass-through pipeline;
//  4. mailflow with a three-script Lua chain that reads and sets headers.
//
// Each run gets a freshly seeded mailbox. It starts Dovecot and Postfix with
// .ci/testenv (installing them, and fetchmail, if missing), builds mailflow,
// and writes the table as markdown (bench/RESULTS.md) with the machine
// noted. A memory case moves one 200 MB message and reports peak RSS.
//
//	go run ./bench                 # 5,000 messages, 3 runs each
//	go run ./bench -n 500 -runs 1  # a quick look
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailflow/mailflow/connectors/pop3"
)

type options struct {
	n, runs   int
	out       string
	portBase  int
	user      string
	memCase   bool
	modes     string
	imap      bool
	imapTools string
	small     bool
	profile   string
	many      int
	batch     bool
	baseline  string // a git revision whose mailflow runs beside this tree's, as mode@base

	rtt        string // -imap: every tool's sessions through a proxy with this round-trip time
	delta      bool   // -imap: passes after a first copy, over an unchanged and a changed source
	limitConns int    // -imap: the limit tool's sessions
	logs       string // -imap: keep each tool run's output in this directory
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "limit-client" {
		os.Exit(limitClient(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "limit-imap" {
		os.Exit(limitIMAP(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "relay-client" {
		os.Exit(relayClient(os.Args[2:]))
	}
	var o options
	flag.IntVar(&o.n, "n", 5000, "messages in the mailbox")
	flag.IntVar(&o.runs, "runs", 3, "runs of each mode (the median is reported)")
	flag.StringVar(&o.out, "out", filepath.Join("bench", "RESULTS.md"), "where to write the markdown table")
	flag.IntVar(&o.portBase, "port-base", 31000, "port base for the bench's own Dovecot and Postfix")
	flag.StringVar(&o.user, "user", "u4", "the Dovecot user whose mailbox is used")
	flag.BoolVar(&o.memCase, "memory", true, "also move one 200 MB message and report peak RSS")
	flag.StringVar(&o.modes, "modes", "limit,relay,fetchmail,mailflow,mailflow-lua", "which modes to run")
	flag.IntVar(&o.many, "many", 0, "instead: run mailflow with this many empty POP3 inputs and report RSS, goroutines and idle CPU (appends to bench/RESULTS.md)")
	flag.StringVar(&o.profile, "profile", "", "write mailflow's CPU profile of each run to PREFIX-MODE-RUN.prof")
	flag.BoolVar(&o.small, "small", false, "every message about 2 KB, instead of the mixed set (writes bench/RESULTS-2k.md unless -out says otherwise)")
	flag.StringVar(&o.imapTools, "imap-tools", "mailflow,imapsync,mbsync", "with -imap: which tools to run (mailflow, imapsync, mbsync, limit)")
	flag.StringVar(&o.rtt, "rtt", "", "with -imap: put every tool's IMAP sessions through a proxy that delays each direction by half this round-trip `TIME` (50ms)")
	flag.BoolVar(&o.delta, "delta", false, "with -imap: after each tool's first copy, time a pass over the unchanged source, then one after 120 flag changes and 50 new messages, checked message by message")
	flag.IntVar(&o.limitConns, "limit-conns", 4, "with -imap: the limit tool's sessions (each way)")
	flag.StringVar(&o.logs, "logs", "", "with -imap: keep what each tool run printed in `DIR`/TOOL-RUN.log")
	flag.BoolVar(&o.batch, "batch", false, "run the batch bench instead: 50 IMAP mailboxes of 400 messages by mailflow migrate --batch (--parallel 1, 4, 16) and imapsync in a shell loop (1 and 4 at once) (writes bench/RESULTS-batch.md)")
	flag.StringVar(&o.baseline, "baseline", "", "also run mailflow built from this git `REV`, as each mailflow mode's twin MODE@base, in the same rounds (a before/after measured side by side)")
	flag.BoolVar(&o.imap, "imap", false, "run the IMAP → IMAP bench instead: mailflow migrate, imapsync and mbsync (writes bench/RESULTS-imap.md)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// env is the running test environment (.ci/testenv's env file).
type env struct {
	file                       string
	pop3s, smtp, ca, password  string
	imap, dovecotConf          string
	mailDirs, sink, testenvDir string
	mailUID                    int
}

func run(o options) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if o.many > 0 {
		return runManyBench(o, root)
	}
	work, err := os.MkdirTemp("", "mailflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755) // getmail6 delivers as nobody, into a Maildir under it

	fmt.Println("== setting up: servers, fetchmail, mailflow")
	testenv := filepath.Join(root, ".ci", "testenv")
	if err := sh(nil, "bash", testenv, "install", "--bench"); err != nil {
		return err
	}
	e := &env{file: filepath.Join(work, "testenv.env")}
	if err := sh([]string{"MAILFLOW_PORT_BASE=" + strconv.Itoa(o.portBase)}, "bash", testenv, "start", e.file); err != nil {
		return err
	}
	defer sh(nil, "bash", testenv, "stop", e.file)
	if err := e.load(); err != nil {
		return err
	}
	mailflow := filepath.Join(work, "mailflow")
	if err := sh(nil, "go", "build", "-o", mailflow, filepath.Join(root, "cmd", "mailflow")); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	base := ""
	if o.baseline != "" {
		if base, err = buildAt(root, o.baseline, work); err != nil {
			return err
		}
	}

	if o.batch {
		return runBatchBench(o, root, work, e, mailflow)
	}
	cache := filepath.Join(e.testenvDir, "bench-cache")
	if o.small {
		fmt.Printf("== generating %d messages of about 2 KB\n", o.n)
		cache += "-2k"
	} else {
		fmt.Printf("== generating %d messages (70%% 2-20 KB, 25%% 50-500 KB with attachments, 5%% 1-5 MB)\n", o.n)
	}
	set := setMixed
	if o.small {
		set = setSmall
	}
	total, err := generate(cache, o.n, e.mailUID, set)
	if err != nil {
		return err
	}
	fmt.Printf("   %d messages, %.1f MB\n", o.n, float64(total)/(1<<20))

	if o.imap {
		fmt.Println("== IMAP → IMAP over 10 folders with flags:", o.imapTools)
		md, err := runIMAP(o, root, work, e, mailflow, base, cache, total)
		if err != nil {
			return err
		}
		fmt.Println()
		fmt.Println(md)
		out := filepath.Join(root, "bench", "RESULTS-imap.md")
		if o.out != filepath.Join("bench", "RESULTS.md") {
			out = o.out
		}
		return os.WriteFile(out, []byte(md), 0o644)
	}

	modes := map[string]func() *exec.Cmd{
		"limit": func() *exec.Cmd {
			return exec.Command(self, "limit-client", e.pop3s, o.user, e.password, e.ca)
		},
		"relay": func() *exec.Cmd {
			return exec.Command(self, "relay-client", e.pop3s, o.user, e.password, e.ca, e.smtp)
		},
		"fetchmail": func() *exec.Cmd {
			rc := filepath.Join(work, "fetchmailrc")
			os.WriteFile(rc, []byte(fmt.Sprintf("set no syslog\nset no bouncemail\n"+
				"poll 127.0.0.1 service %s protocol pop3 timeout 300\n"+
				"  user %q password %q is root here\n"+
				"  ssl sslcertck sslcertfile %q sslcommonname \"localhost\"\n"+
				"  smtphost \"127.0.0.1/%s\" smtpname \"sink@example.net\"\n"+
				"  fetchall nokeep limit 0 batchlimit 0\n",
				port(e.pop3s), o.user, e.password, e.ca, port(e.smtp))), 0o600)
			return exec.Command("fetchmail", "-f", rc, "-N", "--nosyslog", "-s", "--pidfile", filepath.Join(work, "fetchmail.pid"))
		},
		"mailflow": func() *exec.Cmd {
			return exec.Command(mailflow, "run", "--once", "--log-level", "warn", "-c", mailflowConfig(work, "pass", e, o.user, nil))
		},
		// Into a local Maildir instead of Postfix: fetchmail through an MDA
		// (a shell writing each message into the Maildir, as procmail or
		// maildrop would), getmail6 (it has no SMTP output), mailflow.
		"fetchmail-mda": func() *exec.Cmd {
			dir := maildirFor(work, "fetchmail-mda")
			rc := filepath.Join(work, "fetchmailrc-mda")
			mda := fmt.Sprintf("/bin/sh -c 'f=%s/tmp/$$.$(date +%%s%%N); cat > $f && mv $f %s/new/'", dir, dir)
			os.WriteFile(rc, []byte(fmt.Sprintf("set no syslog\nset no bouncemail\n"+
				"poll 127.0.0.1 service %s protocol pop3 timeout 300\n"+
				"  user %q password %q is root here\n"+
				"  ssl sslcertck sslcertfile %q sslcommonname \"localhost\"\n"+
				"  mda %q\n"+
				"  fetchall nokeep limit 0 batchlimit 0\n",
				port(e.pop3s), o.user, e.password, e.ca, mda)), 0o600)
			return exec.Command("fetchmail", "-f", rc, "-N", "--nosyslog", "-s", "--pidfile", filepath.Join(work, "fetchmail.pid"))
		},
		"getmail6": func() *exec.Cmd {
			dir := maildirFor(work, "getmail6")
			gdir := filepath.Join(work, "getmail")
			os.RemoveAll(gdir)
			os.MkdirAll(gdir, 0o700)
			// getmail will not write a Maildir as root: it delivers as nobody.
			chownTree(dir, "nobody")
			rc := filepath.Join(gdir, "getmailrc")
			host, p, _ := strings.Cut(e.pop3s, ":")
			os.WriteFile(rc, []byte(fmt.Sprintf("[retriever]\ntype = SimplePOP3SSLRetriever\nserver = %s\nport = %s\nusername = %s\npassword = %s\nca_certs = %s\n\n"+
				"[destination]\ntype = Maildir\npath = %s/\nuser = nobody\n\n[options]\ndelete = true\nread_all = true\nverbose = 0\nmessage_log_syslog = false\n",
				host, p, o.user, e.password, e.ca, dir)), 0o600)
			return exec.Command("getmail", "--rcfile", rc, "--getmaildir", gdir)
		},
		"mailflow-maildir": func() *exec.Cmd {
			return exec.Command(mailflow, "run", "--once", "--log-level", "warn", "-c", mailflowConfig(work, "maildir", e, o.user, nil, maildirFor(work, "mailflow-maildir")))
		},
		"mailflow-lua": func() *exec.Cmd {
			scripts, _ := filepath.Glob(filepath.Join(root, "bench", "lua", "*.lua"))
			return exec.Command(mailflow, "run", "--once", "--log-level", "warn", "-c", mailflowConfig(work, "lua", e, o.user, scripts))
		},
	}
	if base != "" {
		// Each mailflow mode's twin runs the baseline's binary: the same
		// command with another program.
		for name, mk := range modes {
			if strings.HasPrefix(name, "mailflow") {
				modes[name+"@base"] = func() *exec.Cmd {
					cmd := mk()
					cmd.Path, cmd.Args[0] = base, base
					return cmd
				}
			}
		}
	}
	// Rounds alternate the modes (relay, mailflow, relay, mailflow, ...), so
	// that a change in what else the shared machine does falls on all.
	names := strings.Split(o.modes, ",")
	if base != "" {
		for _, n := range strings.Split(o.modes, ",") {
			if strings.HasPrefix(n, "mailflow") {
				names = append(names, n+"@base")
			}
		}
	}
	for _, name := range names {
		if _, ok := modes[name]; !ok {
			return fmt.Errorf("no mode %q", name)
		}
	}
	byMode := map[string][]measure{}
	for r := 0; r < o.runs; r++ {
		for _, name := range names {
			mk := modes[name]
			if err := e.seed(o.user, cache); err != nil {
				return err
			}
			resetMaildir(maildirFor(work, name))
			cmd := mk()
			if o.profile != "" && strings.HasPrefix(name, "mailflow") {
				cmd.Env = append(os.Environ(), fmt.Sprintf("MAILFLOW_CPUPROFILE=%s-%s-%d.prof", o.profile, name, r+1))
			}
			m, err := timed(cmd)
			if err != nil {
				return fmt.Errorf("%s: %v", name, err)
			}
			if left := e.count(o.user); left != 0 && name != "limit" {
				return fmt.Errorf("%s left %d messages in the mailbox", name, left)
			}
			switch {
			case name == "limit":
			case strings.HasSuffix(name, "-mda") || strings.HasSuffix(name, "-maildir") || name == "getmail6":
				if got := countMaildir(maildirFor(work, name)); got != o.n {
					return fmt.Errorf("%s: %d messages in its Maildir, want %d", name, got, o.n)
				}
			default:
				if err := e.drainSink(o.n, 10*time.Minute); err != nil {
					return fmt.Errorf("%s: %v", name, err)
				}
			}
			m.msgs, m.bytes = o.n, total
			fmt.Printf("   %-13s run %d: %6.2f s  %8.1f msgs/s  %7.1f MB/s  CPU %6.2f s  peak RSS %6.1f MB\n",
				name, r+1, m.wall.Seconds(), m.msgsPerSec(), m.mbPerSec(), m.cpu.Seconds(), float64(m.rssKB)/1024)
			byMode[name] = append(byMode[name], m)
		}
	}
	var results []result
	for _, name := range names {
		results = append(results, summarise(name, byMode[name]))
	}

	var mem *measure
	if o.memCase {
		fmt.Println("== memory case: one 200 MB message, POP3 -> mailflow -> SMTP")
		m, err := memoryCase(e, o.user, work, mailflow)
		if err != nil {
			return err
		}
		fmt.Printf("   %.2f s, peak RSS %.1f MB\n", m.wall.Seconds(), float64(m.rssKB)/1024)
		mem = &m
	}

	md := markdown(o, total, results, mem)
	fmt.Println()
	fmt.Println(md)
	out := o.out
	if o.small && out == filepath.Join("bench", "RESULTS.md") {
		out = filepath.Join("bench", "RESULTS-2k.md")
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	return os.WriteFile(out, []byte(md), 0o644)
}

// runManyBench is -many: no Dovecot or Postfix is needed.
func runManyBench(o options, root string) error {
	work, err := os.MkdirTemp("", "mailflow-bench-many-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	mailflow := filepath.Join(work, "mailflow")
	if err := sh(nil, "go", "build", "-o", mailflow, filepath.Join(root, "cmd", "mailflow")); err != nil {
		return err
	}
	var rs []manyResult
	for _, c := range []struct{ kind, sched string }{{"pop3", "5m"}, {"pop3", "1m"}, {"imap-idle", "5m"}} {
		fmt.Printf("== %d %s inputs, schedule %s\n", o.many, c.kind, c.sched)
		r, err := runMany(mailflow, work, c.kind, o.many, c.sched, 2*time.Minute)
		if err != nil {
			return err
		}
		fmt.Printf("   RSS %.1f MB (peak %.1f), %d goroutines, CPU %.2f%% of a core, %d sessions in %.0f s\n", r.rssMB, r.peakMB, r.goroutines, 100*r.cpuShare, r.polls, r.window.Seconds())
		rs = append(rs, r)
	}
	md := manyMarkdown(rs)
	fmt.Println(md)
	if o.out == filepath.Join("bench", "RESULTS.md") {
		f, err := os.OpenFile(filepath.Join(root, o.out), os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString(md)
		return err
	}
	return os.WriteFile(o.out, []byte(md), 0o644)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the bench from the mailflow repository (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

func sh(extraEnv []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return nil
}

func (e *env) load() error {
	b, err := os.ReadFile(e.file)
	if err != nil {
		return err
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vals[k] = v
		}
	}
	e.pop3s, e.smtp, e.ca = vals["MAILFLOW_TEST_POP3S"], vals["MAILFLOW_TEST_SMTP"], vals["MAILFLOW_TEST_CA"]
	e.password, e.mailDirs, e.sink = vals["MAILFLOW_TEST_POP3_PASSWORD"], vals["MAILFLOW_TEST_POP3_MAILDIRS"], vals["MAILFLOW_TEST_SMTP_SINK"]
	e.testenvDir = vals["MAILFLOW_TESTENV_DIR"]
	e.imap, e.dovecotConf = vals["MAILFLOW_TEST_IMAP"], vals["MAILFLOW_TEST_DOVECOT_CONF"]
	e.mailUID, _ = strconv.Atoi(vals["MAILFLOW_TEST_POP3_UID"])
	if e.pop3s == "" || e.smtp == "" {
		return fmt.Errorf("%s lacks the server addresses", e.file)
	}
	return nil
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// seed empties the user's mailbox and links every cached message into it,
// as Dovecot stores mail (LF line ends, owned by the mail user).
func (e *env) seed(user, cache string) error {
	box := filepath.Join(e.mailDirs, user, "Maildir")
	for _, sub := range []string{"new", "cur", "tmp"} {
		os.RemoveAll(filepath.Join(box, sub))
		if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
			return err
		}
		os.Chown(filepath.Join(box, sub), e.mailUID, e.mailUID)
	}
	for _, f := range []string{"dovecot-uidlist", "dovecot.index", "dovecot.index.cache", "dovecot.index.log"} {
		os.Remove(filepath.Join(box, f))
	}
	ents, err := os.ReadDir(cache)
	if err != nil {
		return err
	}
	for _, en := range ents {
		if err := os.Link(filepath.Join(cache, en.Name()), filepath.Join(box, "new", en.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) count(user string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(e.mailDirs, user, "Maildir", sub))
		n += len(ents)
	}
	return n
}

// drainSink waits until Postfix has delivered n messages into the sink, so
// that its backlog does not slow the next run, then empties the sink.
func (e *env) drainSink(n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		have := 0
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(e.sink, sub))
			have += len(ents)
		}
		if have >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sink got %d of %d messages in %v", have, n, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(e.sink, sub))
		for _, en := range ents {
			os.Remove(filepath.Join(e.sink, sub, en.Name()))
		}
	}
	return nil
}

// generate writes n messages into dir (once; a later bench reuses them):
// 70% 2-20 KB of text, 25% 50-500 KB with a base64 attachment, 5% 1-5 MB.
// Message sets: mixed (70% 2-20 KB, 25% 50-500 KB with attachments, 5%
// 1-5 MB), small (about 2 KB each), mailboxes (90% 2-20 KB, 10% 50-500 KB
// with attachments: a person's mailbox without the largest, for batches).
const (
	setMixed     = "mixed"
	setSmall     = "small"
	setMailboxes = "mailboxes"
)

func generate(dir string, n, uid int, set string) (int64, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == n {
		var total int64
		for _, en := range ents {
			if fi, err := en.Info(); err == nil {
				total += fi.Size()
			}
		}
		return total, nil
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(42, 5000))
	words := strings.Fields("the of and to in is was for on that with as it by at from this be are or have an which not but all were when we there can more if out so")
	var total int64
	for i := 0; i < n; i++ {
		var size int
		attach := false
		switch p := rng.IntN(100); {
		case set == setSmall:
			size = 2<<10 - 400 // about 2 KB with the header
		case set == setMailboxes && p < 90, set == setMixed && p < 70:
			size = 2<<10 + rng.IntN(18<<10)
		case set == setMailboxes, p < 95:
			size, attach = 50<<10+rng.IntN(450<<10), true
		default:
			size, attach = 1<<20+rng.IntN(4<<20), true
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Return-Path: <sender%d@example.org>\nReceived: from mx%d.example.org by mail.example.net; Sat, 21 Nov 2026 10:%02d:00 +0000\n", i%50, i%7, i%60)
		fmt.Fprintf(&b, "From: Sender %d <sender%d@example.org>\nTo: user@example.net\nSubject: Bench message %d\n", i%50, i%50, i)
		fmt.Fprintf(&b, "Date: Sat, 21 Nov 2026 10:%02d:%02d +0000\nMessage-ID: <bench-%d@example.org>\nMIME-Version: 1.0\n", i%60, i%60, i)
		if i%5 == 0 {
			b.WriteString("List-Id: Bench list <bench.example.org>\n")
		}
		text := func(limit int) {
			line := 0
			for b.Len() < limit {
				b.WriteString(words[rng.IntN(len(words))])
				if line++; line%12 == 0 {
					b.WriteByte('\n')
				} else {
					b.WriteByte(' ')
				}
			}
			b.WriteByte('\n')
		}
		if !attach {
			b.WriteString("Content-Type: text/plain; charset=utf-8\n\n")
			text(size)
		} else {
			b.WriteString("Content-Type: multipart/mixed; boundary=\"bench-boundary\"\n\n--bench-boundary\nContent-Type: text/plain; charset=utf-8\n\n")
			text(b.Len() + 2000)
			b.WriteString("--bench-boundary\nContent-Type: application/octet-stream; name=\"data.bin\"\nContent-Disposition: attachment; filename=\"data.bin\"\nContent-Transfer-Encoding: base64\n\n")
			raw := make([]byte, (size-b.Len())*3/4)
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			enc := base64.StdEncoding.EncodeToString(raw)
			for len(enc) > 76 {
				b.WriteString(enc[:76])
				b.WriteByte('\n')
				enc = enc[76:]
			}
			b.WriteString(enc + "\n--bench-boundary--\n")
		}
		name := filepath.Join(dir, fmt.Sprintf("%d.M%dP1.bench,S=%d", 1700000000+i, i, b.Len()))
		if err := os.WriteFile(name, []byte(b.String()), 0o600); err != nil {
			return 0, err
		}
		os.Chown(name, uid, uid)
		total += int64(b.Len())
	}
	return total, nil
}

// maildirFor is a fresh Maildir for a mode's run (emptied when made).
func maildirFor(work, name string) string {
	dir := filepath.Join(work, "maildir-"+name)
	return dir
}

// resetMaildir empties a mode's Maildir before a run.
func resetMaildir(dir string) {
	os.RemoveAll(dir)
	for _, sub := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
}

// chownTree gives dir and what is in it to user (by name).
func chownTree(dir, user string) {
	u, err := osuser.Lookup(user)
	if err != nil {
		return
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, uid, gid) })
}

func countMaildir(dir string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		n += len(ents)
	}
	return n
}

// mailflowConfig writes a config moving the bench mailbox through scripts
// to the Postfix sink, or into the Maildir maildir when it is not "".
func mailflowConfig(dir, name string, e *env, user string, scripts []string, maildir ...string) string {
	state := filepath.Join(dir, "state-"+name)
	os.RemoveAll(state) // each run starts without a ledger, as on a fresh mailbox
	// tls = "none" to the sink, as fetchmail talks to its smtphost.
	output := table{"name": "sink", "type": "smtp", "address": e.smtp, "tls": "none", "to": []string{"sink@example.net"}}
	if len(maildir) > 0 {
		output = table{"name": "sink", "type": "maildir", "path": maildir[0]}
	}
	path := filepath.Join(dir, "mailflow-"+name+".toml")
	writeConfig(path, table{
		"state_dir": state,
		"input": []table{{"name": "bench", "type": "pop3", "address": e.pop3s, "tls": "implicit", "tls_ca_file": e.ca,
			"username": user, "password": e.password, "pipeline": "main"}},
		"pipeline": []table{{"name": "main", "scripts": scripts, "outputs": []string{"sink"}}},
		"output":   []table{output},
	}, os.Getenv("BENCH_MAILFLOW_GLOBAL"))
	return path
}

type measure struct {
	wall  time.Duration
	rssKB int64
	msgs  int
	bytes int64
	cpu   time.Duration // the tool's own user + system time
	busy  float64       // share of the machine's CPUs busy (every process) during the run
}

func (m measure) msgsPerSec() float64 { return float64(m.msgs) / m.wall.Seconds() }
func (m measure) mbPerSec() float64   { return float64(m.bytes) / (1 << 20) / m.wall.Seconds() }

// timed runs cmd and returns its wall time and peak RSS. The RSS is the
// high-water mark the kernel keeps for the process (VmHWM), read every 10 ms
// while it runs: wait4's ru_maxrss would not do, as Linux carries the
// parent's (this bench's) mark over into a child across exec.
func timed(cmd *exec.Cmd) (measure, error) {
	var stderr strings.Builder
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	} else {
		cmd.Stderr = io.MultiWriter(cmd.Stderr, &stderr)
	}
	busy0, all0 := cpuTicks()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return measure{}, err
	}
	done := make(chan struct{})
	hwm := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if kb := vmHWM(cmd.Process.Pid); kb > peak {
				peak = kb
			}
			select {
			case <-done:
				hwm <- peak
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(start)
	close(done)
	rss := <-hwm
	if err != nil {
		// fetchmail exits 1 when there was no mail; anything else is a failure.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.HasSuffix(cmd.Path, "fetchmail") || ee.ExitCode() != 1 {
			return measure{}, fmt.Errorf("%v\n%s", err, stderr.String())
		}
	}
	busy1, all1 := cpuTicks()
	m := measure{wall: wall, rssKB: rss}
	if cmd.ProcessState != nil {
		m.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if all1 > all0 {
		m.busy = float64(busy1-busy0) / float64(all1-all0)
	}
	return m, nil
}

// cpuTicks reads the machine's busy and total CPU time from /proc/stat
// (every CPU, every process), in clock ticks.
func cpuTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// vmHWM is the peak resident set of a running process, in KB (0 if gone).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
}

type result struct {
	name             string
	msgsPerSec, mbps float64
	rssKB            int64
	wall             time.Duration
	cpu              time.Duration // the tool's own
	busy             float64       // the whole machine's busy share
}

func summarise(name string, rs []measure) result {
	med := func(f func(measure) float64) float64 {
		v := make([]float64, len(rs))
		for i, m := range rs {
			v[i] = f(m)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return result{
		name:       name,
		msgsPerSec: med(measure.msgsPerSec),
		mbps:       med(measure.mbPerSec),
		rssKB:      int64(med(func(m measure) float64 { return float64(m.rssKB) })),
		wall:       time.Duration(med(func(m measure) float64 { return float64(m.wall) })),
		cpu:        time.Duration(med(func(m measure) float64 { return float64(m.cpu) })),
		busy:       med(func(m measure) float64 { return m.busy }),
	}
}

// memoryCase moves one 200 MB message and returns mailflow's peak RSS.
func memoryCase(e *env, user, work, mailflow string) (measure, error) {
	cache := filepath.Join(work, "big")
	os.MkdirAll(cache, 0o755)
	var b strings.Builder
	b.WriteString("From: big@example.org\nTo: user@example.net\nSubject: one large attachment\nMessage-ID: <big@example.org>\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nsee attachment\n--b\n" +
		"Content-Type: application/octet-stream; name=\"big.bin\"\nContent-Transfer-Encoding: base64\n\n")
	f, err := os.Create(filepath.Join(cache, "1700000000.M1P1.big"))
	if err != nil {
		return measure{}, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(b.String())
	rng := rand.New(rand.NewPCG(1, 2))
	line := make([]byte, 57)
	var size int64
	for size < 200<<20 {
		for i := range line {
			line[i] = byte(rng.Uint32())
		}
		s := base64.StdEncoding.EncodeToString(line) + "\n"
		w.WriteString(s)
		size += int64(len(s))
	}
	w.WriteString("--b--\n")
	w.Flush()
	f.Close()
	os.Chown(f.Name(), e.mailUID, e.mailUID)
	if err := e.seed(user, cache); err != nil {
		return measure{}, err
	}
	m, err := timed(exec.Command(mailflow, "run", "--once", "--log-level", "warn", "-c", mailflowConfig(work, "big", e, user, nil)))
	if err != nil {
		return m, err
	}
	if err := e.drainSink(1, 5*time.Minute); err != nil {
		return m, err
	}
	m.msgs, m.bytes = 1, size
	return m, nil
}

func markdown(o options, total int64, rs []result, mem *measure) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# mailflow bench\n\n")
	fmt.Fprintf(&b, "%s, on %s: %s, %d CPUs, %s; %s; %s.\n\n", time.Now().UTC().Format("2006-01-02"), host,
		cpuModel(), runtime.NumCPU(), memTotal(), version("dovecot", "--version"), version("postconf", "-h", "mail_version"))
	set, cmd := "70% 2-20 KB text, 25% 50-500 KB with attachments, 5% 1-5 MB", "go run ./bench"
	if o.small {
		set, cmd = "every message about 2 KB", "go run ./bench -small"
	}
	fmt.Fprintf(&b, "%d messages, %.1f MB (%s), "+
		"POP3 over TLS from Dovecot to a Postfix sink on 127.0.0.1; each run on a freshly seeded mailbox; "+
		"median of %d runs, the modes alternating run by run. `%s` reproduces it.\n\n", o.n, float64(total)/(1<<20), set, o.runs, cmd)
	b.WriteString("| mode | msgs/s | vs relay | CPU s / 1000 msgs | vs relay | peak RSS | machine busy | wall |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	by := map[string]result{}
	for _, r := range rs {
		by[r.name] = r
	}
	relay, haveRelay := by["relay"]
	for _, r := range rs {
		cpuPerK := r.cpu.Seconds() * 1000 / float64(o.n)
		vsRate, vsCPU := "", ""
		if haveRelay && r.name != "limit" {
			vsRate = fmt.Sprintf("%.0f%%", 100*r.msgsPerSec/relay.msgsPerSec)
			vsCPU = fmt.Sprintf("%.2f×", r.cpu.Seconds()/relay.cpu.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %.2f | %s | %.1f MB | %.0f%% | %.1f s |\n", label(r.name), r.msgsPerSec, vsRate, cpuPerK, vsCPU, float64(r.rssKB)/1024, 100*r.busy, r.wall.Seconds())
	}
	b.WriteString("\n")
	for _, mf := range []string{"mailflow", "mailflow-lua"} {
		m, ok := by[mf]
		if !ok {
			continue
		}
		if f, ok := by["fetchmail"]; ok {
			fmt.Fprintf(&b, "- %s / fetchmail: **%.1f×** the messages per second\n", label(mf), m.msgsPerSec/f.msgsPerSec)
		}
		if l, ok := by["limit"]; ok {
			fmt.Fprintf(&b, "- %s / limit: %.0f%% of what this Dovecot gives a client that only reads\n", label(mf), 100*m.msgsPerSec/l.msgsPerSec)
		}
	}
	if m, ok := by["mailflow-maildir"]; ok {
		for _, other := range []string{"fetchmail-mda", "getmail6"} {
			if o, ok := by[other]; ok {
				fmt.Fprintf(&b, "- %s / %s: **%.1f×** the messages per second, %.1f× less CPU\n", label("mailflow-maildir"), label(other), m.msgsPerSec/o.msgsPerSec, o.cpu.Seconds()/m.cpu.Seconds())
			}
		}
	}
	b.WriteString(`
Notes. The relay is the practical end-to-end limit: the same connections as
mailflow (pipelined RETR with a window of 16, four SMTP connections, DELE
once all was accepted) and nothing else: no ledger, no parsing, no hashing,
no spooling. What mailflow spends beyond it is the price of the delivery
contract (the journal, the group-committed ledger, the digest that tells a
reused id from the message it named). The limit reads without deleting: a
POP3 ceiling, not an end-to-end one. fetchmail is held back less by its work
than by a stall of about 40 ms after each message's final dot (the fault
campaign's strace showed it): it writes every line in its own write() on a
socket without TCP_NODELAY, so the small last write waits, under Nagle's
algorithm, for the receiver's delayed ACK of the one before. Through an MDA
into a Maildir it avoids that stall but starts a process per message.
getmail6 has no SMTP output, so it is compared on the Maildir rows.
`)
	if mem != nil {
		fmt.Fprintf(&b, "\nMemory: one %.0f MB message moved POP3 → mailflow → SMTP in %.1f s with a peak RSS of **%.1f MB** (it is spooled to disk, never held whole).\n",
			float64(mem.bytes)/(1<<20), mem.wall.Seconds(), float64(mem.rssKB)/1024)
	}
	return b.String()
}

func label(name string) string {
	if n, ok := strings.CutSuffix(name, "@base"); ok {
		return label(n) + " (baseline)"
	}
	return map[string]string{
		"limit":            "limit (pipelined RETR, discard)",
		"relay":            "relay (RETR → 4 SMTP, no ledger/parse/hash)",
		"fetchmail-mda":    "fetchmail " + strings.Fields(version("fetchmail", "--version") + " ?")[0] + " → MDA → Maildir",
		"getmail6":         "getmail6 → Maildir",
		"mailflow-maildir": "mailflow → Maildir",
		"fetchmail":        "fetchmail " + strings.Fields(version("fetchmail", "--version") + " ?")[0],
		"mailflow":         "mailflow, pass-through",
		"mailflow-lua":     "mailflow, 3 Lua scripts",
	}[name]
}

func version(cmd string, args ...string) string {
	out, err := exec.Command(cmd, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return cmd + " ?"
	}
	if cmd == "fetchmail" {
		if i := strings.Index(string(out), "release "); i >= 0 {
			v, _, _ := strings.Cut(strings.Fields(string(out)[i+8:])[0], "+")
			return v
		}
	}
	line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if cmd == "postconf" {
		return "Postfix " + line
	}
	if cmd == "dovecot" {
		return "Dovecot " + strings.Fields(line)[0]
	}
	return line
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			return strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return "? RAM"
}

// limitClient logs in, pipelines RETR for every message (a window of 64
// outstanding), reads each to the end and discards it: the most a client
// can get from this server.
// popLogin logs in over implicit TLS (the CA in caFile) and lists the
// mailbox.
func popLogin(addr, user, password, caFile string) (*pop3.Client, []pop3.MessageInfo, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := pop3.Dial(context.Background(), addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, time.Minute)
	if err != nil {
		return nil, nil, err
	}
	if err = c.User(user); err == nil {
		err = c.Pass(password)
	}
	var list []pop3.MessageInfo
	if err == nil {
		list, err = c.List()
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, list, nil
}

// retrEach pipelines RETR for every listed message, window outstanding at
// most, and hands each to read in order.
func retrEach(c *pop3.Client, list []pop3.MessageInfo, window int, read func(i int, r io.Reader) error) error {
	var err error
	sent := 0
	for i := 0; err == nil && i < len(list); i++ {
		for sent < len(list) && sent < i+window {
			err = c.SendRetr(list[sent].Number)
			sent++
		}
		if err == nil {
			err = c.Flush()
		}
		var r io.Reader
		if err == nil {
			r, err = c.ReadRetr(0)
		}
		if err == nil {
			err = read(i, r)
		}
	}
	return err
}

func limitClient(args []string) int {
	if len(args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: bench limit-client ADDR USER PASSWORD CA")
		return 2
	}
	c, list, err := popLogin(args[0], args[1], args[2], args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "limit client:", err)
		return 1
	}
	err = retrEach(c, list, 64, func(_ int, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err == nil {
		err = c.Quit()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "limit client:", err)
		return 1
	}
	return 0
}

func imapMarkdown(o options, rtt time.Duration, total int64, rs []result) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# mailflow IMAP bench\n\n")
	fmt.Fprintf(&b, "%s, on %s: %s, %d CPUs, %s; %s; %s; %s.\n\n", time.Now().UTC().Format("2006-01-02"), host,
		cpuModel(), runtime.NumCPU(), memTotal(), version("dovecot", "--version"), version("mbsync", "--version"), "imapsync 2.229")
	fmt.Fprintf(&b, "%d messages, %.1f MB (70%% 2-20 KB text, 25%% 50-500 KB with attachments, 5%% 1-5 MB) over 10 folders "+
		"with flags, copied IMAP → IMAP between two users of one Dovecot on 127.0.0.1 (no TLS, so that the tools' own work "+
		"is measured), into an empty destination each run; every run checked folder by folder (count, flags, bytes). "+
		"Median of %d rounds, each running every tool once, in turn. CPU is the tool's own (user + system); machine busy is "+
		"the share of both CPUs busy with anything (the tool and Dovecot's processes) during its run. "+
		"`go run ./bench -imap` reproduces it.\n\n", o.n, float64(total)/(1<<20), o.runs)
	if rtt > 0 {
		fmt.Fprintf(&b, "Every tool's IMAP sessions went through a proxy in the bench that holds each chunk %v in each direction "+
			"(a round trip of %v, no bandwidth limit of its own; `-rtt %v`). The proxy's CPU is the bench's: it is in machine busy, not in a tool's CPU.\n\n", rtt/2, rtt, rtt)
	}
	if strings.Contains(o.imapTools, "limit") {
		fmt.Fprintf(&b, "limit is the bench's own minimal copier (bench/limitimap.go): %d lanes, each a source session streaming "+
			"one FETCH 1:* per folder and a destination session APPENDing into that folder with the same flags and date without "+
			"waiting for each answer; no ledger, no hashing. (go-imap v2 beta.8 waits for the server's \"+\" before each literal "+
			"over 4 KiB; the copy patched in third_party/ does not.)\n\n", o.limitConns)
	}
	b.WriteString("| tool | msgs/s | MB/s | peak RSS | CPU | machine busy | wall |\n|---|---:|---:|---:|---:|---:|---:|\n")
	by := map[string]result{}
	for _, r := range rs {
		by[r.name] = r
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.1f MB | %.1f s | %.0f%% | %.1f s |\n", strings.TrimPrefix(r.name, "imap-"), r.msgsPerSec, r.mbps,
			float64(r.rssKB)/1024, r.cpu.Seconds(), 100*r.busy, r.wall.Seconds())
	}
	m := by["imap-mailflow"]
	for _, other := range []string{"imapsync", "mbsync"} {
		if r, ok := by["imap-"+other]; ok && r.msgsPerSec > 0 {
			fmt.Fprintf(&b, "\n- mailflow / %s: **%.1f×** the messages per second", other, m.msgsPerSec/r.msgsPerSec)
		}
	}
	b.WriteString("\n")
	return b.String()
}

// buildAt builds cmd/mailflow as it was at the git revision rev, in a
// worktree of its own under work, and returns the binary.
func buildAt(root, rev, work string) (string, error) {
	tree := filepath.Join(work, "baseline-tree")
	if err := sh(nil, "git", "-C", root, "worktree", "add", "--detach", tree, rev); err != nil {
		return "", err
	}
	defer sh(nil, "git", "-C", root, "worktree", "remove", "--force", tree)
	bin := filepath.Join(work, "mailflow-base")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mailflow")
	cmd.Dir, cmd.Stdout, cmd.Stderr = tree, os.Stdout, os.Stderr
	return bin, cmd.Run()
}
