package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Look opens a session of the named input to look at its source without
// polling it: fn is given the session, its full listing and how the ledger
// has each listed id settled (Ledger.Outcomes: not the whole records, which
// would cost a kilobyte each for a large mailbox; an id not in it is not
// settled). fn may read headers (plugin.HeaderPeeker)
// and identities (plugin.Identifier), but neither fetches to deliver nor
// commits. For surveys, dry runs and verifications (migrate). The session
// is closed after fn; it holds the generation of the config it was opened
// with, as a poll does.
func (e *Engine) Look(ctx context.Context, input string, fn func(plugin.Session, plugin.Listing, map[string]ledger.Outcome) error) error {
	return e.look(ctx, input, lookHow{outcomes: true}, fn)
}

// LookListing is Look without the ledger's outcomes, for a look that
// does not need them (a verification).
func (e *Engine) LookListing(ctx context.Context, input string, fn func(plugin.Session, plugin.Listing) error) error {
	return e.look(ctx, input, lookHow{}, func(sess plugin.Session, l plugin.Listing, _ map[string]ledger.Outcome) error {
		return fn(sess, l)
	})
}

// LookUnlisted is Look without the listing: fn is given the session
// alone, and lists it (Session.List) only if it needs to, as a
// verification that finds from the folders' states (plugin.FolderLister)
// that nothing changed does not.
func (e *Engine) LookUnlisted(ctx context.Context, input string, fn func(plugin.Session) error) error {
	sess, _, unpin, err := e.openLook(ctx, input)
	if err != nil {
		return err
	}
	defer unpin()
	return errors.Join(fn(sess), sess.Close(ctx))
}

// openLook opens a session of the named input (ic, as the config in force
// has it), whose generation stays pinned until unpin.
func (e *Engine) openLook(ctx context.Context, input string) (sess plugin.Session, ic *config.Input, unpin func(), err error) {
	if e.Ledger == nil {
		return nil, nil, nil, errors.New("engine opened without its ledger cannot look at a source")
	}
	g := e.gens.pin()
	ic = g.setup.Config.Input(input)
	if ic == nil {
		g.unpin()
		return nil, nil, nil, fmt.Errorf("no input %q", input)
	}
	if a := e.takeAhead(ic, true); a != nil {
		return a.sess, ic, g.unpin, nil // a poll's, just done with it
	}
	if sess, err = ic.Plugin.Open(ctx); err != nil {
		g.unpin()
		return nil, nil, nil, err
	}
	return sess, ic, g.unpin, nil
}

// lookHow is what a look lists (changes: what changed since the last
// delta listing, where the session can tell), whether fn is given the
// ledger's outcomes, and whether the session and listing are kept for
// the next poll (LookAhead) instead of closed.
type lookHow struct{ changes, outcomes, keep bool }

func (e *Engine) look(ctx context.Context, input string, how lookHow, fn func(plugin.Session, plugin.Listing, map[string]ledger.Outcome) error) error {
	sess, ic, unpin, err := e.openLook(ctx, input)
	if err != nil {
		return err
	}
	var d plugin.Delta
	if ds, ok := sess.(plugin.DeltaSession); ok && how.changes {
		d, err = ds.ListSince(ctx, e.Ledger.Meta(input).Checkpoint)
	} else {
		d.Listing, err = sess.List(ctx)
	}
	if err == nil {
		var settled map[string]ledger.Outcome
		if how.outcomes {
			settled = e.Ledger.Outcomes(input, listingIDs(d.Listing))
		}
		err = fn(sess, d.Listing, settled)
	}
	if err != nil || !how.keep {
		err = errors.Join(err, sess.Close(ctx))
		unpin()
		return err
	}
	e.keepAhead(input, &ahead{sess: sess, delta: d, listed: true, ic: ic, unpin: unpin, at: time.Now()})
	return nil
}
