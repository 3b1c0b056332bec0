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

// readLine reads one CRLF- (or LF-) terminated line of at most max bytes and
// returns it without its line end. It works however the bytes arrive: one
// at a time or many lines at once.
func readLine(r *bufio.Reader, max int) (string, error) {
	return textline.Read(r, max, ErrLineTooLong)
}

// dotReader streams the body of a multi-line reply (RFC 1939 section 3):
// it removes the byte-stuffed leading dot of each line and ends at the
// terminating ".CRLF" line, which it consumes. Lines are not bounded here:
// the caller bounds the total size.
type dotReader struct {
	r       *bufio.Reader
	pending []byte // the rest of the current line, still in r's buffer
	bol     bool   // at the beginning of a line
	done    bool
	n       int64 // bytes returned so far
	max     int64 // 0: no bound
}

// ErrMessageTooLarge is returned by a dotReader past its bound.
var ErrMessageTooLarge = errors.New("pop3: message larger than the maximum size")

func newDotReader(r *bufio.Reader, max int64) *dotReader {
	return &dotReader{r: r, bol: true, max: max}
}

func (d *dotReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(d.pending) == 0 {
			if d.done {
				break
			}
			if err := d.nextLine(); err != nil {
				return n, err
			}
			continue
		}
		c := copy(p[n:], d.pending)
		d.pending = d.pending[c:]
		n += c
	}
	d.n += int64(n)
	if d.max > 0 && d.n > d.max {
		return n, ErrMessageTooLarge
	}
	if n == 0 && d.done {
		return 0, io.EOF
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
			// ".\r\n" (or a lenient ".\n") ends the reply; any other line
			// starting with a dot was stuffed.
			if b, err := d.r.Peek(2); err == nil && b[1] == '\n' {
				d.r.Discard(2)
				d.done = true
				return nil
			} else if err != nil {
				return unexpected(err)
			}
			b, err := d.r.Peek(3)
			if err != nil {
				return unexpected(err)
			}
			if b[1] == '\r' && b[2] == '\n' {
				d.r.Discard(3)
				d.done = true
				return nil
			}
			d.r.Discard(1)
		}
	}
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
