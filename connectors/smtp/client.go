package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/internal/sasl"
	"github.com/mailflow/mailflow/connectors/internal/textline"
)

// Error is an SMTP reply that was not the one hoped for: its code, its
// enhanced status code (RFC 3463) if the server sent one, and its text.
type Error struct {
	Command  string // the command answered (without arguments)
	Code     int
	Enhanced string // "5.1.1", or ""
	Message  string
}

func (e *Error) Error() string {
	if e.Enhanced != "" {
		return fmt.Sprintf("smtp %s: %d %s %s", e.Command, e.Code, e.Enhanced, e.Message)
	}
	return fmt.Sprintf("smtp %s: %d %s", e.Command, e.Code, e.Message)
}

// Temporary reports a 4xx reply: trying again later may work.
func (e *Error) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Permanent reports a 5xx reply: the same transaction will fail again.
func (e *Error) Permanent() bool { return e.Code >= 500 }

// ProtocolError is a reply that breaks the protocol (not a reply line, or a
// multi-line reply whose codes differ). The connection must be closed.
type ProtocolError struct {
	Command string
	Line    string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("smtp %s: malformed reply %q", e.Command, textline.Shorten(e.Line))
}

// ErrLineTooLong is returned when a reply line exceeds MaxLine.
var ErrLineTooLong = errors.New("smtp: reply line too long")

// MaxLine bounds a reply line. RFC 5321 allows 512 octets; servers' EHLO
// lines and texts stay well below this bound.
const MaxLine = 8192

// Reply is one complete server reply.
type Reply struct {
	Code     int
	Enhanced string
	Lines    []string // the text of each line, without code and separator
}

func (r *Reply) text() string { return strings.Join(r.Lines, " / ") }

// Client is one SMTP session (RFC 5321) with the extensions mailflow uses:
// STARTTLS (RFC 3207), AUTH (RFC 4954), PIPELINING (RFC 2920), SIZE
// (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) and ENHANCEDSTATUSCODES
// (RFC 2034). Each command is a method. A Client is not safe for concurrent use.
type Client struct {
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	timeout time.Duration
	tls     bool
	ext     map[string]string
	helo    string
	// Broken is set once the connection is out of step or closed; the
	// client must not be used again.
	Broken bool
	// NoPipelining makes Send wait for each reply even when the server
	// offers PIPELINING.
	NoPipelining bool
	// DataStarted is set once the server answered 354 in the last Send:
	// from then on a lost connection may have delivered the message.
	DataStarted bool
	// DataTimeout bounds the wait for the reply after the final dot, which
	// comes only once the server (and its content filters) took the
	// message: RFC 5321 4.5.3.2.6 asks for 10 minutes. 0: the timeout.
	DataTimeout time.Duration
	waitLong    bool   // reading the reply to the final dot
	copyBuf     []byte // the message's way from its reader to the dot-stuffer
}

// ReplyLostError is returned by Send when the whole message, terminator
// included, went out but the server's reply never came (the connection
// broke, or DataTimeout passed): the server may have taken the message,
// and SMTP gives no way to ask.
type ReplyLostError struct{ Err error }

func (e *ReplyLostError) Error() string {
	return fmt.Sprintf("smtp DATA: no reply after the message was sent, so the server may have it: %v", e.Err)
}
func (e *ReplyLostError) Unwrap() error { return e.Err }

// positive asks expect for any 2xx reply: where RFC 5321 allows more than
// one success code (RCPT 250 or 251), the class is what counts.
const positive = 2

// NewClient starts a session on conn (already TLS for implicit TLS) and
// reads the 220 greeting.
func NewClient(conn net.Conn, timeout time.Duration) (*Client, error) {
	c := &Client{conn: conn, timeout: timeout}
	c.br = bufio.NewReaderSize(deadlineReader{c}, 16<<10)
	c.bw = bufio.NewWriterSize(deadlineWriter{c}, 64<<10)
	_, c.tls = conn.(*tls.Conn)
	if _, err := c.expect("greeting", 220); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Dial connects to address; with tlsConfig set, by implicit TLS (RFC 8314).
func Dial(ctx context.Context, address string, tlsConfig *tls.Config, timeout time.Duration) (*Client, error) {
	conn, err := endpoint.Dial(ctx, address, tlsConfig, timeout, nil)
	if err != nil {
		return nil, err
	}
	return NewClient(conn, timeout)
}

type deadlineReader struct{ c *Client }

func (d deadlineReader) Read(p []byte) (int, error) {
	t := d.c.timeout
	if d.c.waitLong && d.c.DataTimeout > 0 {
		t = d.c.DataTimeout
	}
	if t > 0 {
		d.c.conn.SetReadDeadline(time.Now().Add(t))
	}
	return d.c.conn.Read(p)
}

type deadlineWriter struct{ c *Client }

func (d deadlineWriter) Write(p []byte) (int, error) {
	if d.c.timeout > 0 {
		d.c.conn.SetWriteDeadline(time.Now().Add(d.c.timeout))
	}
	return d.c.conn.Write(p)
}

// IsTLS reports whether the session is encrypted.
func (c *Client) IsTLS() bool { return c.tls }

// Extension reports whether the server announced ext in its EHLO reply,
// and the extension's parameters.
func (c *Client) Extension(ext string) (bool, string) {
	v, ok := c.ext[strings.ToUpper(ext)]
	return ok, v
}

// ReadReply reads one reply, of one line or many ("250-" lines up to the
// "250 " line), however the bytes arrive.
func (c *Client) ReadReply(cmd string) (*Reply, error) {
	r := &Reply{}
	for {
		line, err := textline.Read(c.br, MaxLine, ErrLineTooLong)
		if err != nil {
			c.Broken = true
			return nil, fmt.Errorf("smtp %s: %w", cmd, err)
		}
		if len(line) < 3 {
			c.Broken = true
			return nil, &ProtocolError{cmd, line}
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || (r.Code != 0 && code != r.Code) {
			c.Broken = true
			return nil, &ProtocolError{cmd, line}
		}
		r.Code = code
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 3 && line[3] != '-' && line[3] != ' ' {
			c.Broken = true
			return nil, &ProtocolError{cmd, line}
		}
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		r.Lines = append(r.Lines, text)
		if !more {
			break
		}
	}
	r.Enhanced, r.Lines[0] = splitEnhanced(r.Code, r.Lines[0])
	return r, nil
}

// splitEnhanced takes an RFC 3463 status code ("5.1.1") off the front of a
// reply text when its class matches the reply's.
func splitEnhanced(code int, text string) (string, string) {
	first, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || len(first) < 5 || first[0] != byte('0'+code/100) {
		return "", text
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || p == "" {
			return "", text
		}
	}
	return first, rest
}

// expect reads a reply and turns any code other than want (or, with want
// = positive, any code outside 2xx) into an *Error. A 421 also marks the
// connection broken: the server is closing it.
func (c *Client) expect(cmd string, want int) (*Reply, error) {
	r, err := c.ReadReply(cmd)
	if err != nil {
		return nil, err
	}
	if r.Code != want && !(want == positive && r.Code/100 == 2) {
		if r.Code == 421 {
			c.Broken = true
		}
		return r, &Error{Command: cmd, Code: r.Code, Enhanced: r.Enhanced, Message: r.text()}
	}
	return r, nil
}

func (c *Client) send(format string, args ...any) {
	fmt.Fprintf(c.bw, format, args...)
	c.bw.WriteString("\r\n")
}

func (c *Client) flush() error {
	if err := c.bw.Flush(); err != nil {
		c.Broken = true
		return err
	}
	return nil
}

// cmd sends one command and expects one reply code.
func (c *Client) cmd(name string, want int, format string, args ...any) (*Reply, error) {
	c.send(format, args...)
	if err := c.flush(); err != nil {
		return nil, fmt.Errorf("smtp %s: %w", name, err)
	}
	return c.expect(name, want)
}

// Hello sends EHLO, and HELO if the server does not know EHLO.
func (c *Client) Hello(name string) error {
	c.helo = name
	r, err := c.cmd("EHLO", positive, "EHLO %s", name)
	var se *Error
	if errors.As(err, &se) && (se.Code == 500 || se.Code == 502 || se.Code == 504) {
		c.ext = map[string]string{}
		_, err = c.cmd("HELO", positive, "HELO %s", name)
		return err
	}
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	for _, l := range r.Lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// StartTLS upgrades the session (RFC 3207) and says EHLO again.
func (c *Client) StartTLS(cfg *tls.Config) error {
	if _, err := c.cmd("STARTTLS", 220, "STARTTLS"); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		// Anything after the 220 would be read as if it came over TLS
		// (the STARTTLS command injection problem).
		c.Broken = true
		return &ProtocolError{"STARTTLS", "data after 220, before the TLS handshake"}
	}
	tc, err := endpoint.StartTLS(c.conn, cfg, c.timeout)
	if err != nil {
		c.Broken = true
		return fmt.Errorf("smtp STARTTLS: %w", err)
	}
	c.conn, c.tls = tc, true
	c.br.Reset(deadlineReader{c})
	c.bw.Reset(deadlineWriter{c})
	return c.Hello(c.helo)
}

// Auth runs a SASL exchange (RFC 4954), with the initial response on the
// AUTH line when the mechanism has one.
func (c *Client) Auth(m sasl.Mechanism) error {
	// RFC 4954 4: the AUTH line, initial response included, keeps to
	// SMTP's 512 octets; a longer one (an OAuth token) goes after the 334.
	x, line, err := sasl.Begin(m, 512)
	if err != nil {
		return err
	}
	c.send("%s", line)
	if err := c.flush(); err != nil {
		return err
	}
	for {
		r, err := c.ReadReply("AUTH")
		if err != nil {
			return err
		}
		switch r.Code {
		case 235:
			return nil
		case 334:
			resp, err := x.Answer(r.Lines[0])
			if err != nil {
				c.send("*")
				c.flush()
				c.expect("AUTH", 501)
				return fmt.Errorf("smtp AUTH: %w", err)
			}
			c.send("%s", resp)
			if err := c.flush(); err != nil {
				return err
			}
		default:
			if r.Code == 421 {
				c.Broken = true
			}
			return x.Refused(&Error{Command: "AUTH", Code: r.Code, Enhanced: r.Enhanced, Message: r.text()})
		}
	}
}

// Envelope is one transaction's sender, recipients and MAIL parameters.
type Envelope struct {
	From     string
	To       []string
	Size     int64 // sent as SIZE= when the server has SIZE
	EightBit bool  // BODY=8BITMIME
	SMTPUTF8 bool
}

// RcptResult is the server's answer to one RCPT.
type RcptResult struct {
	To  string
	Err error // nil: accepted
}

// Send runs one mail transaction: MAIL, every RCPT, DATA, the message
// (dot-stuffed, CRLF line ends), and the final reply. With PIPELINING the
// commands up to DATA go in one flight (RFC 2920). It returns the answer
// for each recipient; err is set when the message as a whole was not
// accepted (then no recipient has it). A transaction that failed leaves the
// session ready for the next after Reset, unless Broken is set.
func (c *Client) Send(env Envelope, body io.Reader) ([]RcptResult, error) {
	params := ""
	if ok, _ := c.Extension("SIZE"); ok && env.Size > 0 {
		params += fmt.Sprintf(" SIZE=%d", env.Size)
	}
	if env.EightBit {
		params += " BODY=8BITMIME"
	}
	if env.SMTPUTF8 {
		params += " SMTPUTF8"
	}
	pipelining, _ := c.Extension("PIPELINING")
	pipelining = pipelining && !c.NoPipelining
	results := make([]RcptResult, len(env.To))
	c.DataStarted = false

	c.send("MAIL FROM:<%s>%s", env.From, params)
	if !pipelining {
		if err := c.flush(); err != nil {
			return nil, err
		}
		if _, err := c.expect("MAIL", positive); err != nil {
			return nil, err
		}
	}
	accepted := 0
	for i, to := range env.To {
		c.send("RCPT TO:<%s>", to)
		results[i].To = to
		if !pipelining {
			if err := c.flush(); err != nil {
				return nil, err
			}
			if _, err := c.expect("RCPT", positive); err != nil {
				if c.Broken {
					return nil, err
				}
				results[i].Err = err
				continue
			}
			accepted++
		}
	}
	if !pipelining && accepted == 0 {
		return results, nil // no DATA without a recipient; the caller resets
	}
	c.send("DATA")
	if err := c.flush(); err != nil {
		return nil, err
	}
	if pipelining {
		// Read the replies in order: MAIL, each RCPT, DATA.
		_, mailErr := c.expect("MAIL", positive)
		if mailErr != nil && c.Broken {
			return nil, mailErr
		}
		for i := range env.To {
			_, err := c.expect("RCPT", positive)
			if err != nil && c.Broken {
				return nil, err
			}
			if mailErr != nil {
				err = mailErr
			}
			results[i].Err = err
			if err == nil {
				accepted++
			}
		}
		_, dataErr := c.expect("DATA", 354)
		if dataErr != nil {
			if c.Broken {
				return nil, dataErr
			}
			if mailErr != nil {
				return nil, mailErr
			}
			if accepted == 0 {
				return results, nil
			}
			return nil, dataErr
		}
		if accepted == 0 || mailErr != nil {
			// The server said 354 although nothing was accepted: end the
			// data at once; the transaction has no recipient anyway.
			c.bw.WriteString(".\r\n")
			c.flush()
			c.ReadReply("DATA")
			if mailErr != nil {
				return nil, mailErr
			}
			return results, nil
		}
	} else if _, err := c.expect("DATA", 354); err != nil {
		return nil, err
	}
	c.DataStarted = true
	dw := newDotWriter(c.bw)
	if c.copyBuf == nil {
		c.copyBuf = make([]byte, 32<<10)
	}
	// Through the client's own buffer, hiding the body's WriteTo: io.Copy
	// makes a 32 KiB buffer per call, and io.MultiReader's WriteTo (the
	// trace field before the message) does too, used or not. On small
	// messages those were most of what mailflow allocated.
	if _, err := io.CopyBuffer(dw, struct{ io.Reader }{body}, c.copyBuf); err != nil {
		c.Broken = true // the data is half sent: the session is lost
		return nil, fmt.Errorf("smtp DATA: %w", err)
	}
	if err := dw.Close(); err != nil {
		c.Broken = true
		return nil, fmt.Errorf("smtp DATA: %w", err)
	}
	// The terminator is on its way: from here on a lost connection leaves
	// the server possibly holding the message.
	if err := c.flush(); err != nil {
		return nil, &ReplyLostError{err}
	}
	c.waitLong = true
	_, err := c.expect("DATA", positive)
	c.waitLong = false
	var se *Error
	if err != nil && !errors.As(err, &se) {
		return nil, &ReplyLostError{err}
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// Reset aborts the current transaction (RSET).
func (c *Client) Reset() error {
	_, err := c.cmd("RSET", positive, "RSET")
	return err
}

// Noop checks that the session is alive.
func (c *Client) Noop() error {
	_, err := c.cmd("NOOP", positive, "NOOP")
	return err
}

// Quit ends the session politely and closes the connection.
func (c *Client) Quit() error {
	_, err := c.cmd("QUIT", 221, "QUIT")
	c.conn.Close()
	c.Broken = true
	return err
}

// Close drops the connection.
func (c *Client) Close() error {
	c.Broken = true
	return c.conn.Close()
}
