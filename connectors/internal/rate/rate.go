// Package rate spaces what the connectors send: messages evenly to at
// most a count per second, minute or hour ("10/s", "600/m", "1000/h": the
// smtp and imap outputs' rate, for providers that count an account's
// messages), bytes to a rate (Spacer), and the waits between (Sleep).
package rate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Spacer books turns one after the other: each takes a share of time
// after the turns booked before it.
type Spacer struct {
	mu   sync.Mutex
	next time.Time // when the turns booked so far are over
}

// Book books a turn of cost and returns how long until it starts: at once
// when the turns before it are over.
func (s *Spacer) Book(cost time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.next.Before(now) {
		s.next = now
	}
	start := s.next
	s.next = s.next.Add(cost)
	return start.Sub(now)
}

// Sleep waits d, or returns ctx's error when ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
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

// Limiter spaces messages evenly: one every interval, the first at once.
type Limiter struct {
	interval time.Duration
	turns    Spacer
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
	return Sleep(ctx, l.turns.Book(l.interval))
}
