package smtp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
)

// peer is emersion/go-smtp's server, an SMTP implementation independent of
// ours, recording what it receives and failing as told.
type peer struct {
	srv      *gosmtp.Server
	addr     string
	caFile   string
	reads    atomic.Int64 // Read calls on server connections
	sessions atomic.Int64

	mu       sync.Mutex
	got      []received
	mails    int
	rcptErr  map[string]*gosmtp.SMTPError
	mailErr  func(n int) error // for the n-th MAIL of the server's life
	cutData  bool              // drop the connection after the data, before the reply
	needAuth bool
}

type received struct {
	from  string
	to    []string
	data  []byte
	trace string // the X-Loop value mailflow put first
	opts  gosmtp.MailOptions
}

type peerOpts struct {
	tls      bool // offer STARTTLS with a certificate from a test CA
	needAuth bool
	maxSize  int64
}

func newPeer(t testing.TB, o peerOpts) *peer {
	t.Helper()
	p := &peer{rcptErr: map[string]*gosmtp.SMTPError{}, needAuth: o.needAuth}
	s := gosmtp.NewServer(p)
	s.Domain = "peer.test"
	s.AllowInsecureAuth = !o.tls
	s.MaxMessageBytes = o.maxSize
	s.EnableSMTPUTF8 = true
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	if o.tls {
		cert, caFile := testCert(t)
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		p.caFile = caFile
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.srv, p.addr = s, ln.Addr().String()
	go s.Serve(&countingListener{Listener: ln, p: p})
	t.Cleanup(func() { s.Close() })
	return p
}

type countingListener struct {
	net.Listener
	p *peer
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.p.sessions.Add(1)
		c = &countingConn{Conn: c, p: l.p}
	}
	return c, err
}

type countingConn struct {
	net.Conn
	p *peer
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.p.reads.Add(1)
	return c.Conn.Read(b)
}

func (p *peer) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{p: p, conn: c}, nil
}

func (p *peer) received() []received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]received(nil), p.got...)
}

type session struct {
	p      *peer
	conn   *gosmtp.Conn
	authed bool
	cur    received
}

func (s *session) AuthMechanisms() []string { return []string{"PLAIN", "LOGIN"} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user == "alice" && pass == "s3cret" {
			s.authed = true
			return nil
		}
		return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
	}
	if mech == "LOGIN" {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
}

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if resp != nil {
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if s.p.needAuth && !s.authed {
		return &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.p.mu.Lock()
	s.p.mails++
	n, mailErr := s.p.mails, s.p.mailErr
	s.p.mu.Unlock()
	if mailErr != nil {
		if err := mailErr(n); err != nil {
			return err
		}
	}
	s.cur = received{from: from}
	if opts != nil {
		s.cur.opts = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.p.mu.Lock()
	err := s.p.rcptErr[to]
	s.p.mu.Unlock()
	if err != nil {
		return err
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	// The trace field the output puts first is kept apart, so that tests
	// compare what arrived with what was sent.
	if bytes.HasPrefix(b, []byte("X-Loop: mailflow/")) {
		end := bytes.Index(b, []byte("\r\n"))
		s.cur.trace, b = string(b[len("X-Loop: "):end]), b[end+2:]
	}
	s.cur.data = b
	s.p.mu.Lock()
	s.p.got = append(s.p.got, s.cur)
	cut := s.p.cutData
	s.p.mu.Unlock()
	if cut {
		s.conn.Conn().Close()
	}
	return nil
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

func testCert(t testing.TB) (tls.Certificate, string) { return enginetest.TLSCert(t) }

// newOutput provisions and initialises an SMTP output as the engine would.
func newOutput(t testing.TB, o *smtp.Output) *smtp.Output {
	t.Helper()
	if err := o.Provision(plugin.Env{Name: "out", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	if err := o.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func plainOutput(t *testing.T, p *peer, to ...string) *smtp.Output {
	return newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"}, To: to})
}

func deliver(o *smtp.Output, raw []byte, done ...string) ([]plugin.RecipientResult, error) {
	msg := message.New(raw, message.Source{Input: "t", ID: "1"})
	return o.Deliver(context.Background(), msg, plugin.Delivery{Key: "k", Done: done})
}

// dataOf strips what go-smtp hands over to the bytes we sent: it gives the
// data unstuffed, with CRLF line ends.
func crlf(b []byte) []byte { return enginetest.CRLF([][]byte{b})[0] }

func TestDeliversAwkwardMessagesByteIdentical(t *testing.T) {
	p := newPeer(t, peerOpts{})
	o := plainOutput(t, p, "rcpt@example.net")
	msgs := enginetest.Mix(40)
	for i, m := range msgs {
		res, err := deliver(o, m)
		if err != nil || len(res) != 1 || res[0].Err != nil {
			t.Fatalf("message %d: %v %v", i, res, err)
		}
	}
	got := p.received()
	for i, m := range msgs {
		if !bytes.Equal(got[i].data, crlf(m)) {
			t.Fatalf("message %d arrived changed:\n%q\nwant\n%q", i, got[i].data[:min(200, len(got[i].data))], crlf(m)[:min(200, len(m))])
		}
	}
	// 8-bit content is announced; the envelope sender is the Return-Path.
	for i, m := range msgs {
		eight := bytes.ContainsFunc(m, func(r rune) bool { return r >= 0x80 || r == '\uFFFD' })
		if eight != (got[i].opts.Body == gosmtp.Body8BitMIME) {
			t.Fatalf("message %d: 8-bit %v but BODY=%q", i, eight, got[i].opts.Body)
		}
	}
	if got[0].from != "sender0@example.org" {
		t.Fatalf("envelope sender %q", got[0].from)
	}
	if p.sessions.Load() != 1 {
		t.Fatalf("40 messages used %d sessions; want one reused", p.sessions.Load())
	}
}

func TestPipeliningOnAndOff(t *testing.T) {
	to := []string{"a@example.net", "b@example.net", "c@example.net"}
	for _, on := range []bool{true, false} {
		p := newPeer(t, peerOpts{})
		o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"}, To: to, Pipelining: &on})
		deliver(o, enginetest.Message(enginetest.Plain, 1, 100)) // opens the session
		before := p.reads.Load()
		res, err := deliver(o, enginetest.Message(enginetest.Plain, 2, 100))
		if err != nil || len(res) != 3 {
			t.Fatalf("pipelining=%v: %v %v", on, res, err)
		}
		// MAIL, 3 RCPT, DATA: five commands. Waiting for each reply makes
		// the server read at least five times; in one flight, fewer.
		reads := p.reads.Load() - before
		if on && reads >= 5 || !on && reads < 5 {
			t.Fatalf("pipelining=%v: the server needed %d reads for MAIL+3 RCPT+DATA+data", on, reads)
		}
	}
}

func TestAuthOverStartTLS(t *testing.T) {
	for _, mech := range []string{"plain", "login", "auto"} {
		t.Run(mech, func(t *testing.T) {
			p := newPeer(t, peerOpts{tls: true, needAuth: true})
			o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "starttls", Username: "alice", Password: "s3cret", Auth: mech, Options: tlsOpts(p)},
				To: []string{"x@example.net"}})
			if res, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100)); err != nil || res[0].Err != nil {
				t.Fatalf("%v %v", res, err)
			}
		})
	}
	p := newPeer(t, peerOpts{tls: true, needAuth: true})
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "starttls", Username: "alice", Password: "wrong", Options: tlsOpts(p)},
		To: []string{"x@example.net"}})
	_, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100))
	if err == nil || !plugin.IsPermanent(err) {
		t.Fatalf("a wrong password must be a permanent error, got %v", err)
	}
}

func TestStartTLSRequiredAndVerified(t *testing.T) {
	plain := newPeer(t, peerOpts{})
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: plain.addr, TLS: "starttls"}, To: []string{"x@example.net"}})
	if _, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100)); err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("want a refusal to go on in clear, got %v", err)
	}
	if len(plain.received()) != 0 {
		t.Fatal("sent in clear")
	}
	tlsPeer := newPeer(t, peerOpts{tls: true})
	o = newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: tlsPeer.addr, TLS: "starttls"}, To: []string{"x@example.net"}})
	if _, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100)); err == nil {
		t.Fatal("a certificate from an unknown CA was accepted")
	}
	if err := (&smtp.Output{Settings: endpoint.Settings{Address: "127.0.0.1:25", TLS: "none", Username: "a", Password: "b"}}).Init(); err == nil {
		t.Fatal("a password over cleartext must need allow_plaintext_auth")
	}
}

func tlsOpts(p *peer) tlsconf.Options { return tlsconf.Options{CAFile: p.caFile} }

func TestSizeRefusedBeforeData(t *testing.T) {
	p := newPeer(t, peerOpts{maxSize: 1000})
	o := plainOutput(t, p, "x@example.net")
	_, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 5000))
	if err == nil || !plugin.IsPermanent(err) || !strings.Contains(err.Error(), "SIZE") {
		t.Fatalf("want a permanent SIZE error, got %v", err)
	}
	p.mu.Lock()
	mails := p.mails
	p.mu.Unlock()
	if mails != 0 {
		t.Fatal("a message over SIZE must be refused before MAIL")
	}
}

func TestPerRecipientResults(t *testing.T) {
	p := newPeer(t, peerOpts{})
	p.rcptErr["busy@example.net"] = &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	p.rcptErr["gone@example.net"] = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	o := plainOutput(t, p, "ok@example.net", "busy@example.net", "gone@example.net")
	res, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100))
	if err != nil || len(res) != 3 {
		t.Fatalf("%v %v", res, err)
	}
	if res[0].Err != nil || plugin.IsPermanent(res[1].Err) || res[1].Err == nil || !plugin.IsPermanent(res[2].Err) {
		t.Fatalf("results %+v", res)
	}
	var se *smtp.Error
	if !errors.As(res[1].Err, &se) || se.Code != 452 || se.Enhanced != "4.2.2" {
		t.Fatalf("want a typed 452 4.2.2 error, got %#v", res[1].Err)
	}
	if got := p.received(); len(got) != 1 || strings.Join(got[0].to, ",") != "ok@example.net" {
		t.Fatalf("server got %+v", got)
	}
	// The retry sends only to the recipients not done.
	delete(p.rcptErr, "busy@example.net")
	res, err = deliver(o, enginetest.Message(enginetest.Plain, 1, 100), "ok@example.net", "gone@example.net")
	if err != nil || len(res) != 1 || res[0].Recipient != "busy@example.net" || res[0].Err != nil {
		t.Fatalf("retry: %+v %v", res, err)
	}
	// With no recipient accepted there is no DATA, and the session goes on.
	o2 := plainOutput(t, p, "gone@example.net")
	res, err = deliver(o2, enginetest.Message(enginetest.Plain, 2, 100))
	if err != nil || len(res) != 1 || !plugin.IsPermanent(res[0].Err) {
		t.Fatalf("%+v %v", res, err)
	}
	if res, err := deliver(o2, enginetest.Message(enginetest.Plain, 3, 100)); err != nil || res[0].Err == nil {
		t.Fatalf("the session must be usable after a refused transaction: %+v %v", res, err)
	}
}

func TestReplyCode421MidSessionReconnects(t *testing.T) {
	p := newPeer(t, peerOpts{})
	p.mailErr = func(n int) error {
		if n == 2 {
			return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
		}
		return nil
	}
	o := plainOutput(t, p, "x@example.net")
	if _, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100)); err != nil {
		t.Fatal(err)
	}
	_, err := deliver(o, enginetest.Message(enginetest.Plain, 2, 100))
	if err == nil || plugin.IsPermanent(err) {
		t.Fatalf("a 421 must be a temporary error, got %v", err)
	}
	if _, err := deliver(o, enginetest.Message(enginetest.Plain, 3, 100)); err != nil {
		t.Fatalf("after a 421 the next message must go out on a new session: %v", err)
	}
	if n := p.sessions.Load(); n != 2 {
		t.Fatalf("want 2 sessions, have %d", n)
	}
}

func TestConnectionCutAfterDataIsInDoubt(t *testing.T) {
	p := newPeer(t, peerOpts{})
	p.cutData = true
	o := plainOutput(t, p, "x@example.net")
	res, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100))
	if !plugin.IsInDoubt(err) || res != nil || plugin.IsPermanent(err) {
		t.Fatalf("a message without its final reply must count as in doubt (temporary): %v %v", res, err)
	}
	if n := p.sessions.Load(); n != 1 {
		t.Fatalf("the data was sent, so no silent retry may happen: %d sessions", n)
	}
}

func TestIdleSessionClosedByServerIsRetriedOnce(t *testing.T) {
	p := newPeer(t, peerOpts{})
	o := plainOutput(t, p, "x@example.net")
	if _, err := deliver(o, enginetest.Message(enginetest.Plain, 1, 100)); err != nil {
		t.Fatal(err)
	}
	// The server restarts while our session idles in the pool.
	p.srv.Close()
	addr := p.addr
	s2 := gosmtp.NewServer(p)
	s2.Domain, s2.AllowInsecureAuth = "peer.test", true
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skip("cannot rebind the port:", err)
	}
	go s2.Serve(ln)
	defer s2.Close()
	if _, err := deliver(o, enginetest.Message(enginetest.Plain, 2, 100)); err != nil {
		t.Fatalf("a stale pooled session must be replaced transparently: %v", err)
	}
	if n := len(p.received()); n != 2 {
		t.Fatalf("want 2 messages, have %d", n)
	}
}

// More senders than connections: a sender waiting for a connection must get
// one that another returns to the pool (this deadlocked once).
func TestPoolUnderContention(t *testing.T) {
	p := newPeer(t, peerOpts{})
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"}, To: []string{"x@example.net"}, MaxConnections: 2})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			msg := message.New(enginetest.Message(enginetest.Plain, i, 200), message.Source{})
			if _, err := o.Deliver(ctx, msg, plugin.Delivery{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(p.received()); n != 200 {
		t.Fatalf("received %d of 200", n)
	}
	if n := p.sessions.Load(); n > 2 {
		t.Fatalf("%d sessions opened; max_connections is 2", n)
	}
}

// BenchmarkDeliver2KB sends 2 KB messages through one SMTP output to an
// in-process server (go-smtp's), with the trace field every message gets:
// time and allocations per message.
func BenchmarkDeliver2KB(b *testing.B) {
	p := newPeer(b, peerOpts{})
	o := newOutput(b, &smtp.Output{Settings: endpoint.Settings{Address: p.addr, TLS: "none"}, To: []string{"x@example.net"}})
	raw := enginetest.CRLF([][]byte{enginetest.Message(enginetest.Plain, 1, 2048)})[0]
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for i := range b.N {
		msg := message.New(raw, message.Source{Input: "t", ID: "1"})
		if _, err := o.Deliver(context.Background(), msg, plugin.Delivery{Key: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
	}
}
