package smtpd

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn is a client's connection as the server holds it: it tells the
// per-client counts when it closes, and can be hung up on between
// replies (too many errors, a brute force, a shutdown), which makes the
// server's next read see the end of the stream after it wrote its reply.
type conn struct {
	net.Conn
	addr   string // the client's IP address, "" on a Unix socket
	closed func()
	once   sync.Once
	hung   atomic.Bool
	gone   atomic.Bool // hung up on, and its last reply written
	plain  atomic.Bool // no TLS over it: a reply may be written here
	// busy is set while a mail transaction is under way (MAIL to the
	// end of DATA): a shutdown lets it finish.
	busy atomic.Bool
}

func (c *conn) Read(b []byte) (int, error) {
	if c.hung.Load() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && !c.hung.Load() {
		c.timedOut()
	}
	return n, err
}

// timedOut ends a connection whose client was too slow (timeout,
// min_data_rate). It closes at once rather than let go-smtp answer:
// bufio hands a line cut off by the deadline on as if it were whole, and
// a cut command ("RCPT TO:<bob@example.n") must not be acted on. A client
// in clear text is told why first.
func (c *conn) timedOut() {
	c.hung.Store(true)
	if c.plain.Load() {
		c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Conn.Write([]byte("421 4.4.2 Error: timeout exceeded\r\n"))
	}
	c.gone.Store(true)
	c.Conn.Close()
}

// Write writes, and once hung up on, closes the connection after the
// reply it writes: commands the client pipelined after the one that
// ended it are not answered.
func (c *conn) Write(b []byte) (int, error) {
	if c.gone.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(b)
	if c.hung.Load() {
		c.gone.Store(true)
		c.Conn.Close()
	}
	return n, err
}

func (c *conn) Close() error {
	c.once.Do(c.closed)
	return c.Conn.Close()
}

// hangUp ends the connection after the reply being written: the next read
// sees the end of the stream, and a read under way is woken.
func (c *conn) hangUp() {
	c.hung.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

// rawConn is the conn under what the server holds (a TLS connection after
// STARTTLS or on an implicit-TLS port).
func rawConn(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// clientIP is the IP address of a connection's peer, "" for a Unix
// socket.
func clientIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}
