package fsync

import "sync"

// Group syncs one directory for every caller that changed it, sharing each
// sync among the callers that arrived while the one before ran: a caller
// waits for a sync that started after its change, so its change is
// durable when Sync returns, and N writers at once cost about one sync
// between them instead of N (group commit).
type Group struct {
	Dir string

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // syncs begun
	done    uint64 // syncs finished
	running bool
	err     error // of the last finished sync
}

// Sync returns once a sync of g.Dir that began after the call has ended,
// with its error.
func (g *Group) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	mine := g.started + 1 // the first sync to begin from now on
	for g.done < mine {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		g.mu.Unlock()
		err := Dir(g.Dir)
		g.mu.Lock()
		g.running, g.done, g.err = false, n, err
		g.cond.Broadcast()
	}
	return g.err
}
