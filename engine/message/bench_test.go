package message

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkRead reads messages of 4 KB, 64 KB and 1 MB into memory: without
// the size the source announced, with it, and with it into pooled chunks
// (as the engine reads messages of 64 KiB or more).
func BenchmarkRead(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		body := bytes.Repeat([]byte("a line of text in the body of a message, as mail has it\r\n"), size/57+1)[:size]
		msg := append([]byte("From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\nMessage-ID: <b@x>\r\n\r\n"), body...)
		pool := NewBufferPool()
		for _, mode := range []string{"none", "hint", "pool"} {
			b.Run(fmt.Sprintf("%dKB/%s", size>>10, mode), func(b *testing.B) {
				opts := DefaultSpool
				if mode != "none" {
					opts.SizeHint = int64(len(msg))
				}
				if mode == "pool" {
					opts.Pool = pool
				}
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for range b.N {
					m, err := Read(bytes.NewReader(msg), Source{}, opts)
					if err != nil {
						b.Fatal(err)
					}
					m.Close()
				}
			})
		}
	}
}
