package engine

import (
	"context"
	"errors"
	"fmt"

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
	return e.look(ctx, input, false, true, fn)
}

// LookListing is Look without the ledger's outcomes, for a look that
// does not need them (a verification).
func (e *Engine) LookListing(ctx context.Context, input string, fn func(plugin.Session, plugin.Listing) error) error {
	return e.look(ctx, input, false, false, func(sess plugin.Session, l plugin.Listing, _ map[string]ledger.Outcome) error {
		return fn(sess, l)
	})
}

// LookChanges is Look on what changed since the input's last delta
// listing (plugin.DeltaSession), where the session can tell: what a poll
// now would be given. Settled messages that did not change are not
// listed; the ledger counts them (Ledger.Stats).
func (e *Engine) LookChanges(ctx context.Context, input string, fn func(plugin.Session, plugin.Listing, map[string]ledger.Outcome) error) error {
	return e.look(ctx, input, true, true, fn)
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
	if sess, err = ic.Plugin.Open(ctx); err != nil {
		g.unpin()
		return nil, nil, nil, err
	}
	return sess, ic, g.unpin, nil
}

func (e *Engine) look(ctx context.Context, input string, changes, outcomes bool, fn func(plugin.Session, plugin.Listing, map[string]ledger.Outcome) error) error {
	sess, _, unpin, err := e.openLook(ctx, input)
	if err != nil {
		return err
	}
	defer unpin()
	var listing plugin.Listing
	if ds, ok := sess.(plugin.DeltaSession); ok && changes {
		var d plugin.Delta
		d, err = ds.ListSince(ctx, e.Ledger.Meta(input).Checkpoint)
		listing = d.Listing
	} else {
		listing, err = sess.List(ctx)
	}
	if err != nil {
		return errors.Join(err, sess.Close(ctx))
	}
	var settled map[string]ledger.Outcome
	if outcomes {
		settled = e.Ledger.Outcomes(input, listingIDs(listing))
	}
	err = fn(sess, listing, settled)
	return errors.Join(err, sess.Close(ctx))
}
