package engine

import (
	"context"
	"sync"
)

// memBudget bounds the bytes of messages held in memory at once, over
// every input (memory_budget): max_in_flight alone bounds how many
// messages are held, not how large they are, and sixteen 4 MB messages
// would hold 64 MB. A message of known size up to spill_over waits for
// room (its source holds it meanwhile; the deliveries under way free
// room as they end); a larger one, or one of unknown size that does not
// fit at once, is spooled to disk.
type memBudget struct {
	mu    sync.Mutex
	free  int64
	freed chan struct{} // closed (and replaced) when bytes are given back
}

func newMemBudget(n int64) *memBudget { return &memBudget{free: n} }

// take reserves n bytes if they are free.
func (b *memBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.free {
		return false
	}
	b.free -= n
	return true
}

// wait reserves n bytes, waiting until they are free; false if ctx ended
// first.
func (b *memBudget) wait(ctx context.Context, n int64) bool {
	for {
		b.mu.Lock()
		if n <= b.free {
			b.free -= n
			b.mu.Unlock()
			return true
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return false
		}
	}
}

// give returns n bytes taken before.
func (b *memBudget) give(n int64) {
	b.mu.Lock()
	b.free += n
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
	b.mu.Unlock()
}
