// Package pool keeps an output's sessions with its server: up to a number
// open at once, the idle ones reused, one that was idle too long ended
// rather than trusted. The SMTP and IMAP outputs share it.
package pool

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Pool holds sessions of type C. A slot is taken for each open session,
// idle or busy, so that no more than max are open; the idle ones wait in a
// channel of max places, so that putting one back never blocks.
type Pool[C any] struct {
	dial     func(context.Context) (C, error)
	quit     func(C) // ends a session politely (QUIT, LOGOUT)
	drop     func(C) // closes a session without a word (it is broken)
	idleFor  time.Duration
	holdDown time.Duration    // see HoldDown; 0: off
	now      func() time.Time // the clock of the hold-down, for tests

	idle  chan waiting[C]
	slots chan struct{}

	mu      sync.Mutex
	closed  bool
	open    int           // sessions dialled and not closed yet, idle or busy
	dialing int           // dials under way
	down    *DownError    // the last failed dial, while the pool holds down after it
	changed chan struct{} // closed (and replaced) when a dial ends or a session closes
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
	return &Pool[C]{dial: dial, quit: quit, drop: drop, idleFor: idleFor, now: time.Now,
		idle: make(chan waiting[C], max), slots: make(chan struct{}, max), changed: make(chan struct{})}
}

// HoldDown makes the pool remember a failed dial for d, so that the
// messages already waiting for a session do not each dial a server that
// just refused one (a connection refused, TLS missing, a 421 greeting, a
// login refused): until d has passed, Get dials nothing. It takes an idle
// session, waits for a busy one to be put back, or, when none is open,
// fails at once with a *DownError wrapping the dial's error. And while no
// session is open, one dial is made at a time, so that the first failure
// is the only one. d should be shorter than the caller's own back-off
// after a failure, so that its next try dials. Call it before the first
// Get; 0 (the default) is off.
func (p *Pool[C]) HoldDown(d time.Duration) { p.holdDown = d }

// DownError is what Get returns, without dialling, while the pool holds
// down after a failed dial: Err is that dial's error, whose class
// (temporary, permanent, a wait the server asked for) it keeps.
type DownError struct {
	Err   error
	For   time.Duration // the hold-down
	until time.Time
}

func (e *DownError) Error() string {
	return fmt.Sprintf("%v (the last connection failed; not connecting again for %s after it)", e.Err, e.For)
}

func (e *DownError) Unwrap() error { return e.Err }

// Get returns a session: an idle one if there is one, else a new one if
// fewer than max are open, else whichever of the two comes first. It fails
// when dialing fails or ctx ends, and, with HoldDown, as it says.
func (p *Pool[C]) Get(ctx context.Context) (C, error) {
	var none C
	for {
		var s waiting[C]
		select {
		case s = <-p.idle:
		default:
			p.mu.Lock()
			down := p.heldDown()
			if down != nil && p.open == 0 && p.dialing == 0 {
				p.mu.Unlock()
				return none, down // nothing open that could be put back
			}
			var slot chan<- struct{}
			if p.mayDial() {
				slot = p.slots
			}
			changed := p.changed
			p.mu.Unlock()
			select {
			case s = <-p.idle:
			case slot <- struct{}{}:
				c, ok, err := p.dialIn(ctx)
				if !ok {
					continue // another dial began meanwhile
				}
				return c, err
			case <-changed:
				continue
			case <-ctx.Done():
				return none, ctx.Err()
			}
		}
		if p.idleFor <= 0 || time.Since(s.since) < p.idleFor {
			return s.c, nil
		}
		p.quit(s.c) // idle too long; the server may have dropped it
		p.closedOne()
	}
}

// heldDown returns the failure the pool holds down after, or nil. p.mu is
// held.
func (p *Pool[C]) heldDown() *DownError {
	if p.down != nil && p.now().Before(p.down.until) {
		return p.down
	}
	p.down = nil
	return nil
}

// mayDial reports whether a Get may dial now: not while the pool holds
// down, and while no session is open, only when no other dial is under
// way. p.mu is held.
func (p *Pool[C]) mayDial() bool {
	if p.holdDown <= 0 {
		return true
	}
	return p.heldDown() == nil && (p.open > 0 || p.dialing == 0)
}

// dialIn dials with a slot taken. ok is false, and the slot given back,
// when the pool's state changed since the Get decided to dial.
func (p *Pool[C]) dialIn(ctx context.Context) (c C, ok bool, err error) {
	p.mu.Lock()
	if !p.mayDial() {
		p.mu.Unlock()
		<-p.slots
		return c, false, nil
	}
	p.dialing++
	p.mu.Unlock()
	c, err = p.dial(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dialing--
	if err != nil {
		<-p.slots
		// A dial given up because the caller stopped waiting says nothing
		// of the server.
		if p.holdDown > 0 && ctx.Err() == nil {
			p.down = &DownError{Err: err, For: p.holdDown, until: p.now().Add(p.holdDown)}
		}
	} else {
		p.open++
	}
	p.wake()
	return c, true, err
}

// closedOne gives back the slot of a session that was closed.
func (p *Pool[C]) closedOne() {
	<-p.slots
	p.mu.Lock()
	p.open--
	p.wake()
	p.mu.Unlock()
}

// wake tells the Gets that wait for a dial or a session to end. p.mu is
// held.
func (p *Pool[C]) wake() {
	close(p.changed)
	p.changed = make(chan struct{})
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
	p.closedOne()
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
			p.closedOne()
		default:
			return
		}
	}
}
