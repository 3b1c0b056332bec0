package message

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// Line ends are counted the same however the bytes arrive (a CR at the end
// of one read, its LF at the start of the next), and has8Bit sees a high
// byte wherever it is.
func TestLineEndsCountedAcrossSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("\r\na")
	for round := range 500 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		wantLF, wantCRLF := int64(bytes.Count(b, []byte("\n"))), int64(bytes.Count(b, []byte("\r\n")))
		for _, r := range []*bytes.Reader{bytes.NewReader(b)} {
			crlf, bare := countLineEnds(iotest.HalfReader(r))
			if crlf != wantCRLF || crlf+bare != wantLF {
				t.Fatalf("round %d %q: crlf %d bare %d, want %d %d", round, b, crlf, bare, wantCRLF, wantLF-wantCRLF)
			}
		}
		if crlf, bare := New(b, Source{}).LineEnds(); crlf != wantCRLF || crlf+bare != wantLF {
			t.Fatalf("round %d: New: crlf %d bare %d", round, crlf, bare)
		}
		if len(b) > 0 {
			at := rng.IntN(len(b))
			high := bytes.Clone(b)
			high[at] = 0x80 | byte(rng.IntN(128))
			if has8Bit(b) || !has8Bit(high) {
				t.Fatalf("round %d: has8Bit wrong (high byte at %d of %d)", round, at, len(b))
			}
		}
	}
}
