package engine

import "sync"

// memBudget bounds the bytes of messages held in memory at once, over
// every input: a message whose announced size fits in what is left (and
// under spill_over) is read into memory, any other is spooled to disk.
// max_in_flight alone bounds how many messages are held, not how large
// they are: sixteen 4 MB messages would hold 64 MB.
type memBudget struct {
	mu   sync.Mutex
	free int64
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

// give returns n bytes taken before.
func (b *memBudget) give(n int64) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
}
