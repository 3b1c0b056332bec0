package imap

import (
	"bytes"
	"testing"
	"testing/iotest"
)

// Line ends aside, the same bytes give the same digest, however they are
// read; other bytes another.
func TestCRLFDigest(t *testing.T) {
	crlf := []byte("a: b\r\n\r\nline\r\n\r\nend\r\n")
	lf := []byte("a: b\n\nline\n\nend\n")
	want, _ := crlfDigest(bytes.NewReader(crlf))
	for _, r := range []*bytes.Reader{bytes.NewReader(lf), bytes.NewReader(crlf)} {
		if got, err := crlfDigest(iotest.OneByteReader(r)); err != nil || got != want {
			t.Fatalf("%x %v, want %x", got, err, want)
		}
	}
	if got, _ := crlfDigest(bytes.NewReader([]byte("a: b\r\n\r\nline\r\n"))); got == want {
		t.Fatal("other bytes, same digest")
	}
}
