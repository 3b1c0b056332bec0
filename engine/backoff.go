package engine

import (
	"sync"
	"time"
)

// backoffs keeps, per output, how long to wait before trying it again after
// temporary failures: 5s, doubling up to 10 minutes, reset by a success.
// While an output backs off, messages routed to it stay at their source
// instead of hammering a server that is down.
type backoffs struct {
	mu    sync.Mutex
	state map[string]*backoff
}

type backoff struct {
	failures int
	until    time.Time
}

const (
	backoffBase = 5 * time.Second
	backoffMax  = 10 * time.Minute
)

func (b *backoffs) wait(name string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.state[name]; st != nil {
		return time.Until(st.until)
	}
	return 0
}

// fail records a temporary failure and returns the new wait, or 0 when the
// output was already backing off (so that only the first failure is
// logged). least is how long the server asked to be left alone (a
// throttling reply; 0 when it did not say): the wait is never shorter, and
// a later ask for longer lengthens it.
func (b *backoffs) fail(name string, least time.Duration) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == nil {
		b.state = map[string]*backoff{}
	}
	st := b.state[name]
	if st == nil {
		st = &backoff{}
		b.state[name] = st
	}
	if time.Now().Before(st.until) {
		if until := time.Now().Add(least); until.After(st.until) {
			st.until = until
			return least
		}
		return 0
	}
	d := backoffBase << min(st.failures, 10)
	if d > backoffMax {
		d = backoffMax
	}
	d = max(d, least)
	st.failures++
	st.until = time.Now().Add(d)
	return d
}

func (b *backoffs) ok(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.state, name)
}

// OutputWait is how long until the named output may be tried again after
// failures or a server's ask to wait; 0 when it may be now.
func (e *Engine) OutputWait(name string) time.Duration {
	return max(e.backoff.wait(name), 0)
}
