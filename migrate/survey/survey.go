// Package survey looks at a source without moving anything: what it holds
// and what a poll would do with each message (Survey), and whether every
// message of it is at a destination that can be searched (Verify). A
// migration's totals, dry run and closing check are built on it.
package survey

import (
	"context"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Item is one message of a source as a survey sees it.
type Item struct {
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
// progress totals, dry runs and verification. Headers are read where the
// source can peek at them (plugin.HeaderPeeker), and a message the listing
// did not name gets its Identity from its header.
func Survey(ctx context.Context, e *engine.Engine, input string, headers Peek) ([]Item, error) {
	items, _, err := survey(ctx, e, input, headers, e.Look)
	return items, err
}

// Changes is Survey of what changed since the input's last delta listing,
// where its source can tell: what the next poll would deal with, and
// that poll takes the session and listing rather than list again
// (engine.LookAhead). Messages settled earlier that did not change are
// not listed. Where the listing said the folders' states
// (plugin.Listing.Folders), they are returned too, for VerifySurveyed.
func Changes(ctx context.Context, e *engine.Engine, input string, headers Peek) ([]Item, []plugin.Folder, error) {
	return survey(ctx, e, input, headers, e.LookAhead)
}

type looker func(context.Context, string, func(plugin.Session, plugin.Listing, map[string]ledger.Outcome) error) error

func survey(ctx context.Context, e *engine.Engine, input string, headers Peek, look looker) ([]Item, []plugin.Folder, error) {
	cfg := e.Config()
	max := cfg.Spool.MaxSize
	if ic := cfg.Input(input); ic != nil && ic.MaxMessageSize > 0 {
		max = ic.MaxMessageSize
	}
	var out []Item
	var folders []plugin.Folder
	err := look(ctx, input, func(sess plugin.Session, listing plugin.Listing, settled map[string]ledger.Outcome) error {
		folders = listing.Folders
		if id, ok := sess.(plugin.Identifier); ok && headers == PeekAll {
			if err := id.Identify(ctx, listing.Items); err != nil {
				return err
			}
		}
		peek, _ := sess.(plugin.HeaderPeeker)
		out = make([]Item, 0, len(listing.Items))
		for _, it := range listing.Items {
			outcome := settled[it.ID]
			si := Item{Item: it}
			si.Held = outcome == ledger.Held
			si.Settled = outcome != "" && !si.Held
			si.TooLarge = max > 0 && it.Size > max
			if peek != nil && (headers == PeekAll && si.Identity == "" || headers == PeekUnsettled && !si.Settled) {
				var err error
				if si.Header, err = peek.PeekHeader(ctx, it); err != nil {
					return err
				}
				if si.Identity == "" {
					si.Identity = message.HeaderIdentity(si.Header, it.Size)
				}
			}
			out = append(out, si)
		}
		return nil
	})
	return out, folders, err
}
