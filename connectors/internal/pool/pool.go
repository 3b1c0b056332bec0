// Package pool keeps an output's sessions with its server: up to a number
// open at once, the idle ones reused, one that was idle too long ended
// rather than trusted. The SMTP and IMAP outputs share it.
package pool

import (
	"context"
	"sync"
	"time"
)

// Pool holds sessions of type C. A slot is taken for each open session,
// idle or busy, so that no more than max are open; the idle ones wait in a
// channel of max places, so that putting one back never blocks.
type Pool[C any] struct {
	dial    func(context.Context) (C, error)
	quit    func(C) // ends a session politely (QUIT, LOGOUT)
	drop    func(C) // closes a session without a word (it is broken)
	idleFor time.Duration

	idle  chan waiting[C]
	slots chan struct{}

	mu     sync.Mutex
	closed bool
}

// waiting is an idle session and since when it waits.
type waiting[C any] struct {
	c     C
	since time.Time
}

// New makes a pool of at most max sessions, opened by dial. A session idle
// for idleFor or longer is ended with quit instead of being reused (0: no
// limit); a broken one is closed with drop.
func New[C any](max int, idleFor time.Duration, dial func(context.Context) (C, error), quit, drop func(C)) *Pool[C] {
	return &Pool[C]{dial: dial, quit: quit, drop: drop, idleFor: idleFor,
		idle: make(chan waiting[C], max), slots: make(chan struct{}, max)}
}

// Get returns a session: an idle one if there is one, else a new one if
// fewer than max are open, else whichever of the two comes first. It fails
// when dialing fails or ctx ends.
func (p *Pool[C]) Get(ctx context.Context) (C, error) {
	for {
		var s waiting[C]
		select {
		case s = <-p.idle:
		default:
			select {
			case s = <-p.idle:
			case p.slots <- struct{}{}:
				c, err := p.dial(ctx)
				if err != nil {
					<-p.slots
				}
				return c, err
			case <-ctx.Done():
				var none C
				return none, ctx.Err()
			}
		}
		if p.idleFor <= 0 || time.Since(s.since) < p.idleFor {
			return s.c, nil
		}
		p.quit(s.c) // idle too long; the server may have dropped it
		<-p.slots
	}
}

// Put gives back a session that Get returned: to wait for the next Get, or,
// when it is broken or the pool closed, to be closed.
func (p *Pool[C]) Put(c C, broken bool) {
	p.mu.Lock()
	if !broken && !p.closed {
		// Under the lock, so that Close cannot miss it; it never blocks:
		// one place per slot.
		p.idle <- waiting[C]{c: c, since: time.Now()}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.drop(c)
	<-p.slots
}

// Close ends every idle session; a busy one is closed when it is put back.
func (p *Pool[C]) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case s := <-p.idle:
			p.quit(s.c)
			<-p.slots
		default:
			return
		}
	}
}
