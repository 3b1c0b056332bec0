package imap

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scripted is a bare IMAP server on 127.0.0.1 for what go-imap's memory
// server cannot be made to do: hold replies back until several APPENDs
// came, answer them out of turn, end a session in the middle of them. It
// answers LOGIN, CAPABILITY, NAMESPACE, LIST (an INBOX and nothing else),
// NOOP and LOGOUT itself, every other command but APPEND with OK, and
// hands each APPEND, its message read, to the test.
type scripted struct {
	caps string
	// limit, when more than 0, is how many sessions the server takes at
	// once; the others are greeted with BYE.
	limit int
	// greet, when not nil, holds every greeting until it is closed.
	greet chan struct{}
	// slow delays the answer to NAMESPACE: a server far away, as a
	// session measures its round trip.
	slow time.Duration
	// appends gets every APPEND as it is read, with the session it came on.
	appends chan scriptedAppend
	// sessions counts the sessions accepted; lines are the command lines
	// read, but APPEND's.
	mu       sync.Mutex
	sessions int
	lines    []string
}

// scriptedAppend is one APPEND as the scripted server read it.
type scriptedAppend struct {
	s       *scriptedSession
	tag     string
	line    string // the command line up to the literal's size
	message []byte
	sync    bool // a synchronizing literal ({n}: the server sent "+")
}

// scriptedSession is one client's session.
type scriptedSession struct {
	conn net.Conn
	wmu  sync.Mutex
	// deaf: the server forgot the session without closing it, and
	// answers nothing more on it.
	deaf atomic.Bool
}

// reply writes a line to the client.
func (s *scriptedSession) reply(format string, args ...any) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	fmt.Fprintf(s.conn, format+"\r\n", args...)
}

// drop ends the session without a word.
func (s *scriptedSession) drop() { s.conn.Close() }

func newScripted(t *testing.T, caps string) (*scripted, string) {
	t.Helper()
	srv := &scripted{caps: caps, appends: make(chan scriptedAppend, 1000)}
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
			srv.mu.Lock()
			srv.sessions++
			over := srv.limit > 0 && srv.sessions > srv.limit
			srv.mu.Unlock()
			if over {
				fmt.Fprintf(c, "* BYE Maximum number of connections from user+IP exceeded\r\n")
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close() })
			go srv.serve(&scriptedSession{conn: c})
		}
	}()
	return srv, ln.Addr().String()
}

func (srv *scripted) sessionCount() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.sessions
}

func (srv *scripted) serve(s *scriptedSession) {
	defer s.conn.Close()
	br := bufio.NewReader(s.conn)
	srv.mu.Lock()
	greet := srv.greet
	srv.mu.Unlock()
	if greet != nil {
		<-greet
	}
	s.reply("* OK [CAPABILITY %s] scripted", srv.caps)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if s.deaf.Load() {
			continue
		}
		line = strings.TrimRight(line, "\r\n")
		tag, rest, _ := strings.Cut(line, " ")
		verb, _, _ := strings.Cut(rest, " ")
		if !strings.EqualFold(verb, "APPEND") {
			srv.mu.Lock()
			srv.lines = append(srv.lines, rest)
			srv.mu.Unlock()
		}
		switch strings.ToUpper(verb) {
		case "LOGIN":
			s.reply("%s OK [CAPABILITY %s] logged in", tag, srv.caps)
		case "CAPABILITY":
			s.reply("* CAPABILITY %s", srv.caps)
			s.reply("%s OK done", tag)
		case "NAMESPACE":
			srv.mu.Lock()
			slow := srv.slow
			srv.mu.Unlock()
			time.Sleep(slow)
			s.reply(`* NAMESPACE (("" "/")) NIL NIL`)
			s.reply("%s OK done", tag)
		case "LIST":
			s.reply(`* LIST () "/" INBOX`)
			s.reply("%s OK done", tag)
		case "ENABLE":
			if strings.Contains(srv.caps, "UTF8=ACCEPT") {
				s.reply("* ENABLED UTF8=ACCEPT")
			}
			s.reply("%s OK done", tag)
		case "LOGOUT":
			s.reply("* BYE bye")
			s.reply("%s OK done", tag)
			return
		case "APPEND":
			open := strings.LastIndexByte(line, '{')
			if open < 0 || !strings.HasSuffix(line, "}") {
				s.reply("%s BAD no literal", tag)
				continue
			}
			num := line[open+1 : len(line)-1]
			nonSync := strings.HasSuffix(num, "+")
			n, err := strconv.Atoi(strings.TrimSuffix(num, "+"))
			if err != nil {
				s.reply("%s BAD size", tag)
				continue
			}
			if !nonSync {
				s.reply("+ go on")
			}
			msg := make([]byte, n)
			if _, err := io.ReadFull(br, msg); err != nil {
				return
			}
			if end, err := br.ReadString('\n'); err != nil || end != "\r\n" {
				return
			}
			srv.appends <- scriptedAppend{s: s, tag: tag, line: line[:open], message: msg, sync: !nonSync}
		default:
			s.reply("%s OK done", tag)
		}
	}
}

// next returns the next APPEND the server read, or fails the test after
// a few seconds.
func (srv *scripted) next(t *testing.T) scriptedAppend {
	t.Helper()
	select {
	case a := <-srv.appends:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no APPEND came within 10 s")
		return scriptedAppend{}
	}
}

// commands returns the command lines read so far, but APPEND's.
func (srv *scripted) commands() []string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return append([]string(nil), srv.lines...)
}
