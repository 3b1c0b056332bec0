// Package pop3test is a small in-process POP3 server for tests that can
// misbehave on demand: split its replies into single bytes, drop the
// connection at a chosen command, answer -ERR [IN-USE], omit UIDL, lie
// about sizes, or send leading dots and empty messages as Dovecot does.
// Deletions take effect only at a QUIT it answers +OK to, as RFC 1939
// requires, so tests can check what a dropped session leaves.
package pop3test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Server is a POP3 server on 127.0.0.1.
type Server struct {
	mu        sync.Mutex
	b         Behaviour
	msgs      []*message
	nextUID   int
	ln        net.Listener
	wg        sync.WaitGroup
	log       []string
	sessions  int
	pipelined int
	refused   int // bearer tokens refused
}

// Behaviour is how the server acts; change it with Set. Each session takes
// a copy when it starts (Drop is always asked afresh).
type Behaviour struct {
	User, Pass string

	OneByteWrites bool           // write every reply one byte at a time
	NoUIDL        bool           // no UIDL in CAPA, and -ERR to UIDL
	NoPipelining  bool           // no PIPELINING in CAPA
	InUse         bool           // PASS answers -ERR [IN-USE]
	ListSize      map[int]int64  // LIST reports these sizes instead
	RetrErr       map[int]string // RETR n answers -ERR with this text
	UIDLErrOnce   bool           // the next UIDL answers -ERR (though CAPA lists it), then UIDL works again
	NoDotStuff    bool           // send every line that begins with "." without doubling the dot
	// FirstLineUnstuffed sends a message's first line as it is, its dot
	// not doubled, and stuffs the others, as Dovecot 2.3 does.
	FirstLineUnstuffed bool
	// EmptyAsBlankLine sends an empty message as one empty line, as
	// Dovecot does (LIST still gives it 0 bytes).
	EmptyAsBlankLine bool
	DeleErr          map[int]string // DELE n answers -ERR with this text
	// Bearer, if set, makes the server offer XOAUTH2 and OAUTHBEARER and
	// accept the access tokens it approves (for User).
	Bearer func(token string) bool
	// Drop, if set, is asked before and after each command; returning true
	// closes the connection at that point without a reply.
	Drop func(cmd string, arg int, after bool) bool
	// AtQuit, if set, is called at QUIT once the deletions took effect,
	// before the reply: a test can stop the client there.
	AtQuit func()
}

// Set changes the server's behaviour for the sessions that start after it.
func (s *Server) Set(f func(b *Behaviour)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.b)
}

func (s *Server) drop(cmd string, arg int, after bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Drop != nil && s.b.Drop(cmd, arg, after)
}

type message struct {
	data []byte
	uid  string
}

// NewServer starts a server on 127.0.0.1:0 with user/password u/p.
func NewServer() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{b: Behaviour{User: "u", Pass: "p"}, ln: ln}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// Add puts messages in the mailbox. They are stored with CRLF line ends.
func (s *Server) Add(msgs ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.nextUID++
		s.msgs = append(s.msgs, &message{data: m, uid: fmt.Sprintf("uid%05d", s.nextUID)})
	}
}

// Replace gives the message now at position i (from 0) other bytes under
// the same UIDL: a server that reuses a UIDL, which RFC 1939 forbids.
func (s *Server) Replace(i int, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs[i] = &message{data: data, uid: s.msgs[i].uid}
}

// Remove takes the message now at position i (from 0) out of the mailbox,
// as another client's session would: sessions that start after it number
// the messages after it one less.
func (s *Server) Remove(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs[:i:i], s.msgs[i+1:]...)
}

// Messages returns the mailbox's messages now.
func (s *Server) Messages() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = m.data
	}
	return out
}

// Log returns every command received, in order (passwords hidden).
func (s *Server) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// Pipelined counts the commands that arrived while another command was
// already waiting behind them: a client that waits for each reply has none.
func (s *Server) Pipelined() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pipelined
}

// Sessions counts the connections accepted.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.session(conn)
		}()
	}
}

type writer struct {
	conn    net.Conn
	oneByte bool
	buf     bytes.Buffer
}

func (w *writer) line(format string, args ...any) {
	fmt.Fprintf(&w.buf, format, args...)
	w.buf.WriteString("\r\n")
}

func (w *writer) flush() error {
	b := w.buf.Bytes()
	w.buf.Reset()
	if !w.oneByte {
		_, err := w.conn.Write(b)
		return err
	}
	for i := range b {
		if _, err := w.conn.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

// dotStuff writes data as a multi-line body: CRLF line ends, leading dots
// doubled (as b says), terminated by ".CRLF".
func (w *writer) dotStuff(data []byte, b Behaviour) {
	if len(data) == 0 && b.EmptyAsBlankLine {
		w.buf.WriteString("\r\n")
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, l := range lines {
		if len(l) == 0 {
			continue
		}
		if l[0] == '.' && !b.NoDotStuff && (i > 0 || !b.FirstLineUnstuffed) {
			w.buf.WriteByte('.')
		}
		l = bytes.TrimSuffix(bytes.TrimSuffix(l, []byte("\n")), []byte("\r"))
		w.buf.Write(l)
		w.buf.WriteString("\r\n")
	}
	w.buf.WriteString(".\r\n")
}

func (s *Server) session(conn net.Conn) {
	s.mu.Lock()
	b := s.b
	s.mu.Unlock()
	w := &writer{conn: conn, oneByte: b.OneByteWrites}
	r := bufio.NewReader(conn)
	w.line("+OK pop3test ready <1896.697170952@pop3test>")
	if w.flush() != nil {
		return
	}
	var (
		user    string
		authed  bool
		deleted = map[int]bool{}
		view    []*message // the mailbox as this session sees it
	)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd, argStr, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		arg, _ := strconv.Atoi(strings.Fields(argStr + " x")[0])
		s.mu.Lock()
		if r.Buffered() > 0 {
			s.pipelined++ // the client sent more before this reply
		}
		if cmd == "PASS" {
			s.log = append(s.log, "PASS ***")
		} else {
			s.log = append(s.log, line)
		}
		s.mu.Unlock()
		if s.drop(cmd, arg, false) {
			return
		}
		msg := func(n int) *message {
			if n < 1 || n > len(view) || deleted[n] {
				return nil
			}
			return view[n-1]
		}
		switch {
		case cmd == "CAPA":
			w.line("+OK")
			w.line("TOP")
			if !b.NoUIDL {
				w.line("UIDL")
			}
			if !b.NoPipelining {
				w.line("PIPELINING")
			}
			w.line("RESP-CODES")
			w.line("USER")
			if b.Bearer != nil {
				w.line("SASL PLAIN XOAUTH2 OAUTHBEARER")
			} else {
				w.line("SASL PLAIN")
			}
			w.line(".")
		case cmd == "USER":
			user = argStr
			w.line("+OK")
		case cmd == "PASS":
			switch {
			case b.InUse:
				w.line("-ERR [IN-USE] mailbox locked by another session")
			case user == b.User && argStr == b.Pass:
				authed = true
				s.mu.Lock()
				view = append([]*message(nil), s.msgs...)
				s.mu.Unlock()
				w.line("+OK logged in")
			default:
				w.line("-ERR [AUTH] bad user or password")
			}
		case cmd == "AUTH" && len(line)+2 > 255:
			w.line("-ERR line too long (RFC 5034: 255 octets)")
		case cmd == "AUTH" && b.Bearer != nil && (strings.EqualFold(strings.Fields(argStr + " x")[0], "XOAUTH2") || strings.EqualFold(strings.Fields(argStr + " x")[0], "OAUTHBEARER")):
			_, ir, hasIR := strings.Cut(argStr, " ")
			if !hasIR {
				w.line("+ ")
				if w.flush() != nil {
					return
				}
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				ir = strings.TrimRight(l, "\r\n")
			}
			dec, _ := base64.StdEncoding.DecodeString(ir)
			user, token := bearerParts(string(dec))
			if user == b.User && b.Bearer(token) {
				authed = true
				s.mu.Lock()
				view = append([]*message(nil), s.msgs...)
				s.mu.Unlock()
				w.line("+OK logged in")
				break
			}
			s.mu.Lock()
			s.refused++
			s.mu.Unlock()
			w.line("+ %s", base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token","scope":"mail"}`)))
			if w.flush() != nil {
				return
			}
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			w.line("-ERR [AUTH] invalid token")
		case cmd == "AUTH":
			mech, ir, _ := strings.Cut(argStr, " ")
			dec, err := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(dec), "\x00")
			switch {
			case !strings.EqualFold(mech, "PLAIN") || err != nil || len(parts) != 3:
				w.line("-ERR [AUTH] only AUTH PLAIN with an initial response")
			case b.InUse:
				w.line("-ERR [IN-USE] mailbox locked by another session")
			case parts[1] == b.User && parts[2] == b.Pass:
				authed = true
				s.mu.Lock()
				view = append([]*message(nil), s.msgs...)
				s.mu.Unlock()
				w.line("+OK logged in")
			default:
				w.line("-ERR [AUTH] bad user or password")
			}
		case cmd == "QUIT":
			if authed {
				s.mu.Lock()
				gone := map[*message]bool{}
				for n := range deleted {
					gone[view[n-1]] = true
				}
				var keep []*message
				for _, m := range s.msgs {
					if !gone[m] {
						keep = append(keep, m)
					}
				}
				s.msgs = keep
				s.mu.Unlock()
				if b.AtQuit != nil {
					b.AtQuit()
				}
			}
			w.line("+OK bye")
			w.flush()
			return
		case !authed:
			w.line("-ERR not logged in")
		case cmd == "STAT":
			n, size := 0, 0
			for i := range view {
				if !deleted[i+1] {
					n++
					size += len(view[i].data)
				}
			}
			w.line("+OK %d %d", n, size)
		case cmd == "LIST":
			w.line("+OK")
			for i, m := range view {
				if deleted[i+1] {
					continue
				}
				size := int64(len(m.data))
				if v, ok := b.ListSize[i+1]; ok {
					size = v
				}
				w.line("%d %d", i+1, size)
			}
			w.line(".")
		case cmd == "UIDL":
			if b.NoUIDL {
				w.line("-ERR no UIDL here")
				break
			}
			s.mu.Lock()
			failOnce := s.b.UIDLErrOnce
			s.b.UIDLErrOnce = false
			s.mu.Unlock()
			if failOnce {
				w.line("-ERR [SYS/TEMP] UIDL index busy")
				break
			}
			w.line("+OK")
			for i, m := range view {
				if !deleted[i+1] {
					w.line("%d %s", i+1, m.uid)
				}
			}
			w.line(".")
		case cmd == "RETR" || cmd == "TOP":
			m := msg(arg)
			if m == nil {
				w.line("-ERR no such message")
				break
			}
			if text, ok := b.RetrErr[arg]; ok && cmd == "RETR" {
				w.line("-ERR %s", text)
				break
			}
			w.line("+OK")
			data := m.data
			if cmd == "TOP" {
				if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
					data = data[:i+4]
				}
			}
			w.dotStuff(data, b)
		case cmd == "DELE":
			if msg(arg) == nil {
				w.line("-ERR no such message")
				break
			}
			if text, ok := b.DeleErr[arg]; ok {
				w.line("-ERR %s", text)
				break
			}
			deleted[arg] = true
			w.line("+OK deleted")
		case cmd == "RSET":
			deleted = map[int]bool{}
			w.line("+OK")
		case cmd == "NOOP":
			w.line("+OK")
		default:
			w.line("-ERR unknown command")
		}
		if w.flush() != nil {
			return
		}
		if s.drop(cmd, arg, true) {
			return
		}
	}
}

// bearerParts takes the user and the token out of an XOAUTH2 or
// OAUTHBEARER initial response.
func bearerParts(ir string) (user, token string) {
	for _, kv := range strings.Split(ir, "\x01") {
		switch {
		case strings.HasPrefix(kv, "user="):
			user = kv[len("user="):]
		case strings.HasPrefix(kv, "n,a="):
			user = strings.TrimSuffix(kv[len("n,a="):], ",")
		case strings.HasPrefix(kv, "auth=Bearer "):
			token = kv[len("auth=Bearer "):]
		}
	}
	return user, token
}

// Refused is how many bearer tokens the server refused.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}
