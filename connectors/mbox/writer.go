package mbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// Writer writes messages as an mbox, quoting their "From " lines for its
// variant (Mboxrd or Mboxo), through a bounded buffer:
//
//	w := mbox.NewWriter(f, mbox.Mboxrd)
//	err := w.WriteMessage("From joe@example.org Sat Nov 21 10:00:00 2026", msg)
//	err = w.Flush()
//
// Each message is written as its From_ line, its bytes as they are but for
// the quoting, a line end if its last line had none, and a blank line.
// The From_ line and the blank line end in LF whatever the message's own
// line ends (CRLF messages stay CRLF), as Unix mail spools, mutt and
// Python's mailbox write and read them. A Reader gives every message back
// byte for byte, but for a last line without a line end, which comes back
// with one (mboxo and mboxrd have no way to say it had none), and, with
// Mboxo, a body line that was ">From " to begin with, which comes back as
// "From " (mboxo's own ambiguity).
type Writer struct {
	bw    *bufio.Writer
	br    *bufio.Reader
	quote quoting
}

// NewWriter returns a Writer of variant v to w: Mboxrd, or Mboxo; Auto
// is Mboxrd. Mboxcl2 is not written (it would mean adding a
// Content-Length field to every message).
func NewWriter(w io.Writer, v Variant) (*Writer, error) {
	q := quoteAll
	switch v {
	case Auto, Mboxrd:
	case Mboxo:
		q = quoteOne
	default:
		return nil, fmt.Errorf("mbox: %s cannot be written; write mboxrd or mboxo", v)
	}
	return &Writer{bw: bufio.NewWriterSize(w, bufSize), quote: q}, nil
}

// Reset makes the Writer write to w, keeping its buffers.
func (w *Writer) Reset(dst io.Writer) { w.bw.Reset(dst) }

// WriteMessage writes one message: from is its From_ line (without line
// end; "From " is added if it does not start with it), r its bytes. It
// returns how many bytes of r it read.
func (w *Writer) WriteMessage(from string, r io.Reader) (int64, error) {
	if len(from) < 5 || from[:5] != "From " {
		w.bw.WriteString("From ")
	}
	w.bw.WriteString(from)
	w.bw.WriteByte('\n')
	if w.br == nil {
		w.br = bufio.NewReaderSize(r, bufSize)
	} else {
		w.br.Reset(r)
	}
	defer w.br.Reset(nil)
	var n int64
	atStart := true
	last := byte('\n') // nothing written reads as ended
	for {
		line, err := w.br.ReadSlice('\n')
		if len(line) > 0 {
			if atStart && w.needsQuote(line) {
				w.bw.WriteByte('>')
			}
			w.bw.Write(line)
			n += int64(len(line))
			last = line[len(line)-1]
			atStart = last == '\n'
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if last != '\n' {
		w.bw.WriteByte('\n')
	}
	if err := w.bw.WriteByte('\n'); err != nil {
		return n, err
	}
	return n, nil
}

// needsQuote reports whether a line must be written with one more '>'.
func (w *Writer) needsQuote(line []byte) bool {
	i := 0
	if w.quote == quoteAll {
		for i < len(line) && line[i] == '>' {
			i++
		}
	}
	return bytes.HasPrefix(line[i:], fromPrefix)
}

// Flush writes what is buffered to the underlying writer.
func (w *Writer) Flush() error { return w.bw.Flush() }
