package message_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
)

// A message read into the pool's chunks reads back byte for byte, whole
// and from any offset across chunk edges, with the digest and header of a
// message read the usual way; closed, its chunks go back and are lent to
// the next message, and the closed message's readers fail rather than
// read the next message's bytes.
func TestPooledMessageReadsBackAndReturnsItsChunks(t *testing.T) {
	pool := message.NewBufferPool()
	for _, size := range []int{message.ChunkSize, message.ChunkSize + 1, 5*message.ChunkSize - 7, 3 << 20} {
		raw := enginetest.Message(enginetest.Huge, size, size)
		plain, err := message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		pooled, err := message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 8 << 20, SizeHint: int64(len(raw)), Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(pooled.Reader())
		if !bytes.Equal(got, raw) || pooled.Digest != plain.Digest || pooled.MessageID() != plain.MessageID() {
			t.Fatalf("%d bytes: pooled message differs (%d bytes back)", len(raw), len(got))
		}
		made, _ := pool.Held()
		stale := pooled.Reader()
		pooled.Close()
		pooled.Close() // twice is harmless
		if _, free := pool.Held(); free != made {
			t.Fatalf("after Close the pool has %d of %d bytes free", free, made)
		}
		if _, err := io.ReadAll(stale); err == nil {
			t.Fatal("a reader of a closed message still read")
		}
		// The next message of the same size takes the same chunks.
		again, _ := message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 8 << 20, SizeHint: int64(len(raw)), Pool: pool})
		if m, _ := pool.Held(); m != made {
			t.Fatalf("the pool made %d bytes more for a message it had room for", m-made)
		}
		again.Close()
	}
}

// A pooled message over the in-memory bound spills to disk byte for byte
// and gives its chunks back at once; one over max_message_size is refused
// and gives them back too.
func TestPooledMessageSpillsAndGivesItsChunksBack(t *testing.T) {
	pool := message.NewBufferPool()
	dir := t.TempDir()
	raw := enginetest.Message(enginetest.Huge, 1, 3<<20)
	msg, err := message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 256 << 10, Dir: dir, SizeHint: int64(len(raw)), Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	if made, free := pool.Held(); made == 0 || free != made {
		t.Fatalf("spilled: pool made %d, %d free", made, free)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d spill files, want 1", len(ents))
	}
	got, _ := io.ReadAll(msg.Reader())
	if !bytes.Equal(got, raw) {
		t.Fatal("spilled pooled message changed")
	}
	msg.Close()
	_, err = message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 8 << 20, MaxSize: 1 << 20, SizeHint: int64(len(raw)), Pool: pool})
	if !errors.Is(err, message.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if made, free := pool.Held(); free != made {
		t.Fatalf("refused: pool made %d, %d free", made, free)
	}
}

// Trim lets go of the chunks not lent out and keeps the ones a message
// holds: that message still reads back byte for byte, and its chunks come
// back to the pool when it is closed; the pool lends again after.
func TestPoolTrimKeepsWhatIsLent(t *testing.T) {
	pool := message.NewBufferPool()
	raw := enginetest.Message(enginetest.Huge, 1, 1<<20)
	read := func() *message.Message {
		msg, err := message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 4 << 20, SizeHint: int64(len(raw)), Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	a, b := read(), read()
	a.Close()
	held, _ := pool.Held()
	pool.Trim()
	if made, free := pool.Held(); free != 0 || made != held/2 {
		t.Fatalf("after Trim: pool holds %d (%d free), want %d (none free)", made, free, held/2)
	}
	if got, _ := io.ReadAll(b.Reader()); !bytes.Equal(got, raw) {
		t.Fatal("a message held in chunks changed when the pool was trimmed")
	}
	b.Close()
	if made, free := pool.Held(); free != made || made != held/2 {
		t.Fatalf("closed: pool holds %d, %d free; want %d, all free", made, free, held/2)
	}
	c := read()
	defer c.Close()
	if got, _ := io.ReadAll(c.Reader()); !bytes.Equal(got, raw) {
		t.Fatal("a message read after Trim changed")
	}
}
