// Package textline reads the lines of a line-based protocol reply (POP3,
// SMTP) as a stream: however the bytes arrive, one at a time or many lines
// at once, and never more than a bound.
package textline

import (
	"bufio"
	"io"
)

// Read reads one LF-terminated line of at most max bytes (not counting its
// CRLF) and returns it without the line end. A longer line returns tooLong,
// the caller's own error: the connection is then out of step. A stream that
// ends inside a line returns io.ErrUnexpectedEOF.
func Read(r *bufio.Reader, max int, tooLong error) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max+2 {
			return "", tooLong
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// Shorten cuts a line to 80 bytes, with "…" where it was cut, for an
// error message: a server's reply may be long and is not ours to print
// whole.
func Shorten(line string) string {
	if len(line) > 80 {
		return line[:80] + "…"
	}
	return line
}
