package imap

import (
	"context"
	"fmt"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailflow/mailflow/engine/plugin"
)

// A later pass changes a few messages of a folder; its verification need
// not read the folder's thousands on both sides to see those. Each side
// says what came or changed since it stood at the token a verification
// that found the folder equal kept (stateToken): UID FETCH 1:* (UID FLAGS
// RFC822.SIZE <identity fields>) (CHANGEDSINCE m), RFC 7162. What that
// cannot show is a message that left: as in a delta listing (delta.go),
// the folder must hold what it held then plus what came, or the change
// list is not the whole story (ok false) and the folder is read whole.

// namedSince lists, named (conn.identify's fields), the messages of
// folder that came (came) or were there and whose flags changed (changed)
// since it stood at was, and selects it for a listing (data: its SELECT
// answer); the changes are asked for with the SELECT (selectThen), one
// round trip for both. ok is false when that cannot stand for every
// change: no CONDSTORE, a folder made again (other UIDVALIDITY), a
// message gone since or marked \Deleted (on its way out).
func (c *conn) namedSince(folder string, was mark) (data *goimap.SelectData, came, changed []msgInfo, ok bool, err error) {
	var cmd *imapclient.FetchCommand
	data, err = c.selectThen(folder, c.listingSelect(), func() {
		if c.condStore() && was.modSeq != 0 {
			cmd = c.c.Fetch(goimap.UIDSet{goimap.UIDRange{Start: 1, Stop: 0}},
				&goimap.FetchOptions{UID: true, RFC822Size: true, Flags: true,
					BodySection: []*goimap.FetchItemBodySection{identityFields}, ChangedSince: was.modSeq})
		}
	})
	var msgs []msgInfo
	var ferr error
	if cmd != nil {
		msgs, ferr = c.infoOf(cmd, true)
	}
	if err != nil {
		return nil, nil, nil, false, err
	}
	now := markOfSelect(data)
	if cmd == nil || now.validity != was.validity || now.modSeq == 0 {
		// A folder that keeps no modification sequences refuses the
		// CHANGEDSINCE: not sure, whatever it answered.
		return data, nil, nil, false, nil
	}
	if ferr != nil {
		return data, nil, nil, false, ferr
	}
	for _, m := range msgs {
		if containsFold(m.Flags, `\Deleted`) {
			return data, nil, nil, false, nil
		}
		if m.UID >= was.uidNext {
			came = append(came, m)
		} else {
			changed = append(changed, m)
		}
	}
	return data, came, changed, now.messages == was.messages+uint32(len(came)), nil
}

// markOfSelect is where a folder stands by its SELECT answer.
func markOfSelect(d *goimap.SelectData) mark {
	return mark{validity: d.UIDValidity, modSeq: d.HighestModSeq, uidNext: uint32(d.UIDNext), messages: d.NumMessages}
}

// ListNamedSince implements plugin.FolderChangeNamer: ListNamed of only
// what changed since the token since. Not for a selection (a SEARCH) nor
// Gmail's view, whose places are not the server's folders.
func (s *session) ListNamedSince(ctx context.Context, folder, since string) (came, changed []plugin.Item, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, false, err
	}
	was, ok := markOfToken(since)
	if !ok || s.gm != nil || s.in.criteria() != nil {
		return nil, nil, false, nil
	}
	f, ok := s.named[folder]
	if !ok {
		return nil, nil, false, fmt.Errorf("imap: folder %q was not among those listed", folder)
	}
	data, newer, older, sure, err := s.c.namedSince(f.name, was)
	if err != nil || !sure {
		return nil, nil, false, err
	}
	items := func(msgs []msgInfo) []plugin.Item {
		out := make([]plugin.Item, 0, len(msgs))
		for _, m := range msgs {
			it, _ := item(f, data.UIDValidity, m) // none is \Deleted (namedSince)
			out = append(out, it)
		}
		return out
	}
	return items(newer), items(older), true, nil
}

// HoldsFlagsSince implements plugin.FlagFinderSince: HoldsFlags of only
// the copies that came or changed since the token since.
func (o *Output) HoldsFlagsSince(ctx context.Context, folder, role, since string) (came, changed map[string][][]string, ok bool, err error) {
	was, ok := markOfToken(since)
	if !ok {
		return nil, nil, false, nil
	}
	target, err := o.target(ctx, folder, role)
	if err != nil {
		return nil, nil, false, err
	}
	sure := false
	err = o.use(ctx, func(c *conn) error {
		_, newer, older, whole, err := c.namedSince(target, was)
		if missing(err) {
			return nil // gone since it was found equal: not sure, read whole
		}
		if err != nil || !whole {
			return err
		}
		sure, came, changed = true, flagsOf(newer), flagsOf(older)
		return nil
	})
	if err != nil || !sure {
		return nil, nil, false, err
	}
	return came, changed, true, nil
}

var (
	_ plugin.FolderChangeNamer = (*session)(nil)
	_ plugin.FlagFinderSince   = (*Output)(nil)
)
