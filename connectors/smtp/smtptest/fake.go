// Package smtptest is a small SMTP server for tests that misbehaves on
// demand where a real server would not: it answers RCPT with any code,
// loses its reply after the data, makes the reply after the data wait,
// stops offering STARTTLS, AUTH or 8BITMIME, and keeps the raw bytes of
// every DATA it receives so that tests can check what was on the wire.
package smtptest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Server is an SMTP server on 127.0.0.1.
type Server struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	b       Behaviour
	got     []Mail
	lost    int // replies lost after the data so far
	refused int // bearer tokens refused
}

// Refused is how many bearer tokens the server refused.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Behaviour is how the server acts; change it with Set.
type Behaviour struct {
	// Extensions are the EHLO keywords offered ("PIPELINING", "8BITMIME",
	// "STARTTLS", "AUTH PLAIN", "SMTPUTF8", "SIZE 1000000").
	Extensions []string
	// RcptReply answers RCPT TO for an address with this whole reply line
	// ("251 2.1.5 will forward"); others get "250 2.1.5 ok".
	RcptReply map[string]string
	// LoseReplies drops the connection after this many complete DATAs
	// (terminator read), before the reply: the message counts as received.
	LoseReplies int
	// DataDelay is how long the reply after the data waits.
	DataDelay time.Duration
	// Bearer, if set, takes AUTH XOAUTH2 and OAUTHBEARER (offer them in
	// Extensions: "AUTH XOAUTH2 OAUTHBEARER") with the tokens it approves,
	// for any user; a refused token gets RFC 7628's JSON challenge, then 535.
	Bearer func(token string) bool
}

// Mail is one message the server accepted (or lost the reply to).
type Mail struct {
	From string
	To   []string
	Raw  []byte // DATA as it came over the wire, terminator excluded
	Lost bool   // its reply was never sent
}

// Untraced is Raw without the trace field mailflow's SMTP output puts
// first (X-Loop: mailflow/INSTANCE/OUTPUT), for comparing what arrived
// with what was sent; Trace is that field's value ("" if there is none).
func (m Mail) Untraced() []byte {
	_, rest := splitTrace(m.Raw)
	return rest
}

// Trace is the value of the trace field mailflow put first, or "".
func (m Mail) Trace() string {
	t, _ := splitTrace(m.Raw)
	return t
}

func splitTrace(raw []byte) (string, []byte) {
	const prefix = "X-Loop: mailflow/"
	if !bytes.HasPrefix(raw, []byte(prefix)) {
		return "", raw
	}
	end := bytes.Index(raw, []byte("\r\n"))
	if end < 0 {
		return "", raw
	}
	return string(raw[len("X-Loop: "):end]), raw[end+2:]
}

// NewServer starts a server offering PIPELINING and 8BITMIME.
func NewServer() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, b: Behaviour{Extensions: []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"}}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Set changes the behaviour for what follows.
func (s *Server) Set(f func(*Behaviour)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.b)
}

// Mails returns what was received.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.got...)
}

// Close stops the server.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.session(c)
		}()
	}
}

func (s *Server) behaviour() Behaviour {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

func (s *Server) session(c net.Conn) {
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\r\n", args...)
	}
	reply("220 smtptest ready")
	w.Flush()
	var cur Mail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		b := s.behaviour()
		switch {
		case verb == "EHLO":
			reply("250-smtptest")
			for _, e := range b.Extensions {
				reply("250-%s", e)
			}
			reply("250 HELP")
		case verb == "HELO" || verb == "NOOP":
			reply("250 ok")
		case verb == "RSET":
			cur = Mail{}
			reply("250 2.0.0 ok")
		case verb == "MAIL":
			cur = Mail{From: between(line, "<", ">")}
			reply("250 2.1.0 ok")
		case verb == "RCPT":
			to := between(line, "<", ">")
			if rr, ok := b.RcptReply[to]; ok {
				reply("%s", rr)
				if rr[0] == '2' {
					cur.To = append(cur.To, to)
				}
			} else {
				cur.To = append(cur.To, to)
				reply("250 2.1.5 ok")
			}
		case verb == "DATA":
			if len(cur.To) == 0 {
				reply("554 5.5.1 no valid recipients")
				break
			}
			reply("354 go ahead")
			w.Flush()
			raw, err := readData(r)
			if err != nil {
				return
			}
			cur.Raw = raw
			s.mu.Lock()
			lose := s.lost < b.LoseReplies
			if lose {
				s.lost++
				cur.Lost = true
			}
			s.got = append(s.got, cur)
			s.mu.Unlock()
			if lose {
				return
			}
			time.Sleep(b.DataDelay)
			reply("250 2.0.0 queued")
			cur = Mail{}
		case verb == "AUTH" && len(line)+2 > 512:
			reply("500 5.5.6 line too long")
		case verb == "AUTH" && b.Bearer != nil:
			f := strings.Fields(line)
			var ir string
			if len(f) > 2 {
				ir = f[2]
			} else {
				reply("334 ")
				w.Flush()
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				ir = strings.TrimRight(l, "\r\n")
			}
			dec, _ := base64.StdEncoding.DecodeString(ir)
			token := ""
			for _, kv := range strings.Split(string(dec), "\x01") {
				if t, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
					token = t
				}
			}
			if b.Bearer(token) {
				reply("235 2.7.0 authenticated")
				break
			}
			s.mu.Lock()
			s.refused++
			s.mu.Unlock()
			reply("334 %s", base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token"}`)))
			w.Flush()
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			reply("535 5.7.8 invalid token")
		case verb == "QUIT":
			reply("221 bye")
			w.Flush()
			return
		default:
			reply("502 5.5.2 not implemented")
		}
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
}

// readData reads up to the terminator, a line that is exactly ".": the
// bytes before it as they came, line ends included.
func readData(r *bufio.Reader) ([]byte, error) {
	var out bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		if bytes.Equal(line, []byte(".\r\n")) {
			return out.Bytes(), nil
		}
		out.Write(line)
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	j := strings.LastIndex(s, b)
	if i < 0 || j < i {
		return ""
	}
	return s[i+1 : j]
}
