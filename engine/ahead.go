package engine

import (
	"context"
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A look made just before a poll of the same input (a migration surveys
// what changed, makes the folders, then polls) would list the source
// twice, on two sessions: over a 50 ms link the second login and listing
// were a sixth of a pass that changed little. LookAhead keeps its session
// and listing for that poll instead, which takes them if nothing moved in
// between: the config is the one they were made with, and they are
// fresh. A listing describes the source when it was made; a message that
// came or changed since is the next poll's, as it would be had the poll
// listed a moment earlier.

// aheadFor is how long a kept session and listing stay fresh; at most
// aheadMost are kept at once (a batch of a thousand mailboxes surveys
// them all before the first poll: as many idle sessions would outlast a
// server's patience and limits).
const (
	aheadFor  = time.Minute
	aheadMost = 16
)

// ahead is a look's session and listing kept for the input's next poll;
// or, not listed, a poll's session kept for the look or poll after it
// (WithSessionsReused).
type ahead struct {
	sess   plugin.Session
	delta  plugin.Delta
	listed bool          // delta is a listing made on sess
	ic     *config.Input // the input as configured when it was opened
	unpin  func()        // the generation of the config it was opened with
	at     time.Time
}

// aheads are the kept looks, by input.
type aheads struct {
	mu   sync.Mutex
	kept map[string]*ahead
}

// LookAhead is Look on what changed since the input's last delta
// listing (plugin.DeltaSession), where the session can tell: what the
// next poll would be given, and that poll takes the session and listing
// (see above). Settled messages that did not change are not listed; the
// ledger counts them (Ledger.Stats). fn must leave the listing as it
// found it.
func (e *Engine) LookAhead(ctx context.Context, input string, fn func(plugin.Session, plugin.Listing, map[string]ledger.Outcome) error) error {
	return e.look(ctx, input, lookHow{changes: true, outcomes: true, keep: true}, fn)
}

// keepAhead keeps a for input's next poll, in place of what was kept for
// it, unless aheadMost are kept already: then a is closed.
func (e *Engine) keepAhead(input string, a *ahead) {
	e.ahead.mu.Lock()
	old := e.ahead.kept[input]
	if e.ahead.kept == nil {
		e.ahead.kept = map[string]*ahead{}
	}
	if old != nil || len(e.ahead.kept) < aheadMost {
		e.ahead.kept[input], a = a, old
	}
	e.ahead.mu.Unlock()
	a.discard() // the one replaced, or the one there was no room for
}

// takeAhead returns what is kept for the poll or look of ic, if it is
// still good for it, and only a session not listed when unlisted is set
// (a look lists for itself, and leaves a listing to its poll); a kept
// session that is not good is closed. The caller has the same generation
// pinned.
func (e *Engine) takeAhead(ic *config.Input, unlisted bool) *ahead {
	e.ahead.mu.Lock()
	a := e.ahead.kept[ic.Name]
	if a == nil || unlisted && a.listed {
		e.ahead.mu.Unlock()
		return nil
	}
	delete(e.ahead.kept, ic.Name)
	e.ahead.mu.Unlock()
	if a.ic != ic || time.Since(a.at) > aheadFor {
		a.discard()
		return nil
	}
	a.unpin()
	return a
}

// keepAfterPoll keeps sess, the session a poll of ic is done with, for
// the look or poll that follows (a migration's verification), where the
// engine was opened WithSessionsReused, the session says that closing it
// commits nothing (plugin.Reusable), and the poll went well. It reports
// whether it did; if not, the poll closes the session.
func (e *Engine) keepAfterPoll(ic *config.Input, sess plugin.Session, ok bool) bool {
	r, reusable := sess.(plugin.Reusable)
	if !e.reuse || !ok || !reusable || !r.Reusable() {
		return false
	}
	g := e.gens.pin()
	if g.setup.Config.Input(ic.Name) != ic {
		g.unpin() // reloaded meanwhile: the next look is of another config
		return false
	}
	e.keepAhead(ic.Name, &ahead{sess: sess, ic: ic, unpin: g.unpin, at: time.Now()})
	return true
}

// discardAhead closes every kept look (the engine is closing).
func (e *Engine) discardAhead() {
	e.ahead.mu.Lock()
	kept := e.ahead.kept
	e.ahead.kept = nil
	e.ahead.mu.Unlock()
	for _, a := range kept {
		a.discard()
	}
}

// discard closes a kept look's session.
func (a *ahead) discard() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.sess.Close(ctx)
	a.unpin()
}
