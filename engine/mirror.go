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

// mirrorFlags carries the flag changes plan found to every output that
// holds the message and can change its flags, at most max_in_flight at
// once. A change carried is recorded; one that failed for now is tried
// again on the next poll (and holds the delta checkpoint back).
func (p *poll) mirrorFlags(ctx context.Context, sess plugin.Session) {
	if len(p.baseline) > 0 {
		if err := p.e.Ledger.PutMany(p.ic.Name, p.baseline); err != nil {
			p.log.Warn("ledger: could not record the flags of messages settled before", "err", err)
		}
	}
	if len(p.changes) == 0 {
		return
	}
	// The identities of the changed messages whose place an output did
	// not say, to find them by.
	if id, ok := sess.(plugin.Identifier); ok {
		var need []plugin.Item
		var at []int
		for i, c := range p.changes {
			if c.it.Identity == "" {
				need, at = append(need, c.it), append(at, i)
			}
		}
		if len(need) > 0 {
			if err := id.Identify(ctx, need); err != nil {
				p.log.Warn("could not name the messages whose flags changed; they are changed on the next poll", "err", err)
				for _, c := range p.changes {
					p.done(MessageEvent{Folder: c.it.Folder, Outcome: Deferred})
				}
				return
			}
			for j, i := range at {
				p.changes[i].it.Identity = need[j].Identity
			}
		}
	}
	var wg sync.WaitGroup
	for _, c := range p.changes {
		select {
		case p.e.sem <- struct{}{}:
		case <-ctx.Done():
			p.done(MessageEvent{Folder: c.it.Folder, Outcome: Deferred})
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-p.e.sem; wg.Done() }()
			p.mirrorFlagsOf(ctx, c)
		}()
	}
	wg.Wait()
}

// mirrorFlagsOf carries one message's flag change.
func (p *poll) mirrorFlagsOf(ctx context.Context, c change) {
	added, removed := flagDiff(c.rec.Flags, c.it.Flags)
	log := p.log.With("id", c.it.ID, "added", added, "removed", removed)
	carried := false
	for _, name := range mirrors(p.s, c.rec) {
		fm, ok := p.s.outputs[name].(plugin.FlagMirror)
		if !ok {
			continue
		}
		carried = true
		err := fm.SetFlags(ctx, placement(name, c.it, c.rec), added, removed)
		switch {
		case errors.Is(err, plugin.ErrNotHeld):
			log.Warn("flags changed at the source for a message the output no longer holds; left as it is", "output", name)
		case err != nil:
			log.Warn("could not change the flags at the output; tried again on the next poll", "output", name, "err", err)
			p.done(MessageEvent{Folder: c.it.Folder, Outcome: Deferred})
			return
		}
	}
	c.rec.Flags = c.it.Flags
	if err := p.e.Ledger.Put(p.ic.Name, c.it.ID, c.rec); err != nil {
		log.Warn("ledger: could not record the changed flags; changed again on the next poll", "err", err)
		p.done(MessageEvent{Folder: c.it.Folder, Outcome: Deferred})
		return
	}
	if !carried {
		// No output that holds it can change flags (SMTP, a Maildir):
		// the new flags are only recorded, and nothing is said to be
		// updated that was not.
		log.Debug("flags changed at the source; no output holding the message changes flags")
		return
	}
	log.Debug("flags changed at the source carried to the outputs")
	p.done(MessageEvent{Folder: c.it.Folder, Outcome: Updated})
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
