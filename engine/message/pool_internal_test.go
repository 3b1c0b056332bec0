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

// shortWriter takes at most n bytes a write.
type shortWriter struct {
	bytes.Buffer
	n int
}

func (w *shortWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		w.Buffer.Write(p[:w.n])
		return w.n, io.ErrShortWrite
	}
	return w.Buffer.Write(p)
}

// The reader of chunked data writes itself a chunk at a time (io.Copy
// takes its WriteTo): the rest of the bytes from where reading stopped, an
// error from the writer, nothing more to read after it; after Release it
// fails.
func TestChunkReaderWriteTo(t *testing.T) {
	raw := make([]byte, 3*ChunkSize+100)
	for i := range raw {
		raw[i] = byte(i * 13)
	}
	d, err := readChunks(bytes.NewReader(raw), 1<<30, NewBufferPool())
	if err != nil {
		t.Fatal(err)
	}
	for _, read := range []int{0, 1, ChunkSize - 1, ChunkSize, 2*ChunkSize + 7, len(raw)} {
		r := d.Reader()
		head := make([]byte, read)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		n, err := io.Copy(&out, r)
		if err != nil || n != int64(len(raw)-read) || !bytes.Equal(append(head, out.Bytes()...), raw) {
			t.Fatalf("after reading %d: copied %d, %v; bytes equal: %v", read, n, err, bytes.Equal(append(head, out.Bytes()...), raw))
		}
		if m, err := r.Read(make([]byte, 1)); m != 0 || err != io.EOF {
			t.Fatalf("after reading %d and copying: Read = %d, %v", read, m, err)
		}
	}
	w := &shortWriter{n: 1000}
	if n, err := d.Reader().(io.WriterTo).WriteTo(w); n != 1000 || err != io.ErrShortWrite || !bytes.Equal(w.Bytes(), raw[:1000]) {
		t.Fatalf("to a writer that stops at 1000 bytes: %d, %v", n, err)
	}
	r := d.Reader()
	d.Release()
	if _, err := io.Copy(io.Discard, r); err != errReleased {
		t.Fatalf("after Release: %v", err)
	}
}
