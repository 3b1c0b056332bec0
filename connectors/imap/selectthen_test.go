package imap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
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
	// A look in a folder its session has selected already needs no
	// EXAMINE (TestALookInTheSelectedFolderSelectsItOnce): one at least
	// follows one, and each that does goes out before its answer.
	if n, before := probe.after("UID SEARCH"); n == 0 || n > 3 || before != n {
		t.Errorf("%d of %d looks (UID SEARCH) went out before their EXAMINE's answer; want all, and one to three", before, n)
	}
	if got := dump(t, login(t, addr, "dst")); len(got) != 103 {
		t.Fatalf("the destination holds %d messages, want 103", len(got))
	}
}

// A look in the folder its session has selected already sends no EXAMINE
// again, and still sees what came since (here an APPEND of its own);
// once another folder was selected, the look selects its own again.
func TestALookInTheSelectedFolderSelectsItOnce(t *testing.T) {
	n := &storeCounter{}
	addr := memServerWith(t, func(_ *imapserver.Conn, s imapserver.Session) imapserver.Session {
		return countingSession{SessionIMAP4rev2: s.(imapserver.SessionIMAP4rev2), n: n}
	})
	selects := func() int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.selects
	}
	c := login(t, addr, "dst")
	msg := func(id string) stored {
		return stored{folder: "INBOX", date: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			data: []byte(fmt.Sprintf("Message-ID: <%s>\r\nSubject: %s\r\n\r\nbody\r\n", id, id))}
	}
	seed(t, c, []stored{msg("a@x.test"), {folder: "Other", date: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), data: []byte("Subject: x\r\n\r\nx\r\n")}})
	named, err := c.identities("INBOX")
	if err != nil || len(named) != 1 {
		t.Fatalf("identities %v, %v", named, err)
	}
	var identity string
	for id := range named {
		identity = id
	}
	look := func(id, identity string) (uint32, []uint32) {
		t.Helper()
		_, held, uids, err := c.copiesOf("INBOX", id, identity, -1)
		if err != nil {
			t.Fatal(err)
		}
		return held, uids
	}

	if _, _, err := c.examine("Other", false); err != nil {
		t.Fatal(err)
	}
	before := selects()
	if held, uids := look("a@x.test", identity); held != 1 || len(uids) != 1 {
		t.Fatalf("first look: %d held, copies %v", held, uids)
	}
	b := msg("b@x.test")
	if _, err := c.appendMsg("INBOX", nil, b.date, int64(len(b.data)), bytes.NewReader(b.data)); err != nil {
		t.Fatal(err)
	}
	if held, uids := look("b@x.test", strings.Replace(identity, "a@x.test", "b@x.test", 1)); held != 2 || len(uids) != 1 {
		t.Fatalf("a look after an APPEND: %d held, copies %v", held, uids)
	}
	if n := selects() - before; n != 1 {
		t.Fatalf("%d SELECTs for two looks in one folder, want 1", n)
	}
	if _, _, err := c.examine("Other", false); err != nil {
		t.Fatal(err)
	}
	look("a@x.test", identity)
	if n := selects() - before; n != 3 {
		t.Fatalf("%d SELECTs after a look in another folder's wake, want 3", n)
	}
}
