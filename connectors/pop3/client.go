package pop3

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
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

// Error is a -ERR reply. Code is the RFC 2449 / RFC 3206 response code in
// brackets at the start of the text, if any ("IN-USE", "LOGIN-DELAY",
// "AUTH", "SYS/TEMP", "SYS/PERM").
type Error struct {
	Command string // the command that got the reply (without arguments)
	Code    string
	Text    string
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("pop3 %s: -ERR [%s] %s", e.Command, e.Code, e.Text)
	}
	return fmt.Sprintf("pop3 %s: -ERR %s", e.Command, e.Text)
}

// Temporary reports whether trying again later may succeed: the mailbox is
// in use, logins come too fast, or the server has a passing problem.
func (e *Error) Temporary() bool {
	switch e.Code {
	case "IN-USE", "LOGIN-DELAY", "SYS/TEMP":
		return true
	}
	return false
}

// Permanent reports whether the error needs a person to act: wrong
// credentials ([AUTH]) or a lasting server problem ([SYS/PERM]). Other -ERR
// replies without a code are neither: the engine retries them on its
// schedule.
func (e *Error) Permanent() bool { return e.Code == "AUTH" || e.Code == "SYS/PERM" }

func parseErr(cmd, text string) *Error {
	e := &Error{Command: cmd, Text: text}
	if strings.HasPrefix(text, "[") {
		if i := strings.IndexByte(text, ']'); i > 0 {
			e.Code = strings.ToUpper(text[1:i])
			e.Text = strings.TrimSpace(text[i+1:])
		}
	}
	return e
}

// ProtocolError is a reply that is neither +OK nor -ERR, or otherwise
// breaks the protocol. The connection must be closed.
type ProtocolError struct {
	Command string
	Line    string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("pop3 %s: unexpected reply %q", e.Command, textline.Shorten(e.Line))
}

// Client is one POP3 session (RFC 1939), with the extensions of RFC 2449
// (CAPA, PIPELINING, response codes), RFC 2595 (STLS), RFC 5034 (SASL AUTH)
// and APOP. Each command is one method. A Client is not safe for concurrent
// use.
type Client struct {
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	greeting  string
	timeout   time.Duration
	maxLine   int
	tls       bool
	caps      map[string]string
	connected bool

	sizes map[int]int64 // by message number, from the last LIST
	retrs []int         // the messages of the RETRs sent whose replies are not read yet
	noops int           // NOOPs sent whose replies are not read yet (see follow)
	lost  error         // set when the stream is out of step: every later reply fails with it
}

// MaxLine bounds every status and listing line (RFC 2449 allows 512 octets
// for a status line; real servers' CAPA lines stay far below this).
const MaxLine = 8192

// NewClient starts a session on conn, which is already connected (and, for
// implicit TLS, already a *tls.Conn), and reads the greeting. Every reply
// must arrive within timeout.
func NewClient(conn net.Conn, timeout time.Duration) (*Client, error) {
	c := &Client{conn: conn, timeout: timeout, maxLine: MaxLine}
	c.br = bufio.NewReaderSize(deadlineReader{c}, 64<<10)
	c.bw = bufio.NewWriterSize(conn, 8<<10)
	_, c.tls = conn.(*tls.Conn)
	line, err := c.readStatus("greeting")
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.greeting = line
	c.connected = true
	return c, nil
}

// deadlineReader extends the read deadline before every read, so that a
// slow but moving transfer (a large RETR) is not cut off, and a stalled one is.
type deadlineReader struct{ c *Client }

func (d deadlineReader) Read(p []byte) (int, error) {
	if d.c.timeout > 0 {
		d.c.conn.SetReadDeadline(time.Now().Add(d.c.timeout))
	}
	return d.c.conn.Read(p)
}

// Dial connects to address and reads the greeting; with tlsConfig set, the
// connection is implicit TLS (port 995).
func Dial(ctx context.Context, address string, tlsConfig *tls.Config, timeout time.Duration) (*Client, error) {
	conn, err := endpoint.Dial(ctx, address, tlsConfig, timeout, nil)
	if err != nil {
		return nil, err
	}
	return NewClient(conn, timeout)
}

// Greeting is the server's greeting line, without "+OK ".
func (c *Client) Greeting() string { return c.greeting }

// IsTLS reports whether the session is encrypted.
func (c *Client) IsTLS() bool { return c.tls }

func (c *Client) send(format string, args ...any) error {
	if c.timeout > 0 {
		c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	fmt.Fprintf(c.bw, format, args...)
	c.bw.WriteString("\r\n")
	return nil
}

func (c *Client) flush() error {
	if c.timeout > 0 {
		c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.bw.Flush()
}

// readStatus reads a single-line reply and returns its text after "+OK",
// after the replies of the NOOPs a reader sent (see follow).
func (c *Client) readStatus(cmd string) (string, error) {
	if c.lost != nil {
		return "", c.lost
	}
	for ; c.noops > 0; c.noops-- {
		line, err := readLine(c.br, c.maxLine)
		if err != nil {
			return "", fmt.Errorf("pop3 NOOP: %w", err)
		}
		if !strings.HasPrefix(line, "+OK") {
			return "", &ProtocolError{Command: "NOOP", Line: line}
		}
	}
	line, err := readLine(c.br, c.maxLine)
	if err != nil {
		return "", fmt.Errorf("pop3 %s: %w", cmd, err)
	}
	switch {
	case strings.HasPrefix(line, "+OK"):
		return strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
	case strings.HasPrefix(line, "-ERR"):
		return "", parseErr(cmd, strings.TrimPrefix(strings.TrimPrefix(line, "-ERR"), " "))
	}
	return "", &ProtocolError{Command: cmd, Line: line}
}

// cmd sends one command and reads its single-line reply.
func (c *Client) cmd(name string, format string, args ...any) (string, error) {
	c.send(format, args...)
	if err := c.flush(); err != nil {
		return "", fmt.Errorf("pop3 %s: %w", name, err)
	}
	return c.readStatus(name)
}

// readLines reads the lines of a multi-line reply (after its status line),
// each bounded, dot-unstuffed, calling fn for each.
func (c *Client) readLines(cmd string, fn func(string) error) error {
	for {
		line, err := readLine(c.br, c.maxLine)
		if err != nil {
			return fmt.Errorf("pop3 %s: %w", cmd, err)
		}
		if line == "." {
			return nil
		}
		line = strings.TrimPrefix(line, ".")
		if err := fn(line); err != nil {
			return err
		}
	}
}

// Capa sends CAPA (RFC 2449) and returns the capabilities, by upper-case
// name, with their arguments. A server without CAPA gives an empty map.
func (c *Client) Capa() (map[string]string, error) {
	caps := map[string]string{}
	if _, err := c.cmd("CAPA", "CAPA"); err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			c.caps = caps
			return caps, nil
		}
		return nil, err
	}
	err := c.readLines("CAPA", func(line string) error {
		name, arg, _ := strings.Cut(line, " ")
		caps[strings.ToUpper(name)] = arg
		return nil
	})
	c.caps = caps
	return caps, err
}

// Has reports whether the last CAPA listed the capability.
func (c *Client) Has(capability string) bool {
	_, ok := c.caps[strings.ToUpper(capability)]
	return ok
}

// StartTLS sends STLS (RFC 2595) and switches the connection to TLS. The
// capabilities must be asked for again afterwards.
func (c *Client) StartTLS(cfg *tls.Config) error {
	if _, err := c.cmd("STLS", "STLS"); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		// Bytes after the +OK would be injected into the TLS session
		// (the STARTTLS command injection attack, CVE-2011-0411 class).
		return &ProtocolError{Command: "STLS", Line: "data after +OK, before the TLS handshake"}
	}
	tc, err := endpoint.StartTLS(c.conn, cfg, c.timeout)
	if err != nil {
		return fmt.Errorf("pop3 STLS: %w", err)
	}
	c.conn, c.tls, c.caps = tc, true, nil
	c.br.Reset(deadlineReader{c})
	c.bw.Reset(tc)
	return nil
}

// User and Pass log in with USER/PASS (RFC 1939).
func (c *Client) User(name string) error {
	_, err := c.cmd("USER", "USER %s", name)
	return err
}

// Pass sends the password of USER/PASS.
func (c *Client) Pass(password string) error {
	_, err := c.cmd("PASS", "PASS %s", password)
	return err
}

// Apop logs in with APOP, using the timestamp of the greeting.
func (c *Client) Apop(name, password string) error {
	start := strings.IndexByte(c.greeting, '<')
	end := strings.LastIndexByte(c.greeting, '>')
	if start < 0 || end < start {
		return errors.New("pop3 APOP: the server's greeting has no timestamp; it does not support APOP")
	}
	sum := md5.Sum([]byte(c.greeting[start:end+1] + password))
	_, err := c.cmd("APOP", "APOP %s %s", name, hex.EncodeToString(sum[:]))
	return err
}

// Auth runs a SASL exchange with AUTH (RFC 5034), sending the initial
// response on the command line.
func (c *Client) Auth(m sasl.Mechanism) error {
	// RFC 5034 4: an AUTH line with its initial response is at most 255
	// octets; a longer one (an OAuth token) goes after the continuation.
	x, line, err := sasl.Begin(m, 255)
	if err != nil {
		return err
	}
	c.send("%s", line)
	if err := c.flush(); err != nil {
		return err
	}
	for {
		line, err := readLine(c.br, c.maxLine)
		if err != nil {
			return fmt.Errorf("pop3 AUTH: %w", err)
		}
		switch {
		case strings.HasPrefix(line, "+OK"):
			return nil
		case strings.HasPrefix(line, "-ERR"):
			return x.Refused(parseErr("AUTH", strings.TrimPrefix(strings.TrimPrefix(line, "-ERR"), " ")))
		case strings.HasPrefix(line, "+ ") || line == "+":
			resp, err := x.Answer(strings.TrimPrefix(line, "+"))
			if err != nil {
				c.send("*")
				c.flush()
				return fmt.Errorf("pop3 AUTH: %w", err)
			}
			c.send("%s", resp)
			if err := c.flush(); err != nil {
				return err
			}
		default:
			return &ProtocolError{Command: "AUTH", Line: line}
		}
	}
}

// Stat returns the number of messages and their total size.
func (c *Client) Stat() (count int, size int64, err error) {
	line, err := c.cmd("STAT", "STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, 0, &ProtocolError{Command: "STAT", Line: line}
	}
	count, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || count < 0 || size < 0 {
		return 0, 0, &ProtocolError{Command: "STAT", Line: line}
	}
	return count, size, nil
}

// MessageInfo is one line of LIST or UIDL.
type MessageInfo struct {
	Number int
	Size   int64  // from LIST
	UID    string // from UIDL
}

// List returns the number and size of every message.
func (c *Client) List() ([]MessageInfo, error) {
	if _, err := c.cmd("LIST", "LIST"); err != nil {
		return nil, err
	}
	var out []MessageInfo
	err := c.readLines("LIST", func(line string) error {
		f := strings.Fields(line)
		if len(f) < 2 {
			return &ProtocolError{Command: "LIST", Line: line}
		}
		n, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || n <= 0 || size < 0 {
			return &ProtocolError{Command: "LIST", Line: line}
		}
		out = append(out, MessageInfo{Number: n, Size: size})
		return nil
	})
	c.sizes = make(map[int]int64, len(out))
	for _, m := range out {
		c.sizes[m.Number] = m.Size
	}
	return out, err
}

// Uidl returns the unique id of every message (RFC 1939 section 7).
func (c *Client) Uidl() ([]MessageInfo, error) {
	if _, err := c.cmd("UIDL", "UIDL"); err != nil {
		return nil, err
	}
	var out []MessageInfo
	err := c.readLines("UIDL", func(line string) error {
		f := strings.Fields(line)
		if len(f) < 2 {
			return &ProtocolError{Command: "UIDL", Line: line}
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n <= 0 {
			return &ProtocolError{Command: "UIDL", Line: line}
		}
		out = append(out, MessageInfo{Number: n, UID: f[1]})
		return nil
	})
	return out, err
}

// Top returns the header and the first lines of message n, read whole
// (bounded by max bytes). An error wrapping ErrOutOfStep means the reply
// could not be told from what follows it.
func (c *Client) Top(n, lines int, max int64) ([]byte, error) {
	if _, err := c.cmd("TOP", "TOP %d %d", n, lines); err != nil {
		return nil, err
	}
	d := c.body("TOP", n, max)
	b, err := io.ReadAll(d)
	if err != nil {
		return nil, fmt.Errorf("pop3 TOP: %w", err)
	}
	if d.misread != nil {
		// Empty, or a first line "." followed by one that looks like a
		// reply: which, nothing tells, so nothing more is read here.
		c.lost = fmt.Errorf("pop3 TOP %d: %v: %w", n, d.misread, ErrOutOfStep)
		return nil, c.lost
	}
	return b, nil
}

// Retr sends RETR n and returns a reader over the message, dot-unstuffed
// and bounded by max bytes (0: no bound). The reader must be read to its
// end before the next command's reply can be read.
//
// When the last LIST gave n's size, the reader checks the reply against
// it: a reply that ends before that many bytes may have ended at a line the
// server did not byte-stuff, with the rest of the message still to come,
// so every later reply fails with an error wrapping ErrOutOfStep (see
// OutOfStep); and where the reader can tell why the bytes differ, its
// Misread method returns a *MisreadError once it is read to the end.
func (c *Client) Retr(n int, max int64) (io.Reader, error) {
	if err := c.SendRetr(n); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, err
	}
	return c.ReadRetr(max)
}

// SendRetr queues RETR n without waiting for its reply; with PIPELINING
// several can be queued (Flush sends them) and their replies read in order
// with ReadRetr.
func (c *Client) SendRetr(n int) error {
	c.retrs = append(c.retrs, n)
	return c.send("RETR %d", n)
}

// Flush sends what was queued.
func (c *Client) Flush() error { return c.flush() }

// ReadRetr reads the reply to the oldest queued RETR (see Retr).
func (c *Client) ReadRetr(max int64) (io.Reader, error) {
	n := 0
	if len(c.retrs) > 0 {
		n, c.retrs = c.retrs[0], c.retrs[1:]
	}
	if _, err := c.readStatus("RETR"); err != nil {
		return nil, err
	}
	d := c.body("RETR", n, max)
	d.whole = true
	return d, nil
}

// body is a reader over the multi-line reply to cmd for message n.
func (c *Client) body(cmd string, n int, max int64) *dotReader {
	d := newDotReader(c.br, max)
	d.cmd, d.num = cmd, n
	if size, ok := c.sizes[n]; ok {
		d.size = size
	}
	d.follow = c.follow
	d.lost = func(err error) { c.lost = err }
	return d
}

// follow makes sure that another reply comes after the one being read:
// the next queued RETR's, or else a NOOP's, sent now. A reader that must
// look past a line to tell what it is then never waits for bytes that are
// not coming.
func (c *Client) follow() error {
	if len(c.retrs) == 0 {
		c.send("NOOP")
		c.noops++
	}
	return c.flush()
}

// inflight is how many RETRs were sent whose replies are not read yet.
func (c *Client) inflight() int { return len(c.retrs) }

// OutOfStep returns the error, wrapping ErrOutOfStep, that ended the
// session's stream, or nil while it is in step.
func (c *Client) OutOfStep() error { return c.lost }

// Dele marks message n for deletion at QUIT.
func (c *Client) Dele(n int) error {
	_, err := c.cmd("DELE", "DELE %d", n)
	return err
}

// DeleEach marks several messages for deletion, pipelined when the server
// offers PIPELINING, and returns each one's refusal (nil when marked), in
// order. An error means the connection broke.
func (c *Client) DeleEach(ns []int) ([]error, error) {
	out := make([]error, len(ns))
	window := 1
	if c.Has("PIPELINING") {
		window = 64
	}
	for i := 0; i < len(ns); i += window {
		end := min(i+window, len(ns))
		for _, n := range ns[i:end] {
			c.send("DELE %d", n)
		}
		if err := c.flush(); err != nil {
			return out, err
		}
		for k := i; k < end; k++ {
			if _, err := c.readStatus("DELE"); err != nil {
				var pe *Error
				if !errors.As(err, &pe) {
					return out, err
				}
				out[k] = err
			}
		}
	}
	return out, nil
}

// Rset unmarks every message marked for deletion.
func (c *Client) Rset() error {
	_, err := c.cmd("RSET", "RSET")
	return err
}

// Noop keeps the session alive.
func (c *Client) Noop() error {
	_, err := c.cmd("NOOP", "NOOP")
	return err
}

// Quit ends the session; the server deletes the marked messages (the
// UPDATE state) and answers +OK only if that worked.
func (c *Client) Quit() error {
	_, err := c.cmd("QUIT", "QUIT")
	c.conn.Close()
	c.connected = false
	return err
}

// Close drops the connection without QUIT: nothing marked is deleted.
func (c *Client) Close() error {
	c.connected = false
	return c.conn.Close()
}
