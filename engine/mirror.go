package engine

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A message stays at a source that keeps what mailflow settles (an IMAP
// mailbox being migrated), and may change there after it was delivered:
// someone reads it, flags it, labels it, or deletes it. The outputs that
// can change what they hold follow: each listing's flags are compared with
// the record's (Record.Flags, the flags the outputs were last given), and
// a message gone from a source that keeps its mail was deleted there.

// change is a settled message whose flags changed at the source.
type change struct {
	it  plugin.Item
	rec ledger.Record
}

// flagsChanged reports whether a listed message's flags differ from those
// its outputs were last given. Unknown flags (a source without them, a
// record from before flags were kept) are no change.
func flagsChanged(rec ledger.Record, it plugin.Item) bool {
	if rec.Flags == nil || it.Flags == nil {
		return false
	}
	added, removed := flagDiff(rec.Flags, it.Flags)
	return len(added)+len(removed) > 0
}

// flagDiff is what to set and clear to go from was to now.
func flagDiff(was, now []string) (added, removed []string) {
	for _, f := range now {
		if !slices.Contains(was, f) {
			added = append(added, f)
		}
	}
	for _, f := range was {
		if !slices.Contains(now, f) {
			removed = append(removed, f)
		}
	}
	return added, removed
}

// mirrors are the outputs of s that accepted the whole message of rec.
func mirrors(s *Setup, rec ledger.Record) []string {
	var out []string
	for name, who := range rec.Accepted {
		if slices.Contains(who, "*") && s.outputs[name] != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// mirrorsDeletes reports whether an output of the input's pipeline mirrors
// deletions at the source.
func (p *poll) mirrorsDeletes() bool {
	pl := p.s.pipelines[p.ic.Pipeline]
	if pl == nil {
		return false
	}
	for _, name := range pl.outputs {
		if dm, ok := p.s.outputs[name].(plugin.DeleteMirror); ok && dm.MirrorsDeletes() {
			return true
		}
	}
	return false
}

// placement is where output holds the message of rec, listed as it.
func placement(output string, it plugin.Item, rec ledger.Record) plugin.Placement {
	return plugin.Placement{Where: rec.Where[output], Folder: it.Folder, FolderRole: it.FolderRole, Identity: it.Identity}
}

// nameChanges finds, on the source's session, the identities of the
// changed messages whose place an output did not say, to find them by.
// It runs before the fetch, which then has the session to itself, so that
// the changes are carried while the new messages come (mirrorFlags). It
// reports false when they could not be named: the changes are then left
// for the next poll.
func (p *poll) nameChanges(ctx context.Context, sess plugin.Session) bool {
	id, ok := sess.(plugin.Identifier)
	if !ok || len(p.changes) == 0 {
		return true
	}
	var need []plugin.Item
	var at []int
	for i, c := range p.changes {
		if c.it.Identity == "" {
			need, at = append(need, c.it), append(at, i)
		}
	}
	if len(need) == 0 {
		return true
	}
	if err := id.Identify(ctx, need); err != nil {
		p.log.Warn("could not name the messages whose flags changed; they are changed on the next poll", "err", err)
		for _, c := range p.changes {
			p.done(MessageEvent{Folder: c.it.Folder, Outcome: Deferred})
		}
		return false
	}
	for j, i := range at {
		p.changes[i].it.Identity = need[j].Identity
	}
	return true
}

// mirrorFlags records the flags of the messages settled before that did
// not know them, and carries the flag changes plan found (named by
// nameChanges when named is true) to every output that holds the message
// and can change its flags. It touches no message being fetched: those
// are all unsettled, the changed ones all settled.
func (p *poll) mirrorFlags(ctx context.Context, named bool) {
	if len(p.baseline) > 0 {
		if err := p.e.Ledger.PutMany(p.ic.Name, p.baseline); err != nil {
			p.log.Warn("ledger: could not record the flags of messages settled before", "err", err)
		}
	}
	if len(p.changes) == 0 || !named {
		return
	}
	p.carryFlags(ctx)
}

// carryFlags tells each output that holds a changed message, and can
// change flags, what changed: one that carries many changes at once
// (plugin.FlagBatchMirror) all of its changes in one call, any other
// change by change, at most max_in_flight at once. The flags of what was
// carried are then recorded in one commit; a change an output failed to
// carry for now is not, and is tried again on the next poll.
func (p *poll) carryFlags(ctx context.Context) {
	type result struct{ carried, failed bool }
	res := make([]result, len(p.changes))
	var mu sync.Mutex
	answered := func(i int, output string, err error) {
		mu.Lock()
		defer mu.Unlock()
		res[i].carried = true
		c := p.changes[i]
		switch {
		case errors.Is(err, plugin.ErrNotHeld):
			p.log.Warn("flags changed at the source for a message the output no longer holds; left as it is", "id", c.it.ID, "output", output)
		case err != nil:
			p.log.Warn("could not change the flags at the output; tried again on the next poll", "id", c.it.ID, "output", output, "err", err)
			res[i].failed = true
		}
	}
	change := func(i int, output string) plugin.FlagChange {
		c := p.changes[i]
		added, removed := flagDiff(c.rec.Flags, c.it.Flags)
		return plugin.FlagChange{Placement: placement(output, c.it, c.rec), Added: added, Removed: removed}
	}
	batches := map[string][]int{}
	type single struct {
		i      int
		output string
		fm     plugin.FlagMirror
	}
	var singles []single
	for i, c := range p.changes {
		for _, name := range mirrors(p.s, c.rec) {
			switch o := p.s.outputs[name].(type) {
			case plugin.FlagBatchMirror:
				batches[name] = append(batches[name], i)
			case plugin.FlagMirror:
				singles = append(singles, single{i, name, o})
			}
		}
	}
	var wg sync.WaitGroup
	for name, at := range batches {
		changes := make([]plugin.FlagChange, len(at))
		for j, i := range at {
			changes[j] = change(i, name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs := p.s.outputs[name].(plugin.FlagBatchMirror).SetFlagsMany(ctx, changes)
			for j, i := range at {
				err := errors.New("the output gave no answer for this change")
				if j < len(errs) {
					err = errs[j]
				}
				answered(i, name, err)
			}
		}()
	}
	for _, s := range singles {
		select {
		case p.e.sem <- struct{}{}:
		case <-ctx.Done():
			answered(s.i, s.output, ctx.Err())
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-p.e.sem; wg.Done() }()
			ch := change(s.i, s.output)
			answered(s.i, s.output, s.fm.SetFlags(ctx, ch.Placement, ch.Added, ch.Removed))
		}()
	}
	wg.Wait()

	recs := map[string]ledger.Record{}
	for i, c := range p.changes {
		if res[i].failed {
			p.done(MessageEvent{Folder: c.it.Folder, Outcome: Deferred})
			continue
		}
		c.rec.Flags = c.it.Flags
		recs[c.it.ID] = c.rec
	}
	if err := p.e.Ledger.PutMany(p.ic.Name, recs); err != nil {
		p.log.Warn("ledger: could not record the changed flags; changed again on the next poll", "err", err)
		for i, c := range p.changes {
			if !res[i].failed {
				p.done(MessageEvent{Folder: c.it.Folder, Outcome: Deferred})
			}
		}
		return
	}
	for i, c := range p.changes {
		switch {
		case res[i].failed:
		case res[i].carried:
			p.done(MessageEvent{Folder: c.it.Folder, Outcome: Updated})
		default:
			// No output that holds it can change flags (SMTP, a Maildir):
			// the new flags are only recorded, and nothing is said to be
			// updated that was not.
			p.log.Debug("flags changed at the source; no output holding the message changes flags", "id", c.it.ID)
		}
	}
}

// mirrorDeletes deletes at the outputs that mirror deletions the messages
// of gone (ids, with their records) that were delivered and that someone
// deleted at the source, and returns the ids whose records may be
// forgotten: all but those whose deletion failed for now.
func (p *poll) mirrorDeletes(ctx context.Context, gone []string, recs map[string]ledger.Record) []string {
	var keep []string
	forget := gone[:0:0]
	for _, id := range gone {
		rec := recs[id]
		if rec.Settled != ledger.Delivered || rec.Removed {
			forget = append(forget, id)
			continue
		}
		failed, deleted := false, false
		for _, name := range mirrors(p.s, rec) {
			dm, ok := p.s.outputs[name].(plugin.DeleteMirror)
			if !ok || !dm.MirrorsDeletes() {
				continue
			}
			if rec.Where[name] == "" {
				p.log.Warn("a message deleted at the source is not deleted at the output: where it put the message is not known", "id", id, "output", name)
				continue
			}
			err := dm.Delete(ctx, plugin.Placement{Where: rec.Where[name]})
			switch {
			case err == nil:
				deleted = true
			case !errors.Is(err, plugin.ErrNotHeld):
				p.log.Warn("could not delete at the output a message deleted at the source; tried again on the next poll", "id", id, "output", name, "err", err)
				failed = true
			}
		}
		if failed {
			keep = append(keep, id)
			p.done(MessageEvent{Outcome: Deferred})
			continue
		}
		forget = append(forget, id)
		if deleted {
			p.done(MessageEvent{Outcome: Deleted})
		}
	}
	if len(keep) > 0 {
		p.log.Info("deletions at the source not yet carried to the outputs", "count", len(keep))
	}
	return forget
}
