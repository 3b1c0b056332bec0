package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/mailflow/mailflow/connectors/internal/textline"
)

// ErrLineTooLong is returned when a reply line is longer than the client's
// bound. The connection is then out of step and must be closed.
var ErrLineTooLong = errors.New("pop3: reply line too long")

// ErrOutOfStep is wrapped by the error of a connection whose stream can no
// longer be trusted: a reply ended where the client cannot be sure it
// ended, so what comes next may be more of it rather than the next reply.
// The connection must be closed; a new session reads the rest.
var ErrOutOfStep = errors.New("pop3: the connection is out of step")

// readLine reads one CRLF- (or LF-) terminated line of at most max bytes and
// returns it without its line end. It works however the bytes arrive: one
// at a time or many lines at once.
func readLine(r *bufio.Reader, max int) (string, error) {
	return textline.Read(r, max, ErrLineTooLong)
}

// MisreadError says that the bytes of a message, read to the end of its
// reply, are not the message as the server holds it, and why, where the
// client can tell: a server sends the same bytes every time, so fetching
// it again gives the same wrong ones. The reader of the reply returns it
// from Misread.
type MisreadError struct {
	Number int   // the message's number in the session
	Listed int64 // its size as LIST gave it
	Read   int64 // the bytes its reply had
	Reason string
}

func (e *MisreadError) Error() string {
	return fmt.Sprintf("pop3: message %d came as %d bytes where LIST gave %d: %s", e.Number, e.Read, e.Listed, e.Reason)
}

// dotReader streams the body of a multi-line reply (RFC 1939 section 3):
// it removes the byte-stuffed leading dot of each line and ends at the
// terminating ".CRLF" line, which it consumes. Lines are not bounded here:
// the caller bounds the total size.
//
// RFC 1939 doubles every leading dot, so on the wire a line that starts
// with one dot is either the terminator or stuffed. Dovecot 2.3 sends a
// message's first line as it is: a first line ".x" keeps its dot, a first
// line "." is told from the terminator by what follows it, and a first
// line "..x" cannot be told from a stuffed ".x". When the reader knows the
// message's size (LIST), it checks what it read against it, marks the
// client's stream out of step when the reply ended early, and says through
// Misread what it knows of a difference.
type dotReader struct {
	r       *bufio.Reader
	pending []byte // the rest of the current line, still in r's buffer
	bol     bool   // at the beginning of a line
	first   bool   // nothing of the body read yet
	done    bool
	ended   bool    // end has run
	n       int64   // bytes returned so far
	max     int64   // 0: no bound
	head    [2]byte // the first bytes returned: an empty message's one empty line

	// What the reply is, from the client: the command and message number,
	// the size LIST gave (-1: not known), whether the reply is the whole
	// message (RETR; TOP gives its start). follow makes sure another reply
	// comes after this one, so that looking past a line never waits for
	// bytes that are not coming; lost tells the client its stream is out
	// of step. Both may be nil.
	cmd    string
	num    int
	size   int64
	whole  bool
	follow func() error
	lost   func(error)

	dotdot  bool  // the first line began with "..", read as stuffed
	misread error // see Misread
}

// ErrMessageTooLarge is returned by a dotReader past its bound.
var ErrMessageTooLarge = errors.New("pop3: message larger than the maximum size")

func newDotReader(r *bufio.Reader, max int64) *dotReader {
	return &dotReader{r: r, bol: true, first: true, max: max, size: -1}
}

func (d *dotReader) Read(p []byte) (int, error) {
	n := 0
	var err error
	for n < len(p) && err == nil {
		if len(d.pending) == 0 {
			if d.done {
				break
			}
			err = d.nextLine()
			continue
		}
		c := copy(p[n:], d.pending)
		d.pending = d.pending[c:]
		n += c
	}
	if d.n < int64(len(d.head)) {
		copy(d.head[int(d.n):], p[:n])
	}
	d.n += int64(n)
	if err != nil {
		return n, err
	}
	if d.max > 0 && d.n > d.max {
		return n, ErrMessageTooLarge
	}
	if d.done {
		d.end()
		if n == 0 {
			return 0, io.EOF
		}
	}
	return n, nil
}

// nextLine makes the next piece of the current line pending, or sees the
// terminator.
func (d *dotReader) nextLine() error {
	if d.bol {
		b, err := d.r.Peek(1)
		if err != nil {
			return unexpected(err)
		}
		if b[0] == '.' {
			end, err := d.terminator()
			if err != nil {
				return err
			}
			switch {
			case end > 0 && d.first && d.size > 0:
				return d.leadingDot(end)
			case end > 0:
				d.r.Discard(end)
				d.done = true
				return nil
			}
			// terminator looked at the byte after the dot.
			if b, _ := d.r.Peek(2); b[1] == '.' {
				d.r.Discard(1) // stuffed
				d.dotdot = d.first
			}
			// Else the line starts with one dot and goes on: no server
			// stuffed that, so the dot is the message's.
		}
	}
	d.first = false
	// Not at a dot: what is buffered up to the next line that starts with
	// one (or to the last line end buffered) is message as it stands, one
	// run however many lines it holds. Line by line, the bookkeeping cost
	// more than the copying.
	if d.r.Buffered() == 0 {
		if _, err := d.r.Peek(1); err != nil {
			return unexpected(err)
		}
	}
	buf, _ := d.r.Peek(d.r.Buffered())
	end := bytes.Index(buf, []byte("\n."))
	if end < 0 {
		end = bytes.LastIndexByte(buf, '\n')
	}
	if end < 0 {
		d.pending, d.bol = buf, false // a piece of a long line
	} else {
		d.pending, d.bol = buf[:end+1], true
	}
	// The bytes stay in the buffer until the next read from it, and
	// pending is copied out before that.
	d.r.Discard(len(d.pending))
	return nil
}

// terminator returns the length of the terminating line (".\r\n", or a
// lenient ".\n") that starts the buffer, which starts with a dot, or 0 when
// the line there is another.
func (d *dotReader) terminator() (int, error) {
	b, err := d.r.Peek(2)
	if err != nil {
		return 0, unexpected(err)
	}
	switch {
	case b[1] == '\n':
		return 2, nil
	case b[1] != '\r':
		return 0, nil
	}
	if b, err = d.r.Peek(3); err != nil {
		return 0, unexpected(err)
	}
	if b[2] == '\n' {
		return 3, nil
	}
	return 0, nil
}

// leadingDot reads a body whose first line is a lone dot although LIST
// gave the message bytes. By RFC 1939 that line ends an empty reply; but
// Dovecot 2.3 does not double the dot of a message's first line, and then
// the message goes on after it. What follows tells the two apart: the
// next reply's status line, or more of this message.
func (d *dotReader) leadingDot(end int) error {
	if d.follow != nil {
		if err := d.follow(); err != nil {
			return err
		}
	}
	b, err := d.r.Peek(end + 4)
	if err != nil {
		return unexpected(err)
	}
	if next := b[end:]; bytes.HasPrefix(next, []byte("+OK")) || bytes.HasPrefix(next, []byte("-ERR")) {
		// A reply follows: the server sent an empty reply for a message it
		// lists with bytes. Or the message's second line looks like a
		// reply; end sees the reply short, so the stream is not read on.
		d.r.Discard(end)
		d.done = true
		d.misread = &MisreadError{Number: d.num, Listed: d.size, Reason: "the server sent an empty reply, or a first line \".\" that it did not byte-stuff followed by a line that looks like a reply"}
		return nil
	}
	d.first, d.bol = false, true
	d.pending = b[:end]
	d.r.Discard(end)
	return nil
}

// end checks, once, what the reply had against what LIST gave.
func (d *dotReader) end() {
	if d.ended {
		return
	}
	d.ended = true
	if !d.whole || d.size < 0 {
		return
	}
	switch {
	case d.n < d.size:
		// The reply ended before the bytes LIST gave: at a line the server
		// did not byte-stuff, with the rest of the message still to come,
		// or LIST overstated it. The stream cannot tell which.
		if d.lost != nil {
			d.lost(fmt.Errorf("pop3 %s %d: the reply ended after %d of the %d bytes LIST gave: %w", d.cmd, d.num, d.n, d.size, ErrOutOfStep))
		}
		if d.misread == nil && d.dotdot && d.n+1 == d.size {
			d.misread = &MisreadError{Number: d.num, Listed: d.size, Read: d.n, Reason: "its first line starts with \"..\", which the server did not byte-stuff (Dovecot 2.3 sends a first line as it is), so one dot is lost"}
		}
	case d.size == 0 && (d.n == 2 && string(d.head[:]) == "\r\n" || d.n == 1 && d.head[0] == '\n'):
		d.misread = &MisreadError{Number: d.num, Listed: 0, Read: d.n, Reason: "the message is empty, and the server sends it as one empty line (Dovecot)"}
	}
	if m, ok := d.misread.(*MisreadError); ok {
		m.Read = d.n
	}
}

// Misread returns, once the reply was read to its end, why its bytes are
// not the message as the server holds it (a *MisreadError) where the
// reader can tell, else nil. The engine holds such a message at once
// rather than fetching the same wrong bytes again.
func (d *dotReader) Misread() error {
	if !d.ended {
		return nil
	}
	return d.misread
}

// drain reads the rest of the reply, so that the next reply can be read.
func (d *dotReader) drain() error {
	d.max = 0
	_, err := io.Copy(io.Discard, d)
	return err
}

func unexpected(err error) error {
	if err == io.EOF {
		return fmt.Errorf("pop3: connection closed in a multi-line reply: %w", io.ErrUnexpectedEOF)
	}
	return err
}
