//go:build unix

package message

import "syscall"

// newChunk maps a chunk outside the Go heap: memory the collector neither
// scans nor counts, so the messages in flight do not raise the heap's
// target (the collector lets a heap grow to twice what is live; chunks on
// it would double their own cost). The pool keeps every one it made (no
// more than the memory budget has in flight at once) until Trim.
func newChunk() []byte {
	b, err := syscall.Mmap(-1, 0, ChunkSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, ChunkSize)
	}
	return b
}

// freeChunk unmaps a chunk newChunk made; one it made on the heap is left
// to the collector (Munmap does not know it).
func freeChunk(c []byte) { _ = syscall.Munmap(c[:ChunkSize]) }
