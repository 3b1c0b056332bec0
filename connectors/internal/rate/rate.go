// Package rate spaces an output's messages evenly to at most a count per
// second, minute or hour ("10/s", "600/m", "1000/h"): the smtp output's
// rate and the imap output's (a provider that counts messages per account,
// as many hosted servers do, more than bytes).
package rate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limiter spaces messages evenly: one every interval, the first at once.
type Limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

// Parse reads "10/s", "600/m" or "1000/h".
func Parse(s string) (*Limiter, error) {
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || count <= 0 {
		return nil, fmt.Errorf("rate %q: want a count per unit like \"10/s\" or \"600/m\"", s)
	}
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[strings.TrimSpace(per)]
	if unit == 0 {
		return nil, fmt.Errorf("rate %q: the unit must be s, m or h", s)
	}
	return &Limiter{interval: unit / time.Duration(count)}, nil
}

// Wait returns when the next message may go, or with ctx's error when ctx
// ends first (the turn it took is then not given back: the spacing stays
// even for those after it).
func (l *Limiter) Wait(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
