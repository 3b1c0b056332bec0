package smtpd

import "io"

// crlfWriter writes what it is given with every line end made CRLF: a bare
// LF or a bare CR becomes CRLF, as the smtp output sends them. The
// end of DATA was found before (go-smtp's reader ends it only at
// CRLF.CRLF, so a "." after a bare LF cannot end a message early: SMTP
// smuggling); this only makes the stored message consistent, so that what
// the outputs send is what was spooled.
type crlfWriter struct {
	w      io.Writer
	cr     bool   // the last byte written was a CR whose LF may follow
	buf    []byte // reused
	nwrote int64  // bytes written to w
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	out := c.buf[:0]
	for _, b := range p {
		switch {
		case b == '\n' && c.cr:
			out = append(out, '\n')
			c.cr = false
		case b == '\n':
			out = append(out, '\r', '\n')
		case c.cr:
			// The CR before this byte stood alone.
			out = append(out, '\n', b)
			c.cr = b == '\r'
		default:
			out = append(out, b)
			c.cr = b == '\r'
		}
	}
	c.buf = out
	n, err := c.w.Write(out)
	c.nwrote += int64(n)
	if err != nil {
		return 0, &writeError{err}
	}
	return len(p), nil
}

// Close ends a message whose last byte was a lone CR.
func (c *crlfWriter) Close() error {
	if !c.cr {
		return nil
	}
	c.cr = false
	n, err := c.w.Write([]byte{'\n'})
	c.nwrote += int64(n)
	return err
}
