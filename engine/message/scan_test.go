package message

import (
	"bufio"
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

// readLine splits lines as the definition says (CRLF, LF, or a CR alone
// end one) whatever the buffer size and wherever a line end falls in it.
func TestReadLineMatchesTheDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("\r\nab")
	for round := range 2000 {
		b := make([]byte, rng.IntN(120))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		var want [][]byte
		for rest := b; len(rest) > 0; {
			i := bytes.IndexAny(rest, "\r\n")
			switch {
			case i < 0:
				i = len(rest)
			case rest[i] == '\r' && i+1 < len(rest) && rest[i+1] == '\n':
				i += 2
			default:
				i++
			}
			want = append(want, rest[:i])
			rest = rest[i:]
		}
		br := bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(b)), 16)
		for i := 0; ; i++ {
			line, err := readLine(br)
			if len(line) == 0 && err != nil {
				if i != len(want) {
					t.Fatalf("round %d %q: %d lines, want %d", round, b, i, len(want))
				}
				break
			}
			if i >= len(want) || !bytes.Equal(line, want[i]) {
				t.Fatalf("round %d %q: line %d is %q, want %q", round, b, i, line, want)
			}
		}
	}
}
