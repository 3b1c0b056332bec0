package smtp

import (
	"bufio"
	"strings"
	"testing"
)

// mailflow: discard stops at the end marker, and only there, wherever a
// line boundary falls in the reader's buffer.
func TestDataReaderDiscard(t *testing.T) {
	long := strings.Repeat("y", 10000)
	for _, c := range []struct{ data, rest string }{
		{"a\r\nb\r\n.\r\nNEXT", "NEXT"},
		{".\r\nNEXT", "NEXT"},
		{"x\n.\nstill data\r\n.\r\nNEXT", "NEXT"},
		{"x\r.\r\n\r\n.\r\nNEXT", "NEXT"},
		{long + "\r\n.\r\nNEXT", "NEXT"},
		{long + "\r\n" + long + ".\r\n\r\n.\r\nNEXT", "NEXT"},
		{"..\r\n.x\r\n.\r\nNEXT", "NEXT"},
	} {
		for _, start := range []int{0, 1, 3} {
			if start > len(c.data)-len(c.rest) {
				continue
			}
			br := bufio.NewReaderSize(strings.NewReader(c.data), 16)
			r := &dataReader{r: br}
			buf := make([]byte, start)
			if start > 0 {
				r.Read(buf)
			}
			r.discard()
			rest, _ := br.ReadString(0)
			if rest != c.rest {
				t.Errorf("%.30q after %d bytes read: left %.30q, want %q", c.data, start, rest, c.rest)
			}
		}
	}
}
