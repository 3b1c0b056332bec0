package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// greetWait is how long a server may say nothing after the connection
// before a second connection asks it whether its port wants TLS at once.
const greetWait = time.Second

// ModeError says that the server's port speaks another TLS mode than the
// tls key asked for; Want is the mode it speaks.
type ModeError struct {
	Address string
	Want    string // "implicit" or "starttls"
	msg     string
	err     error // what the wrong mode ran into, if anything
}

func (e *ModeError) Error() string { return e.msg }
func (e *ModeError) Unwrap() error { return e.err }

// speaksTLS is the error for a port that wants TLS from the first byte.
func (s *Settings) speaksTLS() error {
	hint := ""
	if s.TLS == "starttls" && s.proto.StartTLSPort != "" {
		hint = fmt.Sprintf(` (tls = "starttls" is for port %s)`, s.proto.StartTLSPort)
	}
	return &ModeError{Address: s.Address, Want: "implicit",
		msg: `the server speaks TLS at once, with no greeting in plain text: set tls = "implicit"` + hint}
}

// greetsInClear is the error for a port that answered an implicit TLS
// handshake in plain text; first are its first bytes.
func (s *Settings) greetsInClear(first []byte, err error) error {
	seen := ""
	if printable(first) {
		q := strconv.Quote(string(first))
		seen = " (" + q[:len(q)-1] + "…\")"
	}
	hint := ""
	if s.proto.ImplicitPort != "" {
		def := ""
		if s.proto.DefaultTLS == "implicit" {
			def = ", the default,"
		}
		hint = fmt.Sprintf(` (tls = "implicit"%s is for port %s)`, def, s.proto.ImplicitPort)
	}
	return &ModeError{Address: s.Address, Want: "starttls", err: err,
		msg: `the server greets in plain text` + seen + `, not in TLS: set tls = "starttls"` + hint}
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\r' && c != '\n' || c > '~' {
			return false
		}
	}
	return len(b) > 0
}

// looksLikeTLS reports whether b, the first bytes a server sent, are a TLS
// record: a handshake (22) or an alert (21), then version 3.x. No greeting
// of POP3 ("+OK"), SMTP ("220") or IMAP ("* OK") starts so.
func looksLikeTLS(b []byte) bool {
	return len(b) >= 2 && (b[0] == 0x16 || b[0] == 0x15) && b[1] == 0x03
}

// awaitGreeting waits on conn, in clear (tls = "starttls" or "none"), for
// the first bytes of the server's greeting, and returns conn with them put
// back in front of what it reads.
//
// POP3, SMTP and IMAP servers speak first; on a port of implicit TLS (995,
// 465, 993) a server says nothing and waits for the client's handshake, so
// a client in clear used to wait the whole timeout and then say only "i/o
// timeout". Here, when nothing came within greetWait, a second connection
// starts a TLS handshake: if the server answers it in TLS, the port wants
// tls = "implicit", and the wait ends at once, saying so. Otherwise (the
// server is only slow to greet) the wait goes on to the timeout as
// before: a slow greeting is never cut short, whatever the probe saw.
// First bytes that are themselves a TLS record end it likewise. The probe
// sends the server nothing but the start of a handshake, and is closed at
// its first answer.
func (s *Settings) awaitGreeting(ctx context.Context, conn net.Conn) (net.Conn, error) {
	start := time.Now()
	var deadline time.Time
	if s.timeout > 0 {
		deadline = start.Add(s.timeout)
	}
	// The read deadline is moved by the probe and by ctx, from other
	// goroutines; once frozen, conn is the caller's again.
	var mu sync.Mutex
	frozen := false
	setDeadline := func(t time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if !frozen {
			conn.SetReadDeadline(t)
		}
	}
	var interrupted, wantsTLS atomic.Bool
	interrupt := func() {
		interrupted.Store(true)
		setDeadline(time.Unix(1, 0))
	}
	stop := context.AfterFunc(ctx, interrupt)
	defer stop()

	probeCtx, cancelProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	probing := false
	defer func() {
		cancelProbe()
		if probing {
			<-probed
		}
	}()

	buf := make([]byte, 4096)
	first, short := start.Add(greetWait), false
	if !deadline.IsZero() && !first.Before(deadline) {
		first, short = deadline, true
	}
	setDeadline(first)
	n, err := conn.Read(buf)
	if n == 0 && isTimeout(err) && !interrupted.Load() && !short {
		probing = true
		s.logDebug("no greeting yet; asking on a second connection whether the port wants TLS at once", "server", s.Address)
		go func() {
			defer close(probed)
			if s.probeTLS(probeCtx) {
				wantsTLS.Store(true)
				interrupt()
			}
		}()
		setDeadline(deadline)
		if interrupted.Load() { // the probe or ctx ended it before the deadline was set
			setDeadline(time.Unix(1, 0))
		}
		n, err = conn.Read(buf)
	}
	mu.Lock()
	frozen = true
	mu.Unlock()
	conn.SetReadDeadline(time.Time{})

	switch {
	case n > 0 && looksLikeTLS(buf[:n]), n == 0 && wantsTLS.Load():
		conn.Close()
		return nil, s.speaksTLS()
	case n > 0:
		return &primed{Conn: conn, head: buf[:n]}, nil
	case ctx.Err() != nil:
		conn.Close()
		return nil, ctx.Err()
	case isTimeout(err):
		conn.Close()
		return nil, fmt.Errorf("the server sent no greeting within %v: %w", s.timeout, err)
	}
	// The server closed the connection, or it broke: the connector reads
	// that where it reads the greeting, as it always did.
	return &primed{Conn: conn, err: err}, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// probeTLS opens a second connection to the server and starts a TLS
// handshake on it: whether the server answers with a TLS record.
func (s *Settings) probeTLS(ctx context.Context) bool {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.Address)
	if err != nil {
		return false
	}
	defer c.Close()
	heard := &firstBytes{Conn: c}
	// Nothing is ever sent over it but the ClientHello, and it ends at
	// the server's first bytes: what the certificate says does not matter.
	cfg := &tls.Config{InsecureSkipVerify: true}
	if s.tlsCfg != nil {
		cfg.ServerName = s.tlsCfg.ServerName
	}
	tls.Client(heard, cfg).HandshakeContext(ctx)
	return looksLikeTLS(heard.head)
}

// firstBytes keeps the first bytes read through it, and ends the reading
// once it has three: enough to tell a TLS record.
type firstBytes struct {
	net.Conn
	head []byte
}

var errHeard = errors.New("heard enough")

func (f *firstBytes) Read(p []byte) (int, error) {
	if len(f.head) >= 3 {
		return 0, errHeard
	}
	n, err := f.Conn.Read(p)
	f.head = append(f.head, p[:min(n, 3-len(f.head))]...)
	return n, err
}

// primed is a connection whose first bytes (or error) were read already.
type primed struct {
	net.Conn
	head []byte
	err  error
}

func (p *primed) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	if p.err != nil {
		err := p.err
		p.err = nil
		return 0, err
	}
	return p.Conn.Read(b)
}

func (s *Settings) logDebug(msg string, args ...any) {
	if s.log != nil {
		s.log.Debug(msg, args...)
	}
}

// tlsWords puts a failed TLS handshake in words: a certificate that could
// not be verified names the key that fixes it (tls_ca_file,
// tls_server_name). Other errors come back as they are. The connectors say
// which server.
func tlsWords(err error, cfg *tls.Config) error {
	if msg := certWords(err, cfg); msg != "" {
		return &wordsError{msg: msg, err: err}
	}
	return err
}

// TLSWords is tlsWords for a connector that does its own handshake
// (STARTTLS inside a protocol library): a certificate error names the key
// that fixes it, as the endpoint's own dials do.
func (s *Settings) TLSWords(err error) error { return tlsWords(err, s.TLSConfig()) }

type wordsError struct {
	msg string
	err error
}

func (e *wordsError) Error() string { return e.msg }
func (e *wordsError) Unwrap() error { return e.err }
