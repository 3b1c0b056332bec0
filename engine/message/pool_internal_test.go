package message

import (
	"bytes"
	"io"
	"testing"
)

// ReadAt of chunked data returns the right bytes from any offset, across
// chunk edges, with io.EOF at the end; after Release it fails.
func TestChunkDataReadAt(t *testing.T) {
	raw := make([]byte, 3*ChunkSize+100)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	d, err := readChunks(bytes.NewReader(raw), 1<<30, NewBufferPool())
	if err != nil || d.Size() != int64(len(raw)) {
		t.Fatalf("read %d bytes, %v", d.Size(), err)
	}
	for _, off := range []int64{0, 1, ChunkSize - 3, ChunkSize, 2*ChunkSize - 1, int64(len(raw)) - 10} {
		for _, n := range []int{1, 10, ChunkSize + 5} {
			p := make([]byte, n)
			got, err := d.ReadAt(p, off)
			want := raw[off:min(off+int64(n), int64(len(raw)))]
			if !bytes.Equal(p[:got], want) || (got < n) != (err == io.EOF) {
				t.Fatalf("ReadAt(%d bytes, %d) = %d, %v", n, off, got, err)
			}
		}
	}
	d.Release()
	if _, err := d.ReadAt(make([]byte, 4), 0); err != errReleased {
		t.Fatalf("after Release: %v", err)
	}
}
