package smtpd

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	smtp "github.com/emersion/go-smtp"
)

// server is one input's go-smtp server: the connections its listener
// hands it, the sessions on them, and its shutdown.
type server struct {
	in    *Input
	l     *listener
	spool *spool
	smtp  *smtp.Server
	queue *queue

	mu      sync.Mutex
	conns   map[*conn]bool
	closing bool
}

// serve starts the input's server and takes its listener over.
func (in *Input) serve() (*server, error) {
	s := &server{in: in, spool: in.spool, conns: map[*conn]bool{}, queue: newQueue()}
	srv := smtp.NewServer(backend{s})
	srv.Domain = in.Hostname
	srv.LMTP = in.lmtp
	srv.MaxMessageBytes = in.maxSize
	srv.MaxRecipients = 0 // counted by the session, which also counts the errors
	srv.ReadTimeout, srv.WriteTimeout = in.timeout, in.timeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = in.tlsConfig
	srv.AllowInsecureAuth = in.AllowInsecureAuth
	srv.ErrorLog = logAdapter{in.log}
	s.smtp = srv
	l, err := acquireListener(in.network, in.addr, in.socketMode, in.log, s)
	if err != nil {
		return nil, err
	}
	s.l = l
	go srv.Serve(s.queue)
	return s, nil
}

// admit takes a connection the listener accepted, if the limits allow.
func (s *server) admit(l *listener, nc net.Conn) {
	in := s.in
	addr := clientIP(nc)
	trusted := in.trustedAddr(addr)
	ok, why := l.clients.connect(addr, trusted, in.maxConns, in.perConn, in.connRate)
	if !ok {
		in.log.Warn("connection refused: "+why, "client", addr)
		if in.TLS == "implicit" {
			nc.Close() // a TLS client would read a reply in clear as garbage
		} else {
			go refuse(nc, fmt.Sprintf("421 4.7.0 %s Error: %s", in.Hostname, why))
		}
		return
	}
	c := &conn{Conn: nc, addr: addr}
	c.plain.Store(in.TLS != "implicit")
	c.closed = func() {
		l.clients.closed(addr)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.conns[c] = true
	}
	s.mu.Unlock()
	if closing {
		l.clients.closed(addr)
		go refuse(nc, "421 4.3.2 Service shutting down, try again later")
		return
	}
	var out net.Conn = c
	if in.TLS == "implicit" {
		out = tls.Server(c, in.tlsConfig)
	}
	s.queue.put(out)
}

// isClosing reports whether the server is stopping.
func (s *server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// stop stops taking connections, hangs up on those between transactions,
// lets the transactions under way finish (at most 30 seconds), then
// closes what is left.
func (s *server) stop() {
	s.l.release(s)
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		if !c.busy.Load() {
			c.hangUp()
		}
	}
	s.mu.Unlock()
	s.queue.drain()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.smtp.Shutdown(ctx); err != nil {
		s.in.log.Warn("messages still being received when the input stopped were cut off; their clients send them again", "err", err)
		s.smtp.Close()
	}
}

// backend makes a session for each client that says HELO, EHLO or LHLO.
type backend struct{ s *server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return newSession(b.s, c), nil
}

// queue is the net.Listener go-smtp serves: the connections admit hands it.
type queue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newQueue() *queue { return &queue{ch: make(chan net.Conn, 64), done: make(chan struct{})} }

func (q *queue) put(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *queue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *queue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

// drain closes the connections handed over and not yet served.
func (q *queue) drain() {
	q.Close()
	for {
		select {
		case c := <-q.ch:
			c.Close()
		default:
			return
		}
	}
}

func (q *queue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "mailflow" }
func (queueAddr) String() string  { return "mailflow" }

// logAdapter gives go-smtp's own log lines (a connection's I/O error) to
// the input's logger, at debug level: each is an ordinary client
// hanging up.
type logAdapter struct{ log *slog.Logger }

func (a logAdapter) Printf(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a logAdapter) Println(v ...any)               { a.log.Debug(fmt.Sprint(v...)) }
