package imap

import (
	"context"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// lanes are an output's sessions with its server, at most max of them.
// APPENDs share a session: up to window of them in flight on each, every
// one answered by its own tagged reply (append.go). A command that
// selects a folder (a SEARCH for a message in doubt, a STORE of flags)
// needs a session to itself: it takes one with nothing in flight, or
// marks one so that no APPEND starts on it and waits for those in flight
// to be answered.
//
// A session the server closed is dropped when next looked at; one that
// waited longer than checkAfter since its last use is asked a NOOP first,
// so that a message never goes out on a session that is already gone (and
// is then not in doubt, but not sent). Sessions are never closed for being
// idle: the server's autologout ends them.
type lanes struct {
	max, window int
	checkAfter  time.Duration
	dial        func(context.Context) (*conn, error)

	mu      sync.Mutex
	all     []*lane
	dialing int
	changed chan struct{} // closed and replaced whenever a lane frees up, goes, or comes
	closed  bool
	// warming is set while the session warm dials is on its way: until it
	// is there, a command waits for it rather than dial another.
	warming bool
	// refused is when the server last refused one more session (a limit
	// of sessions per user: Gmail's 15, Dovecot's mail_max_userip_connections):
	// for a while the sessions there are make do.
	refused time.Time
}

// redialAfter is how long the sessions there are make do after the server
// refused one more.
const redialAfter = time.Minute

// mayGrow reports whether one more session may be dialed; l.mu is held.
func (l *lanes) mayGrow() bool {
	if len(l.all)+l.dialing >= l.max {
		return false
	}
	return len(l.all) == 0 || time.Since(l.refused) > redialAfter
}

// lane is one session.
type lane struct {
	c      *conn
	busy   int       // APPENDs in flight
	window int       // how many may be
	whole  bool      // held by one command
	want   bool      // a command waits to hold it whole: no APPEND starts
	dead   bool      // broken: dropped once nothing is in flight
	last   time.Time // when it last finished something
}

func newLanes(max, window int, dial func(context.Context) (*conn, error)) *lanes {
	return &lanes{max: max, window: window, dial: dial, checkAfter: 30 * time.Second, changed: make(chan struct{})}
}

// notify wakes every waiter; l.mu is held.
func (l *lanes) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// alive reports whether the lane's session is open and may take work;
// l.mu is held.
func (ln *lane) alive() bool {
	if !ln.dead && !ln.c.open() {
		ln.dead = true
	}
	return !ln.dead
}

// prune drops the dead lanes nothing is in flight on; l.mu is held.
func (l *lanes) prune() {
	kept := l.all[:0]
	for _, ln := range l.all {
		if !ln.alive() && ln.busy == 0 && !ln.whole {
			go ln.c.c.Close()
			continue
		}
		kept = append(kept, ln)
	}
	clear(l.all[len(kept):])
	l.all = kept
}

// share returns a lane for one APPEND: the one with the fewest in flight,
// or a new session while there are fewer than max and every lane has
// something in flight. Give it back with done.
func (l *lanes) share(ctx context.Context) (*lane, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, errClosed
		}
		l.prune()
		var best *lane
		for _, ln := range l.all {
			if ln.alive() && !ln.whole && !ln.want && ln.busy < ln.window && (best == nil || ln.busy < best.busy) {
				best = ln
			}
		}
		roomy := best != nil && best.busy < best.window && l.roundTripsCheap()
		if (best == nil || best.busy > 0 && !roomy) && !l.warming && l.mayGrow() {
			ln, err := l.grow(ctx, false)
			if ln != nil || err != nil && !l.makeDo() {
				return ln, err
			}
			continue
		}
		if best != nil {
			best.busy++
			stale := best.busy == 1 && time.Since(best.last) > l.checkAfter
			l.mu.Unlock()
			if stale && !best.check() {
				l.done(best, true)
				continue
			}
			return best, nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// hold returns a lane for commands that need the session to themselves.
// Give it back with done.
func (l *lanes) hold(ctx context.Context) (*lane, error) {
	var marked *lane
	defer func() {
		if marked != nil {
			l.mu.Lock()
			marked.want = false
			l.notify()
			l.mu.Unlock()
		}
	}()
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, errClosed
		}
		l.prune()
		var free, least *lane
		for _, ln := range l.all {
			if !ln.alive() || ln.whole || ln.want && ln != marked {
				continue
			}
			if ln.busy == 0 && (free == nil || ln == marked) {
				free = ln
			}
			if least == nil || ln.busy < least.busy {
				least = ln
			}
		}
		if free != nil {
			free.whole, free.want = true, false
			if free == marked {
				marked = nil
			}
			stale := time.Since(free.last) > l.checkAfter
			l.mu.Unlock()
			if stale && !free.check() {
				l.done(free, true)
				continue
			}
			return free, nil
		}
		// Where round trips are cheap, what holds the sessions ends soon.
		soon := l.roundTripsCheap() && (least == nil || least.busy < least.window)
		if !soon && !l.warming && l.mayGrow() {
			ln, err := l.grow(ctx, true)
			if ln != nil || err != nil && !l.makeDo() {
				return ln, err
			}
			continue
		}
		if marked == nil && least != nil {
			// No APPEND starts on it until it is ours.
			least.want, marked = true, least
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// grow dials a new session, with l.mu held on entry and released on
// return; it returns the new lane, already taken (whole or for one
// APPEND), or an error; or neither when the lanes were closed meanwhile.
func (l *lanes) grow(ctx context.Context, whole bool) (*lane, error) {
	l.dialing++
	l.mu.Unlock()
	c, err := l.dial(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dialing--
	l.notify()
	if err != nil {
		return nil, err
	}
	if l.closed {
		go c.close()
		return nil, errClosed
	}
	ln := l.newLane(c)
	ln.whole = whole
	if !whole {
		ln.busy = 1
	}
	l.all = append(l.all, ln)
	return ln, nil
}

// newLane is a lane for session c, with nothing in flight.
func (l *lanes) newLane(c *conn) *lane {
	ln := &lane{c: c, last: time.Now(), window: l.window}
	if !c.caps.Has(goimap.CapLiteralPlus) {
		// Without LITERAL+ each APPEND waits for the server's "+" while it
		// holds the encoder: in flight together, they would only queue.
		ln.window = 1
	}
	return ln
}

// warm dials the first session in the background (plugin.Warmer), unless
// there is one or one is being dialed. Should the dial fail, the first
// command that needs a session dials again, and reports why.
func (l *lanes) warm(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.all)+l.dialing > 0 {
		return
	}
	l.dialing++
	l.warming = true
	go func() {
		c, err := l.dial(ctx)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.dialing--
		l.warming = false
		l.notify()
		switch {
		case err != nil:
		case l.closed:
			go c.close()
		default:
			l.all = append(l.all, l.newLane(c))
		}
	}()
}

// makeDo reports, after a dial failed, whether there are sessions to make
// do with, and if so stops dialing for a while.
func (l *lanes) makeDo() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 || l.closed {
		return false
	}
	l.refused = time.Now()
	return true
}

// check asks the server whether a session that waited a while is still
// there (NOOP).
func (ln *lane) check() bool {
	defer ln.c.wd.begin()()
	return ln.c.c.Noop().Wait() == nil
}

// done gives back a lane taken with share or hold; broken says its
// session can no longer be used.
func (l *lanes) done(ln *lane, broken bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ln.whole {
		ln.whole = false
	} else if ln.busy > 0 {
		ln.busy--
	}
	ln.last = time.Now()
	if broken && !ln.dead {
		ln.dead = true
		// Whatever else is in flight on it fails now, as it would anyway.
		go ln.c.c.Close()
	}
	l.prune()
	l.notify()
}

// close ends every session (LOGOUT) and refuses what comes after.
func (l *lanes) close() {
	l.mu.Lock()
	all := l.all
	l.all, l.closed = nil, true
	l.notify()
	l.mu.Unlock()
	for _, ln := range all {
		ln.c.close()
	}
}
