package message

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// Line ends are counted the same however the bytes are split between
// writes (a CR at the end of one read, its LF at the start of the next).
func TestLineEndsCountedAcrossSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("\r\na")
	for round := range 500 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		s := &scanHash{Hash: sha256.New()}
		for rest := b; len(rest) > 0; {
			n := 1 + rng.IntN(len(rest))
			s.Write(rest[:n])
			rest = rest[n:]
		}
		wantLF, wantCRLF := int64(bytes.Count(b, []byte("\n"))), int64(bytes.Count(b, []byte("\r\n")))
		if s.lf != wantLF || s.crlf != wantCRLF {
			t.Fatalf("round %d %q: lf %d crlf %d, want %d %d", round, b, s.lf, s.crlf, wantLF, wantCRLF)
		}
	}
}
