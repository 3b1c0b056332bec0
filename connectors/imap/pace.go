package imap

import (
	"context"
	"sync"
	"time"
)

// pace spaces uploads so that they average at most perSecond bytes a
// second (Gmail takes about 500 MB a day over IMAP): each message books
// the time its bytes take at that rate, after the bookings before it.
type pace struct {
	perSecond int64

	mu   sync.Mutex
	next time.Time // when the next upload may start
}

// wait returns when n more bytes may be sent, or with ctx's error.
func (p *pace) wait(ctx context.Context, n int64) error {
	if p == nil || p.perSecond <= 0 {
		return nil
	}
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	start := p.next
	p.next = p.next.Add(time.Duration(float64(n) / float64(p.perSecond) * float64(time.Second)))
	p.mu.Unlock()
	d := time.Until(start)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
