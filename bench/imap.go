package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The IMAP → IMAP bench (go run ./bench -imap): one Dovecot user's mailbox
// of n mixed messages over 10 folders with flags is copied into another
// user's, from an empty destination each run, by mailflow migrate, imapsync
// and mbsync in turn; medians of o.runs. Each run is checked: every folder
// holds at the destination what it holds at the source, flags included.

var imapFolders = []string{"INBOX", "Archive", "Archive/2023", "Archive/2024", "Projects", "Projects/alpha", "Sent", "Drafts", "Lists/go", "Lists/rust"}

// imapFlags are Maildir info letters: none, Seen, Flagged+Seen, Replied+Seen, Draft.
var imapFlags = []string{"", "S", "FS", "RS", "D"}

const (
	imapSrc = "u9"
	imapDst = "u10"
)

// imapRun is one IMAP bench's setting: the servers, the tools, and where
// they connect (Dovecot itself, or -rtt's delaying proxy in front of it).
type imapRun struct {
	o       options
	e       *env
	work    string
	addr    string // where the tools connect: e.imap, or the proxy's
	modes   map[string]func() *exec.Cmd
	names   []string
	state   string // mailflow's --state
	mbstate string // mbsync's SyncState
}

func runIMAP(o options, root, work string, e *env, mailflow, base, cache string, total int64) (string, error) {
	if err := installIMAPAnchors(); err != nil {
		return "", err
	}
	imapsync := filepath.Join(filepath.Dir(root), "shared", "anchors", "imapsync", "imapsync")
	if _, err := os.Stat(imapsync); err != nil {
		return "", fmt.Errorf("imapsync: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	rtt, err := parseRTT(o.rtt)
	if err != nil {
		return "", fmt.Errorf("-rtt: %v", err)
	}
	r := &imapRun{o: o, e: e, work: work, addr: e.imap,
		state: filepath.Join(work, "imap-state"), mbstate: filepath.Join(work, "mbsync-state")}
	if rtt > 0 {
		p, err := startDelayProxy(e.imap, rtt/2)
		if err != nil {
			return "", err
		}
		defer p.Close()
		r.addr = p.Addr()
		fmt.Printf("   every tool's IMAP sessions through a proxy on %s delaying each direction %v (RTT %v)\n", r.addr, rtt/2, rtt)
	}
	host, portNo := "127.0.0.1", port(r.addr)
	r.modes = map[string]func() *exec.Cmd{
		"mailflow": func() *exec.Cmd {
			cmd := exec.Command(mailflow, "migrate", "--from", "imap://"+imapSrc+"@"+r.addr+"?tls=none", "--to", "imap://"+imapDst+"@"+r.addr+"?tls=none",
				"--allow-plaintext-auth", "--to-password-env", "MAILFLOW_PASSWORD", "--state", r.state, "--progress", "none", "--log-level", "warn")
			// To see where a run's time goes: BENCH_MAILFLOW_ARGS="--log-level debug" (later flags win).
			cmd.Args = append(cmd.Args, strings.Fields(os.Getenv("BENCH_MAILFLOW_ARGS"))...)
			cmd.Env = append(os.Environ(), "MAILFLOW_PASSWORD="+e.password)
			return cmd
		},
		"imapsync": func() *exec.Cmd {
			return exec.Command("perl", imapsync, "--host1", host, "--port1", portNo, "--user1", imapSrc, "--password1", e.password,
				"--host2", host, "--port2", portNo, "--user2", imapDst, "--password2", e.password,
				"--nossl1", "--nossl2", "--notls1", "--notls2", "--nolog", "--noreleasecheck", "--tmpdir", filepath.Join(work, "imapsync-tmp"))
		},
		"mbsync": func() *exec.Cmd {
			conf := filepath.Join(work, "mbsyncrc")
			os.WriteFile(conf, []byte(fmt.Sprintf(`IMAPStore src
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore dst
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

Channel move
Far :src:
Near :dst:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState %s/
`, host, portNo, imapSrc, e.password, host, portNo, imapDst, e.password, r.mbstate)), 0o600)
			return exec.Command("mbsync", "-q", "-c", conf, "-a")
		},
		"limit": func() *exec.Cmd {
			return exec.Command(self, "limit-imap", r.addr, imapSrc, imapDst, e.password, strconv.Itoa(o.limitConns))
		},
	}
	r.names = strings.Split(o.imapTools, ",")
	if base != "" {
		mk := r.modes["mailflow"]
		r.modes["mailflow@base"] = func() *exec.Cmd {
			cmd := mk()
			cmd.Path, cmd.Args[0] = base, base
			return cmd
		}
		r.names = append(r.names, "mailflow@base")
	}
	for _, name := range r.names {
		if r.modes[name] == nil {
			return "", fmt.Errorf("no IMAP tool %q", name)
		}
	}
	if o.delta {
		ds, err := r.delta(cache)
		if err != nil {
			return "", err
		}
		return deltaMarkdown(o, rtt, total, ds), nil
	}
	rs, err := r.fullCopies(cache, total)
	if err != nil {
		return "", err
	}
	return imapMarkdown(o, rtt, total, rs), nil
}

// profiled asks a mailflow run for its CPU profile, when -profile asks,
// and keeps what the run prints, when -logs asks. The caller closes the
// file it returns (nil if none).
func (r *imapRun) profiled(cmd *exec.Cmd, name, what string) *os.File {
	var f *os.File
	if r.o.logs != "" {
		os.MkdirAll(r.o.logs, 0o755)
		f, _ = os.Create(filepath.Join(r.o.logs, strings.ReplaceAll(name, "@", "-")+"-"+what+".log"))
		if f != nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
	}
	if r.o.profile == "" || !strings.HasPrefix(name, "mailflow") {
		return f
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("MAILFLOW_CPUPROFILE=%s-imap-%s-%s.prof", r.o.profile, name, what))
	return f
}

// fullCopies copies the source into an empty destination, with each tool
// in turn, o.runs rounds, each run checked folder by folder.
func (r *imapRun) fullCopies(cache string, total int64) ([]result, error) {
	e := r.e
	if err := e.seedFolders(imapSrc, cache); err != nil {
		return nil, err
	}
	want := e.folderSummary(imapSrc)
	// Rounds alternate the tools (each round runs every tool once), so
	// that a busy spell of the shared machine falls on all of them.
	runs := map[string][]measure{}
	for round := 0; round < r.o.runs; round++ {
		for _, name := range r.names {
			if err := e.resetIMAP(imapDst, r.state, r.mbstate); err != nil {
				return nil, err
			}
			cmd := r.modes[name]()
			logf := r.profiled(cmd, name, strconv.Itoa(round+1))
			m, err := timed(cmd)
			if logf != nil {
				logf.Close()
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			if got := e.folderSummary(imapDst); got != want {
				return nil, fmt.Errorf("%s: the destination differs from the source:\n%s\nwant\n%s", name, got, want)
			}
			m.msgs, m.bytes = r.o.n, total
			fmt.Printf("   %-13s run %d: %6.2f s  %8.1f msgs/s  %7.1f MB/s  peak RSS %6.1f MB  CPU %5.1f s  machine busy %3.0f%%\n",
				name, round+1, m.wall.Seconds(), m.msgsPerSec(), m.mbPerSec(), float64(m.rssKB)/1024, m.cpu.Seconds(), 100*m.busy)
			runs[name] = append(runs[name], m)
		}
	}
	var results []result
	for _, name := range r.names {
		results = append(results, summarise("imap-"+name, runs[name]))
	}
	return results, nil
}

func installIMAPAnchors() error {
	var need []string
	if _, err := exec.LookPath("mbsync"); err != nil {
		need = append(need, "isync")
	}
	if exec.Command("perl", "-MMail::IMAPClient", "-MEncode::IMAPUTF7", "-e", "1").Run() != nil {
		need = append(need, strings.Fields(`libauthen-ntlm-perl libclass-load-perl libcrypt-openssl-rsa-perl libdigest-hmac-perl
      libencode-imaputf7-perl libfile-copy-recursive-perl libfile-tail-perl libio-compress-perl
      libio-socket-inet6-perl libio-socket-ssl-perl libio-tee-perl libmail-imapclient-perl
      libmodule-implementation-perl libmodule-runtime-perl libpackage-stash-perl libreadonly-perl
      libterm-readkey-perl libunicode-string-perl liburi-perl libjson-webtoken-perl libsys-meminfo-perl
      libregexp-common-perl libdata-uniqid-perl libhtml-parser-perl libcgi-pm-perl
      libdist-checkconflicts-perl libproc-processtable-perl`)...)
	}
	if len(need) == 0 {
		return nil
	}
	fmt.Println("   installing", strings.Join(need, " "))
	if err := sh([]string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", "update", "-qq"); err != nil {
		return err
	}
	return sh([]string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", append([]string{"install", "-y", "-qq"}, need...)...)
}

// seedFolders fills user's mailbox with the cached messages, round-robin
// over imapFolders, each with flags from imapFlags in its file name.
func (e *env) seedFolders(user, cache string) error {
	box := filepath.Join(e.mailDirs, user, "Maildir")
	os.RemoveAll(box)
	ents, err := os.ReadDir(cache)
	if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for i, en := range ents {
		folder := imapFolders[i%len(imapFolders)]
		dir := box
		if folder != "INBOX" {
			dir = filepath.Join(box, "."+strings.ReplaceAll(folder, "/", "."))
		}
		for _, sub := range []string{"new", "cur", "tmp"} {
			os.MkdirAll(filepath.Join(dir, sub), 0o700)
		}
		name := strings.SplitN(en.Name(), ":", 2)[0] + ":2," + imapFlags[i%len(imapFlags)]
		if err := os.Link(filepath.Join(cache, en.Name()), filepath.Join(dir, "cur", name)); err != nil {
			return err
		}
	}
	return filepath.Walk(box, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, e.mailUID, e.mailUID) })
}

// resetIMAP empties the destination and forgets every tool's record of
// earlier runs.
func (e *env) resetIMAP(user string, dirs ...string) error {
	exec.Command("doveadm", "-c", e.dovecotConf, "kick", user).Run()
	box := filepath.Join(e.mailDirs, user, "Maildir")
	os.RemoveAll(box)
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
	return filepath.Walk(box, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, e.mailUID, e.mailUID) })
}

// folderSummary says, per folder, how many messages there are and how
// many carry each flag letter, and the total of their sizes (LF on disk).
func (e *env) folderSummary(user string) string {
	box := filepath.Join(e.mailDirs, user, "Maildir")
	type sum struct {
		n     int
		flags map[rune]int
		bytes int64
	}
	by := map[string]*sum{}
	filepath.Walk(box, func(p string, fi os.FileInfo, _ error) error {
		if fi == nil || fi.IsDir() {
			return nil
		}
		sub := filepath.Base(filepath.Dir(p))
		if sub != "cur" && sub != "new" {
			return nil
		}
		folder := "INBOX"
		if d := filepath.Base(filepath.Dir(filepath.Dir(p))); strings.HasPrefix(d, ".") {
			folder = strings.ReplaceAll(d[1:], ".", "/")
		}
		s := by[folder]
		if s == nil {
			s = &sum{flags: map[rune]int{}}
			by[folder] = s
		}
		s.n++
		_, info, _ := strings.Cut(fi.Name(), ":2,")
		for _, c := range info {
			s.flags[c]++
		}
		if b, err := os.ReadFile(p); err == nil {
			// mbsync adds an X-TUID: line to each message it copies.
			if i := bytes.Index(b, []byte("X-TUID: ")); i >= 0 {
				if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
					b = append(b[:i:i], b[i+j+1:]...)
				}
			}
			s.bytes += int64(len(b))
		}
		return nil
	})
	var names []string
	for f := range by {
		names = append(names, f)
	}
	sort.Strings(names)
	var out strings.Builder
	for _, f := range names {
		s := by[f]
		var fl []string
		for c, n := range s.flags {
			fl = append(fl, string(c)+"="+strconv.Itoa(n))
		}
		sort.Strings(fl)
		fmt.Fprintf(&out, "%s: %d messages, %d bytes, flags %s\n", f, s.n, s.bytes, strings.Join(fl, " "))
	}
	return out.String()
}
