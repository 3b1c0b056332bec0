package gmail

import (
	"context"
	"sync"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/rate"
)

// quota paces requests to a budget of quota units a second, the way Gmail
// counts them: a moving average that allows short bursts. It is a token
// bucket kept as one time (GCRA): each request books the time its units
// take at the rate, after the bookings before it, and may start once it
// is no more than a second ahead of now. So a second's worth goes at once,
// then the rate holds.
type quota struct {
	perUnit time.Duration // how long one unit takes at the rate
	burst   time.Duration

	mu  sync.Mutex
	tat time.Time // when the bookings so far are paid off
}

func newQuota(unitsPerSecond int) *quota {
	return &quota{perUnit: time.Second / time.Duration(unitsPerSecond), burst: time.Second}
}

// wait returns once units may be spent, or with ctx's error (the booking
// stands: a request given up for a shutdown costs its turn).
func (q *quota) wait(ctx context.Context, units int) error {
	if units <= 0 {
		return nil // the rest of a request already paid for
	}
	q.mu.Lock()
	now := time.Now()
	if q.tat.Before(now) {
		q.tat = now
	}
	q.tat = q.tat.Add(time.Duration(units) * q.perUnit)
	d := q.tat.Sub(now) - q.burst
	q.mu.Unlock()
	return rate.Sleep(ctx, d)
}
