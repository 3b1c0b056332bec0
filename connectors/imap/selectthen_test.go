package imap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// selectProbe stands between mailflow and a server. It holds the server's
// answer to each SELECT and EXAMINE until the client has sent its next
// command (or a while has passed), and notes for each whether that
// command had come before the answer went out: a client that sends a read
// right behind the SELECT (selectThen) has it answered a round trip
// sooner; one that waits for the answer first does not.
type selectProbe struct {
	mu    sync.Mutex
	turns []probeTurn
}

// probeTurn is one SELECT or EXAMINE: the command the client sent next
// (next, once it was sent), and whether it came before the answer.
type probeTurn struct {
	next   func() string
	before bool
}

// hold is how long an answer waits for the client's next command.
const hold = 300 * time.Millisecond

// listen starts the probe in front of the server at addr; it returns the
// probe's address.
func (p *selectProbe) listen(t *testing.T, addr string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				return
			}
			go p.serve(c, s)
		}
	}()
	return ln.Addr().String()
}

// serve relays one session.
func (p *selectProbe) serve(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	var (
		mu      sync.Mutex
		changed = sync.NewCond(&mu)
		lines   []string           // the client's lines so far
		selects = map[string]int{} // a SELECT's tag → how many lines were sent up to it
	)
	go func() {
		r := bufio.NewReader(client)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				mu.Lock()
				lines = append(lines, line)
				f := strings.Fields(line)
				if len(f) >= 2 && (strings.EqualFold(f[1], "SELECT") || strings.EqualFold(f[1], "EXAMINE")) {
					selects[f[0]] = len(lines)
				}
				changed.Broadcast()
				mu.Unlock()
				io.WriteString(server, line)
			}
			if err != nil {
				server.Close()
				mu.Lock()
				changed.Broadcast()
				mu.Unlock()
				return
			}
		}
	}()
	r := bufio.NewReader(server)
	for {
		line, err := r.ReadString('\n')
		if f := strings.Fields(line); len(f) >= 2 {
			mu.Lock()
			if upTo, ok := selects[f[0]]; ok {
				delete(selects, f[0])
				deadline := time.Now().Add(hold)
				timer := time.AfterFunc(hold, func() { mu.Lock(); changed.Broadcast(); mu.Unlock() })
				for len(lines) == upTo && time.Now().Before(deadline) {
					changed.Wait()
				}
				timer.Stop()
				turn := probeTurn{before: len(lines) > upTo, next: func() string {
					mu.Lock()
					defer mu.Unlock()
					if len(lines) <= upTo {
						return ""
					}
					_, cmd, _ := strings.Cut(strings.TrimSpace(lines[upTo]), " ")
					return cmd
				}}
				p.mu.Lock()
				p.turns = append(p.turns, turn)
				p.mu.Unlock()
			}
			mu.Unlock()
		}
		if line != "" {
			if _, werr := io.WriteString(client, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// after is what the probe saw of the SELECTs followed by a command
// beginning with prefix: how many, and how many of those went out before
// the SELECT's answer.
func (p *selectProbe) after(prefix string) (n, before int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.turns {
		if strings.HasPrefix(t.next(), prefix) {
			n++
			if t.before {
				before++
			}
		}
	}
	return n, before
}

// The reads that follow a SELECT go out with it, not after its answer:
// the bodies a poll fetches and the looks for a copy at the destination
// (skip_existing), so that each costs one round trip, not two.
func TestReadsGoOutWithTheirSelect(t *testing.T) {
	addr := memServer(t)
	// 100 messages at the destination: a look for each new one, not a read
	// of the folder whole (looksBeforeRead).
	var there []stored
	for i := range 100 {
		there = append(there, stored{folder: "INBOX", date: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			data: []byte(fmt.Sprintf("Message-ID: <there%d@x.test>\r\nSubject: %d\r\n\r\nbody\r\n", i, i))})
	}
	seed(t, login(t, addr, "dst"), there)
	var news []stored
	for i := range 3 {
		news = append(news, stored{folder: "INBOX", date: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC),
			data: []byte(fmt.Sprintf("Message-ID: <new%d@x.test>\r\nSubject: new %d\r\n\r\nbody\r\n", i, i))})
	}
	seed(t, login(t, addr, "src"), news)

	probe := &selectProbe{}
	e := newEngine(t, imapToIMAP(probe.listen(t, addr), "keep", "skip_existing = true\n"))
	st, err := e.PollOnce(context.Background(), "old")
	if err != nil || st.Delivered != 3 {
		t.Fatalf("want 3 delivered: %+v %v", st, err)
	}
	if n, before := probe.after("UID FETCH"); n == 0 || before != n {
		t.Errorf("%d of %d body FETCHes went out before their EXAMINE's answer; want all, and some", before, n)
	}
	if n, before := probe.after("UID SEARCH"); n != 3 || before != n {
		t.Errorf("%d of %d looks (UID SEARCH) went out before their EXAMINE's answer; want 3 of 3", before, n)
	}
	if got := dump(t, login(t, addr, "dst")); len(got) != 103 {
		t.Fatalf("the destination holds %d messages, want 103", len(got))
	}
}
