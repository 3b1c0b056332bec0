package imap

import (
	"context"
	"sync"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/rate"
)

// pace spaces uploads so that they average at most perSecond bytes a
// second (Gmail takes about 500 MB a day over IMAP): each message books
// the time its bytes take at that rate, after the bookings before it.
type pace struct {
	perSecond int64
	turns     rate.Spacer
}

// wait returns when n more bytes may be sent, or with ctx's error.
func (p *pace) wait(ctx context.Context, n int64) error {
	if p == nil || p.perSecond <= 0 {
		return nil
	}
	return rate.Sleep(ctx, p.turns.Book(time.Duration(float64(n)/float64(p.perSecond)*float64(time.Second))))
}

// dayBudget bounds the bytes uploaded in a day (max_bytes_per_day; Gmail
// takes about 2,500 MB a day over IMAP and then refuses more for hours): a
// bucket that holds a day's bytes, starts full, and fills again at a
// day's bytes over 24 hours. A message that finds too little in it is not
// sent: the output is throttled until there is enough, the message waits
// at its source, and the engine tries no other message meanwhile. It
// counts what this process sent.
type dayBudget struct {
	perDay float64

	mu   sync.Mutex
	have float64   // bytes that may go now
	at   time.Time // when have was reckoned
}

func newDayBudget(perDay int64) *dayBudget {
	if perDay <= 0 {
		return nil
	}
	return &dayBudget{perDay: float64(perDay), have: float64(perDay), at: time.Now()}
}

// fill brings have up to now; b.mu is held.
func (b *dayBudget) fill() {
	now := time.Now()
	b.have = min(b.perDay, b.have+now.Sub(b.at).Seconds()*b.perDay/86400)
	b.at = now
}

// take takes n bytes from the budget, or reports how long until there
// are enough. A message larger than a whole day's budget goes when the
// bucket is full, or it never would.
func (b *dayBudget) take(n int64) (time.Duration, bool) {
	if b == nil {
		return 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fill()
	need := min(float64(n), b.perDay)
	if b.have >= need {
		b.have -= float64(n)
		return 0, true
	}
	return time.Duration((need - b.have) / b.perDay * 86400 * float64(time.Second)), false
}

// giveBack returns n bytes taken for a message that was not stored.
func (b *dayBudget) giveBack(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fill()
	b.have = min(b.perDay, b.have+float64(n))
}
