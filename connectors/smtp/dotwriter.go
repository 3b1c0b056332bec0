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
		// Most mail is CRLF lines, few starting with a dot: copy the run
		// of such lines in one write, jumping from line end to line end.
		if run := d.cleanRun(p); run > 0 {
			if _, err := d.w.Write(p[:run]); err != nil {
				return 0, err
			}
			d.bol = true
			p = p[run:]
			continue
		}
		// A bare LF, a CR (bare, or one whose LF is in the next write), or
		// the end of what was given without a line end.
		lf := bytes.IndexByte(p, '\n')
		line := p
		if lf >= 0 {
			line = p[:lf]
		}
		switch cr := bytes.IndexByte(line, '\r'); {
		case cr >= 0:
			if _, err := d.w.Write(p[:cr]); err != nil {
				return 0, err
			}
			d.pendingCR = true
			p = p[cr+1:]
		case lf >= 0:
			if _, err := d.w.Write(p[:lf]); err != nil {
				return 0, err
			}
			if _, err := d.w.Write(crlf); err != nil {
				return 0, err
			}
			d.bol = true
			p = p[lf+1:]
		default:
			if _, err := d.w.Write(p); err != nil {
				return 0, err
			}
			d.bol = false
			p = nil
		}
	}
	return n, nil
}

// cleanRun is how many bytes at the start of p are whole lines ending in
// CRLF with no other CR in them, none but the first starting with a dot
// (the caller stuffed that one): bytes that go out as they are.
func (d *dotWriter) cleanRun(p []byte) int {
	run := 0
	for run < len(p) {
		rest := p[run:]
		lf := bytes.IndexByte(rest, '\n')
		if lf < 1 || rest[lf-1] != '\r' || bytes.IndexByte(rest[:lf-1], '\r') >= 0 {
			break
		}
		run += lf + 1
		if run < len(p) && p[run] == '.' && !d.plain {
			break // the next line needs its dot doubled
		}
	}
	return run
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
