package smtp

import (
	"bytes"
	"io"
)

// dotWriter writes a message as SMTP DATA in one pass (RFC 5321 4.5.2):
// every line end becomes CRLF — a bare LF, and a bare CR too, so that no
// bare CR or LF reaches the wire and a "." line can be formed by nothing but
// the terminator (the SMTP smuggling pattern is "\n.\r\n" or "\r.\r\n"); a
// line starting with '.' gets a second one; Close ends the last line and
// writes the terminator. Between the bytes it changes it copies whole runs.
type dotWriter struct {
	w         io.Writer
	bol       bool // at the beginning of a line
	pendingCR bool // a CR ended the last write; what follows decides what it was
	plain     bool // line ends only: no dot-stuffing, no terminator (the bytes DKIM signs)
}

func newDotWriter(w io.Writer) *dotWriter { return &dotWriter{w: w, bol: true} }

var (
	crlf = []byte("\r\n")
	dot  = []byte(".")
)

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if d.pendingCR {
			// CR LF is one line end; a CR before anything else was bare.
			d.pendingCR = false
			if _, err := d.w.Write(crlf); err != nil {
				return 0, err
			}
			d.bol = true
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		if d.bol && p[0] == '.' && !d.plain {
			if _, err := d.w.Write(dot); err != nil {
				return 0, err
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			if _, err := d.w.Write(p); err != nil {
				return 0, err
			}
			d.bol = false
			break
		}
		if _, err := d.w.Write(p[:i]); err != nil {
			return 0, err
		}
		if p[i] == '\r' {
			d.pendingCR = true
		} else {
			if _, err := d.w.Write(crlf); err != nil {
				return 0, err
			}
			d.bol = true
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close ends the last line if needed and writes the terminator.
func (d *dotWriter) Close() error {
	end := ".\r\n"
	if d.plain {
		end = ""
	}
	if d.pendingCR || !d.bol {
		end = "\r\n" + end
	}
	_, err := io.WriteString(d.w, end)
	return err
}
