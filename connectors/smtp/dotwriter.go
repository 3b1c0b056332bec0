package smtp

import "io"

// dotWriter writes a message as SMTP DATA in one pass: bare LF line ends
// become CRLF, a line starting with '.' gets a second one (RFC 5321
// 4.5.2), and Close ends the data with CRLF.CRLF. It copies no more than the
// runs between the bytes it changes.
type dotWriter struct {
	w   io.Writer
	bol bool // at the beginning of a line
	cr  bool // the last byte written was '\r'
}

func newDotWriter(w io.Writer) *dotWriter { return &dotWriter{w: w, bol: true} }

var (
	crlf = []byte("\r\n")
	dot  = []byte(".")
)

func (d *dotWriter) Write(p []byte) (int, error) {
	start := 0
	for i, b := range p {
		switch {
		case d.bol && b == '.':
			if _, err := d.w.Write(p[start:i]); err != nil {
				return start, err
			}
			if _, err := d.w.Write(dot); err != nil {
				return i, err
			}
			start = i // the original dot follows
		case b == '\n' && !d.cr:
			if _, err := d.w.Write(p[start:i]); err != nil {
				return start, err
			}
			if _, err := d.w.Write(crlf); err != nil {
				return i, err
			}
			start = i + 1
		}
		d.cr = b == '\r'
		d.bol = b == '\n'
	}
	if _, err := d.w.Write(p[start:]); err != nil {
		return start, err
	}
	return len(p), nil
}

// Close ends the last line if needed and writes the terminator.
func (d *dotWriter) Close() error {
	end := ".\r\n"
	switch {
	case d.bol:
	case d.cr:
		end = "\n" + end
	default:
		end = "\r\n" + end
	}
	_, err := io.WriteString(d.w, end)
	return err
}
