package smtpd

import (
	"fmt"
	"sync"
	"time"
)

// roomFor says why the spool cannot take a message of size bytes now (0:
// the client did not say), or "" when it can. Mail is refused for now
// (452: the client keeps it and tries again) rather than taken when it
// may not fit: the spool holds max_spool_size bytes waiting for the
// pipeline (outputs down, say), or its disk has less free than one and a
// half times the largest message, as Postfix's smtpd asks of its queue.
func (in *Input) roomFor(sp *spool, size int64) string {
	if in.maxSpool > 0 && sp.size()+size > in.maxSpool {
		return fmt.Sprintf("the spool holds max_spool_size (%d bytes) of mail waiting for the pipeline", in.maxSpool)
	}
	if free := in.free.get(in.spoolDir); free >= 0 && free < in.maxSize*3/2 {
		return fmt.Sprintf("the spool's disk has %d bytes free, less than 1.5 times max_message_size", free)
	}
	return ""
}

// freeCache asks the file system for its free space at most every 100
// ms: one statfs per MAIL was a measurable share of a small message.
type freeCache struct {
	mu   sync.Mutex
	at   time.Time
	free int64
}

func (c *freeCache) get(dir string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > 100*time.Millisecond {
		c.free, c.at = freeSpace(dir), time.Now()
	}
	return c.free
}
