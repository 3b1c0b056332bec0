package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
)

// manyResult is one process with many mailboxes polled and none holding
// mail: what it costs to keep them.
type manyResult struct {
	kind       string // pop3, or imap-idle
	inputs     int
	schedule   string
	rssMB      float64
	peakMB     float64
	goroutines int
	cpuShare   float64 // of one core, over the window
	polls      int     // sessions the server saw in the window
	window     time.Duration
}

// manyServer is the in-process server the inputs poll: it counts the
// sessions (connections) it was asked for.
type manyServer interface {
	Addr() string
	Sessions() int
	Close() error
}

// runMany runs `mailflow run` with n inputs polling every schedule, all
// empty mailboxes of an in-process server on 127.0.0.1: POP3, or IMAP with
// idle = true (each input then also holds an IDLE session open between
// polls, rechecking UIDNEXT every few seconds). It lets the first round of
// polls pass, then measures RSS, goroutines and CPU over the window.
func runMany(mailflow, work, kind string, n int, schedule string, window time.Duration) (manyResult, error) {
	var srv manyServer
	var err error
	if kind == "imap-idle" {
		srv, err = newIdleServer()
	} else {
		srv, err = pop3test.NewServer()
	}
	if err != nil {
		return manyResult{}, err
	}
	defer srv.Close()
	metrics := freeAddr()
	var inputs []table
	for i := range n {
		in := table{"name": fmt.Sprintf("box%04d", i), "type": "pop3", "address": srv.Addr(), "tls": "none",
			"allow_plaintext_auth": true, "username": "u", "password": "p", "pipeline": "main", "schedule": schedule}
		if kind == "imap-idle" {
			in["type"], in["idle"] = "imap", true
		}
		inputs = append(inputs, in)
	}
	os.RemoveAll(filepath.Join(work, "state-many"))
	conf := filepath.Join(work, "many.toml")
	err = writeConfig(conf, table{
		"state_dir": filepath.Join(work, "state-many"),
		"metrics":   table{"listen": metrics},
		"input":     inputs,
		"pipeline":  []table{{"name": "main", "outputs": []string{"dst"}}},
		"output":    []table{{"name": "dst", "type": "maildir", "path": filepath.Join(work, "many-dst")}},
	}, "")
	if err != nil {
		return manyResult{}, err
	}
	cmd := exec.Command(mailflow, "run", "--log-level", "warn", "-c", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return manyResult{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Every input polls once at start (and, IDLEing, opens its IDLE
	// session after); wait for that round to pass.
	want := n
	if kind == "imap-idle" {
		want = 2 * n
	}
	deadline := time.Now().Add(2 * time.Minute)
	for srv.Sessions() < want && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	cpu0, sess0, t0 := procCPU(cmd.Process.Pid), srv.Sessions(), time.Now()
	time.Sleep(window)
	cpu1, sess1, t1 := procCPU(cmd.Process.Pid), srv.Sessions(), time.Now()
	r := manyResult{kind: kind, inputs: n, schedule: schedule, window: t1.Sub(t0), polls: sess1 - sess0,
		cpuShare:   (cpu1 - cpu0).Seconds() / t1.Sub(t0).Seconds(),
		rssMB:      float64(procStatus(cmd.Process.Pid, "VmRSS:")) / 1024,
		peakMB:     float64(procStatus(cmd.Process.Pid, "VmHWM:")) / 1024,
		goroutines: goroutines(metrics)}
	return r, nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

// procCPU is a process's user + system time so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func procStatus(pid int, key string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
}

// goroutines reads go_goroutines from mailflow's /metrics.
func goroutines(addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

func manyMarkdown(rs []manyResult) string {
	var b strings.Builder
	b.WriteString("\n## Many mailboxes in one process\n\n")
	b.WriteString("`mailflow run` with N inputs, every mailbox empty (an in-process POP3 or IMAP server on 127.0.0.1), measured after the first round of polls, over the window shown. IMAP inputs have `idle = true`: each also holds an IDLE session open between polls, rechecking UIDNEXT after 5 s and then ever less often, up to every 2 minutes (the window holds the early, more frequent rechecks). `go run ./bench -many 1000` reproduces it.\n\n")
	b.WriteString("| inputs | kind | schedule | RSS | peak RSS | goroutines | CPU (share of one core) | sessions opened in the window | window |\n|---:|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %s | %s | %.1f MB | %.1f MB | %d | %.2f%% | %d | %.0f s |\n", r.inputs, r.kind, r.schedule, r.rssMB, r.peakMB, r.goroutines, 100*r.cpuShare, r.polls, r.window.Seconds())
	}
	return b.String()
}

// idleServer is an in-memory IMAP server (go-imap's) with one empty
// mailbox, counting connections.
type idleServer struct {
	ln       net.Listener
	srv      *imapserver.Server
	sessions atomic.Int64
}

func newIdleServer() (*idleServer, error) {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("u", "p")
	u.Create("INBOX", nil)
	mem.AddUser(u)
	s := &idleServer{}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s.sessions.Add(1)
			return mem.NewSession(), nil, nil
		},
		Caps:         goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapIMAP4rev2: {}},
		InsecureAuth: true,
	})
	var err error
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	go s.srv.Serve(s.ln)
	return s, nil
}

func (s *idleServer) Addr() string  { return s.ln.Addr().String() }
func (s *idleServer) Sessions() int { return int(s.sessions.Load()) }
func (s *idleServer) Close() error  { return s.srv.Close() }
