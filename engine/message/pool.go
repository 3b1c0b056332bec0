package message

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// ChunkSize is the size of the pieces a BufferPool lends.
const ChunkSize = 64 << 10

// BufferPool lends fixed-size chunks to hold messages in memory and takes
// them back when a message is closed. A megabyte message read into a slice
// of its own leaves a megabyte of garbage behind it, and the heap, which
// the collector lets grow to twice what is live, grows with every one;
// read into chunks that go round (and live outside the heap, see
// newChunk), the memory of the messages in flight is taken once and used
// again. The engine's memory_budget bounds how much is in flight, so the
// pool, which keeps every chunk it made until Trim, never holds more than
// that budget's peak.
type BufferPool struct {
	mu   sync.Mutex
	free [][]byte
	made int
}

// NewBufferPool returns an empty pool.
func NewBufferPool() *BufferPool { return &BufferPool{} }

func (p *BufferPool) get() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free = p.free[:n-1]
		return c
	}
	p.made++
	return newChunk()
}

func (p *BufferPool) put(c []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, c[:ChunkSize])
}

// Trim gives the memory of the chunks not lent out back to the system:
// for when no message is in flight (a poll is over), so that the most a
// poll ever held is not kept until the next. What is lent out comes back
// to the pool as before.
func (p *BufferPool) Trim() {
	p.mu.Lock()
	free := p.free
	p.free, p.made = nil, p.made-len(free)
	p.mu.Unlock()
	for _, c := range free {
		freeChunk(c)
	}
}

// Held reports the bytes of chunks the pool holds (made and not trimmed),
// and of those unused.
func (p *BufferPool) Held() (made, free int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(p.made) * ChunkSize, int64(len(p.free)) * ChunkSize
}

// errReleased is what a reader of a closed message gets, rather than the
// bytes of whatever message has its chunks now.
var errReleased = errors.New("message: read after Close")

// chunkData is a message held in chunks lent by a BufferPool.
type chunkData struct {
	pool     *BufferPool
	chunks   [][]byte // all ChunkSize long but the last
	size     int64
	released atomic.Bool
}

// readChunks reads r into chunks until EOF or until limit bytes were read.
func readChunks(r io.Reader, limit int64, pool *BufferPool) (*chunkData, error) {
	d := &chunkData{pool: pool}
	for d.size < limit {
		c := pool.get()
		n, err := io.ReadFull(r, c[:min(ChunkSize, limit-d.size)])
		if n > 0 {
			d.chunks = append(d.chunks, c[:n])
			d.size += int64(n)
		} else {
			pool.put(c)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return d, nil
		}
		if err != nil {
			d.Release()
			return nil, err
		}
	}
	return d, nil
}

func (d *chunkData) Size() int64           { return d.size }
func (d *chunkData) Reader() io.Reader     { return &chunkReader{io.NewSectionReader(d, 0, d.size), d} }
func (d *chunkData) ReaderAt() io.ReaderAt { return d }

// chunkReader reads a message held in chunks. Its WriteTo hands each chunk
// to the writer as it is: an output copying the message to a connection
// (io.Copy, an IMAP literal) needs no buffer of its own for it, which would
// be one more copy of the bytes and, per message in flight, more heap.
type chunkReader struct {
	*io.SectionReader
	d *chunkData
}

// WriteTo writes what is left to read, and leaves nothing to read.
func (r *chunkReader) WriteTo(w io.Writer) (int64, error) {
	off, _ := r.Seek(0, io.SeekCurrent)
	var n int64
	for off < r.d.size {
		if r.d.released.Load() {
			return n, errReleased
		}
		c := r.d.chunks[off/ChunkSize][off%ChunkSize:]
		m, err := w.Write(c)
		n += int64(m)
		off += int64(m)
		r.Seek(off, io.SeekStart)
		if err != nil {
			return n, err
		}
		if m < len(c) {
			return n, io.ErrShortWrite
		}
	}
	return n, nil
}

// WriteTo writes every byte to w, chunk by chunk (used when it spills).
func (d *chunkData) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, c := range d.chunks {
		m, err := w.Write(c)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (d *chunkData) ReadAt(p []byte, off int64) (int, error) {
	if d.released.Load() {
		return 0, errReleased
	}
	if off < 0 {
		return 0, errors.New("message: negative offset")
	}
	n := 0
	for n < len(p) && off < d.size {
		c := d.chunks[off/ChunkSize][off%ChunkSize:]
		m := copy(p[n:], c)
		n += m
		off += int64(m)
	}
	if d.released.Load() {
		return 0, errReleased // a chunk may have gone to another message meanwhile
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *chunkData) Release() error {
	if d.released.Swap(true) {
		return nil
	}
	for _, c := range d.chunks {
		d.pool.put(c)
	}
	return nil
}
