//go:build integration

package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/plugins"
)

// childEnv names the config a re-run of this test binary serves, as
// "mailflow run" would: the process the kill test kills.
const childEnv = "MAILFLOW_SMTPD_KILL_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}

// runChild is mailflow serving the config at path until SIGTERM, logging
// JSON to stderr.
func runChild(path string) int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		log.Error("config", "err", err)
		return 2
	}
	e, err := engine.Open(cfg, plugins.Default, log)
	if err != nil {
		log.Error("open", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	e.Run(ctx)
	e.Close()
	return 0
}

// Kill -9 mailflow over and over while clients send 2,000 messages, each
// counted as taken only on its 250: every message that got 250 arrives
// exactly once in the Maildir (its output names a copy by the spooled
// message, so a delivery in doubt after a kill writes the same file
// again); a message whose reply a kill cut off arrives at most once (it
// may have been spooled: the client sends it again, as any SMTP client
// would, which makes it a second message); one whose client hung up in
// the middle of its data never arrives; and the spool is empty at the end.
func TestKillLoop(t *testing.T) {
	const total, clients = 2000, 4
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	out := filepath.Join(dir, "out")
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`state_dir = %q
[[input]]
name = "in"
type = "smtp"
pipeline = "p"
schedule = "5s"
address = %q
[[pipeline]]
name = "p"
outputs = ["box"]
[[output]]
name = "box"
type = "maildir"
path = %q
`, filepath.Join(dir, "state"), addr, out)), 0o600)

	var (
		mu      sync.Mutex
		child   *exec.Cmd
		exited  chan struct{} // closed when child has exited
		runs    int
		logs    []string
		stopped atomic.Bool
	)
	start := func() {
		logPath := filepath.Join(dir, fmt.Sprintf("run%d.log", runs))
		lf, _ := os.Create(logPath)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+conf)
		cmd.Stdout, cmd.Stderr = lf, lf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); lf.Close(); close(done) }()
		child, exited, logs = cmd, done, append(logs, logPath)
		runs++
	}
	mu.Lock()
	start()
	mu.Unlock()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if child != nil {
			child.Process.Kill()
		}
	})

	// The killer: once mailflow listens, kill -9 it at a random moment
	// while mail comes in, and start it again.
	killerDone := make(chan struct{})
	kills := 0
	go func() {
		defer close(killerDone)
		most := 40
		if raceDetector {
			most = 15 // each start of a race-built mailflow takes a second
		}
		for kills < most && !stopped.Load() {
			for up := time.Now().Add(20 * time.Second); time.Now().Before(up) && !stopped.Load(); time.Sleep(10 * time.Millisecond) {
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
					break
				}
			}
			// Often enough that a run of 2,000 messages, a few seconds now,
			// still sees a kill every few hundred of them.
			time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
			if stopped.Load() {
				return
			}
			mu.Lock()
			child.Process.Signal(syscall.SIGKILL)
			<-exited
			kills++
			start()
			mu.Unlock()
		}
	}()

	// The clients: message N's attempt K carries X-Attempt: N.K; one in
	// fifty hangs up halfway through its data on its first attempt.
	type attempt struct {
		acked, cut bool
	}
	var (
		amu      sync.Mutex
		attempts = map[string]*attempt{} // "N.K"
		next     atomic.Int64
	)
	deadline := time.Now().Add(3 * time.Minute)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			drop := func() {
				if c != nil {
					c.Close()
					c = nil
				}
			}
			defer drop()
			for {
				n := int(next.Add(1)) - 1
				if n >= total {
					return
				}
				for k := 1; ; k++ {
					if time.Now().After(deadline) {
						return
					}
					id := fmt.Sprintf("%d.%d", n, k)
					body := fmt.Sprintf("From: a@example.org\r\nTo: b@example.net\r\nMessage-ID: <%s@kill.test>\r\nX-Msg: %d\r\nX-Attempt: %s\r\nSubject: message %d\r\n\r\n%send of attempt %s\r\n",
						id, n, id, n, strings.Repeat("body line of a test message\r\n", 20+n%50), id)
					if c == nil {
						conn, err := net.DialTimeout("tcp", addr, time.Second)
						if err != nil {
							time.Sleep(20 * time.Millisecond)
							k--
							continue
						}
						conn.SetDeadline(time.Now().Add(30 * time.Second))
						c = smtp.NewClient(conn)
					}
					a := &attempt{}
					amu.Lock()
					attempts[id] = a
					amu.Unlock()
					if n%50 == 7 && k == 1 {
						a.cut = true
						if c.Mail("a@example.org", nil) == nil && c.Rcpt("b@example.net", nil) == nil {
							if wc, err := c.Data(); err == nil {
								io.WriteString(wc, body[:len(body)/2])
							}
						}
						drop()
						continue
					}
					if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(body)); err != nil {
						drop()
						continue
					}
					amu.Lock()
					a.acked = true
					amu.Unlock()
					break
				}
			}
		}()
	}
	wg.Wait()
	stopped.Store(true)
	<-killerDone
	if time.Now().After(deadline) {
		t.Fatalf("the clients did not finish within the time bound (%d kills)", kills)
	}

	// Let the last mailflow deliver what is spooled, then stop it.
	spool := filepath.Join(dir, "state", "smtpd", "in")
	until := time.Now().Add(60 * time.Second)
	for {
		left := 0
		for _, sub := range []string{"new", "wait"} {
			ents, _ := os.ReadDir(filepath.Join(spool, sub))
			for _, e := range ents {
				if info, err := e.Info(); err == nil && info.Size() > 0 { // not a blank file made ahead
					left++
				}
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(until) {
			t.Fatalf("%d messages still spooled a minute after the last kill", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	child.Process.Signal(syscall.SIGTERM)
	mu.Unlock()
	time.Sleep(500 * time.Millisecond)
	for _, sub := range []string{"tmp", "new", "wait"} {
		if ents, _ := os.ReadDir(filepath.Join(spool, sub)); len(ents) != 0 {
			t.Errorf("%s/ holds %d files after the stop", sub, len(ents))
		}
	}

	// What arrived.
	arrived := map[string]int{} // attempt → copies
	attemptRe := regexp.MustCompile(`(?m)^X-Attempt: (\d+\.\d+)\r?$`)
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(out, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(out, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m := attemptRe.FindSubmatch(b)
			if m == nil {
				t.Fatalf("%s has no X-Attempt", e.Name())
			}
			// Whole, to its last line: a spool file a kill cut short is
			// removed at start-up, never delivered.
			if !bytes.HasSuffix(b, []byte("\r\nend of attempt "+string(m[1])+"\r\n")) {
				t.Errorf("%s (attempt %s) arrived cut short", e.Name(), m[1])
			}
			arrived[string(m[1])]++
		}
	}
	inDoubt := map[string]bool{}
	for _, lp := range logs {
		f, _ := os.Open(lp)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				MessageID string `json:"message_id"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && strings.Contains(sc.Text(), "in doubt") {
				inDoubt[strings.TrimSuffix(line.MessageID, "@kill.test")] = true
			}
		}
		f.Close()
	}
	acked, unacked, cut, lostReplies := 0, 0, 0, 0
	for id, a := range attempts {
		n := arrived[id]
		switch {
		case a.acked:
			acked++
			if n == 0 {
				t.Errorf("message attempt %s got 250 and never arrived", id)
			} else if n > 1 {
				t.Errorf("message attempt %s got 250 and arrived %d times", id, n)
			}
		case a.cut:
			cut++
			if n != 0 {
				t.Errorf("attempt %s was cut off by its client mid-DATA and arrived", id)
			}
		default:
			unacked++
			if n > 1 {
				t.Errorf("attempt %s got no reply and arrived %d times", id, n)
			}
			lostReplies += n
		}
	}
	for id := range arrived {
		if attempts[id] == nil {
			t.Errorf("%s arrived and was never sent", id)
		}
	}
	if acked != total {
		t.Fatalf("%d messages got 250, want %d", acked, total)
	}
	t.Logf("%d kills; %d messages taken (250), each arrived once; %d attempts cut off by a kill before their reply, %d of them spooled before it and delivered too (the client sent them again); %d attempts hung up mid-DATA by their client, none delivered; deliveries in doubt after a kill: %d",
		kills, acked, unacked, lostReplies, cut, len(inDoubt))
	if kills < 5 {
		t.Errorf("only %d kills: the loop did not test much", kills)
	}
}
