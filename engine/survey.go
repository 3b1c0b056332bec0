package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/message"
)

// SurveyItem is one message of a source as a survey sees it.
type SurveyItem struct {
	plugin.Item
	Settled  bool   // the ledger has it as settled under this id: it is not delivered again
	TooLarge bool   // over max_message_size: it stays at the source
	Held     bool   // held after fetches that did not match its size
	Header   []byte // its header, when asked for and the source can peek
}

// Peek says which messages' headers a survey reads.
type Peek int

const (
	PeekNone      Peek = iota
	PeekUnsettled      // those a poll would deliver (a dry run lists them)
	PeekAll            // every one, to name each (Item.Identity) where the listing did not
)

// Survey lists an input's source without fetching, committing or changing
// anything, and says of each message what a poll would do with it: for
// progress totals and dry runs (mailflow migrate). It works for every input;
// headers are read where the source can peek at them (HeaderPeeker), and a
// message the listing did not name gets its Identity from its header.
func (e *Engine) Survey(ctx context.Context, input string, headers Peek) ([]SurveyItem, error) {
	if e.Ledger == nil {
		return nil, errors.New("engine opened without its ledger cannot survey")
	}
	g := e.gens.pin()
	defer g.unpin()
	ic := g.setup.Config.Input(input)
	if ic == nil {
		return nil, fmt.Errorf("no input %q", input)
	}
	sess, err := ic.Plugin.Open(ctx)
	if err != nil {
		return nil, err
	}
	listing, err := sess.List(ctx)
	if err != nil {
		return nil, errors.Join(err, sess.Close(ctx))
	}
	recs := e.Ledger.GetMany(input, listingIDs(listing))
	max := g.setup.Config.Spool.MaxSize
	if ic.MaxMessageSize > 0 {
		max = ic.MaxMessageSize
	}
	if id, ok := sess.(plugin.Identifier); ok && headers == PeekAll {
		if err := id.Identify(ctx, listing.Items); err != nil {
			return nil, errors.Join(err, sess.Close(ctx))
		}
	}
	peek, _ := sess.(plugin.HeaderPeeker)
	out := make([]SurveyItem, 0, len(listing.Items))
	for _, it := range listing.Items {
		rec, known := recs[it.ID]
		si := SurveyItem{Item: it}
		si.Held = known && rec.Settled == ledger.Held
		si.Settled = known && rec.Settled != "" && !si.Held
		si.TooLarge = max > 0 && it.Size > max
		if peek != nil && (headers == PeekAll && si.Identity == "" || headers == PeekUnsettled && !si.Settled) {
			if si.Header, err = peek.PeekHeader(ctx, it); err != nil {
				return nil, errors.Join(err, sess.Close(ctx))
			}
			if si.Identity == "" {
				si.Identity = message.HeaderIdentity(si.Header, it.Size)
			}
		}
		out = append(out, si)
	}
	return out, sess.Close(ctx)
}
