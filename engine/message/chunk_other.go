//go:build !unix

package message

func newChunk() []byte { return make([]byte, ChunkSize) }

func freeChunk([]byte) {}
