package imap

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// After delivery the output follows the source (migrate's later passes):
// a flag set or cleared there is set or cleared on the copy here, and, with
// sync_deletes, a message deleted there is deleted here. The copy is the
// one APPENDUID named (Delivery.Placed) while its folder's UIDVALIDITY
// holds; else it is looked for by identity in the folder mail from its
// source folder goes to.

// SetFlags implements plugin.FlagMirror with UID STORE +FLAGS and -FLAGS.
// With keep_flags = false it changes nothing.
func (o *Output) SetFlags(ctx context.Context, p plugin.Placement, added, removed []string) error {
	if o.KeepFlags != nil && !*o.KeepFlags {
		return nil
	}
	isRecent := func(f string) bool { return strings.EqualFold(f, `\Recent`) }
	added = slices.DeleteFunc(slices.Clone(added), isRecent)
	removed = slices.DeleteFunc(slices.Clone(removed), isRecent)
	if len(added)+len(removed) == 0 {
		return nil
	}
	byIdentity := o.identityFolder(ctx, p)
	return o.use(ctx, func(c *conn) error {
		uid, err := c.copyOf(p, byIdentity)
		if err != nil {
			return err
		}
		return c.setFlags([]uint32{uid}, added, removed)
	})
}

// MirrorsDeletes implements plugin.DeleteMirror: sync_deletes.
func (o *Output) MirrorsDeletes() bool { return o.SyncDeletes }

// Delete implements plugin.DeleteMirror: \Deleted and UID EXPUNGE of that
// one message. Without UIDPLUS it is only marked \Deleted: an EXPUNGE would
// also remove what others marked.
func (o *Output) Delete(ctx context.Context, p plugin.Placement) error {
	byIdentity := o.identityFolder(ctx, p)
	return o.use(ctx, func(c *conn) error {
		uid, err := c.copyOf(p, byIdentity)
		if err != nil {
			return err
		}
		if !c.caps.Has(goimap.CapUIDPlus) && !c.caps.Has(goimap.CapIMAP4rev2) {
			return c.addFlags([]uint32{uid}, `\Deleted`)
		}
		return c.remove([]uint32{uid})
	})
}

// identityFolder is the folder to look for p's copy in by identity (""
// when it has none): where mail from its source folder goes.
func (o *Output) identityFolder(ctx context.Context, p plugin.Placement) string {
	if p.Identity == "" {
		return ""
	}
	folder, err := o.target(ctx, p.Folder, p.FolderRole)
	if err != nil {
		return ""
	}
	return folder
}

// copyOf selects, read-write, the folder that holds the copy p names, and
// returns its UID: the one p.Where names while that folder's UIDVALIDITY
// holds, else the one with p's identity in byIdentity. ErrNotHeld when
// there is none.
func (c *conn) copyOf(p plugin.Placement, byIdentity string) (uint32, error) {
	if folder, validity, uid, ok := parseWhere(p.Where); ok {
		v, _, err := c.examine(folder, true)
		if err != nil && !missing(err) {
			return 0, err
		}
		if err == nil && v == validity {
			there, err := c.present([]uint32{uid})
			if err != nil {
				return 0, err
			}
			if len(there) == 0 {
				return 0, plugin.ErrNotHeld // someone deleted it there
			}
			return uid, nil
		}
	}
	if byIdentity == "" {
		return 0, plugin.ErrNotHeld
	}
	at, err := c.find(byIdentity, idOf(p.Identity), p.Identity, -1, nil)
	if err != nil {
		return 0, err
	}
	if at.uid == 0 {
		return 0, plugin.ErrNotHeld
	}
	_, _, err = c.examine(byIdentity, true)
	return at.uid, err
}

// HoldsFlags implements plugin.FlagFinder: the flags of each copy, by
// identity, in the folder mail from folder goes to.
func (o *Output) HoldsFlags(ctx context.Context, folder, role string) (map[string][][]string, error) {
	target, err := o.target(ctx, folder, role)
	if err != nil {
		return nil, err
	}
	var out map[string][][]string
	err = o.use(ctx, func(c *conn) (err error) { out, err = c.flagsByIdentity(target); return err })
	return out, err
}

// FolderState implements plugin.FolderStater for the folder mail from
// folder goes to (see conn.folderState).
func (o *Output) FolderState(ctx context.Context, folder, role string) (string, error) {
	target, err := o.target(ctx, folder, role)
	if err != nil {
		return "", err
	}
	var state string
	err = o.use(ctx, func(c *conn) (err error) { state, err = c.folderState(target); return err })
	return state, err
}

// searchID is the Message-ID a copy of msg (of this identity) is searched
// by at the destination: its own, or, where the output gives a message
// without one its identity as one (add_message_id), that; "" when it has
// none and a copy is found among those of its size.
func searchID(msg *message.Message, identity string, added bool) string {
	if id := msg.MessageID(); id != "" || !added {
		return id
	}
	return identity // the Message-ID it was given
}

// idOf is the Message-ID to search for a message of this identity by; ""
// for an identity made from other fields (message.MadeIdentity), which no
// header holds.
func idOf(identity string) string {
	if strings.HasSuffix(identity, "@"+message.IdentityDomain) {
		return ""
	}
	return identity
}

// present returns those of uids that the selected folder holds.
func (c *conn) present(uids []uint32) ([]uint32, error) {
	return c.searched(c.presentCmd(uids))
}

// presentCmd sends present's SEARCH; searched takes in its answer.
func (c *conn) presentCmd(uids []uint32) *imapclient.SearchCommand {
	return c.c.UIDSearch(&goimap.SearchCriteria{UID: []goimap.UIDSet{uidSet(uids)}}, nil)
}

// setFlags sets added and clears removed on uids in the selected folder:
// both STOREs go out together.
func (c *conn) setFlags(uids []uint32, added, removed []string) error {
	defer c.wd.begin()()
	var cmds []interface{ Close() error }
	for _, ch := range []struct {
		op    goimap.StoreFlagsOp
		flags []string
	}{{goimap.StoreFlagsAdd, added}, {goimap.StoreFlagsDel, removed}} {
		if len(ch.flags) == 0 {
			continue
		}
		fl := make([]goimap.Flag, len(ch.flags))
		for i, f := range ch.flags {
			fl[i] = goimap.Flag(f)
		}
		cmds = append(cmds, c.c.Store(uidSet(uids), &goimap.StoreFlags{Op: ch.op, Silent: true, Flags: fl}, nil))
	}
	for _, cmd := range cmds {
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("imap STORE: %w", err)
		}
	}
	return nil
}

// folderState is a token that changes whenever what folder holds or a
// flag in it changes: UIDVALIDITY.HIGHESTMODSEQ.MESSAGES.UIDNEXT
// (CONDSTORE), from one STATUS; "absent" for a folder that does not exist; "" without
// CONDSTORE, where a flag changes nothing STATUS shows.
func (c *conn) folderState(folder string) (string, error) {
	if !c.condStore() {
		return "", nil
	}
	defer c.wd.begin()()
	data, err := c.c.Status(folder, tokenStatus).Wait()
	if err != nil {
		if missing(err) {
			return "absent", nil
		}
		return "", fmt.Errorf("imap STATUS %q: %w", folder, err)
	}
	return stateToken(data), nil
}

// tokenStatus asks STATUS for what stateToken needs.
var tokenStatus = &goimap.StatusOptions{UIDValidity: true, HighestModSeq: true, NumMessages: true, UIDNext: true}

// stateToken is folderState's token for a STATUS answer (tokenStatus):
// where the folder stood, as a mark, so that a verification can later
// ask what changed since (markOfToken).
func stateToken(s *goimap.StatusData) string {
	m := markOf(s)
	return fmt.Sprintf("%d.%d.%d.%d", m.validity, m.modSeq, m.messages, m.uidNext)
}

// markOfToken reads back a token of stateToken; not ok for anything
// else ("absent", "", a token of an older mailflow without UIDNEXT).
func markOfToken(tok string) (mark, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 4 {
		return mark{}, false
	}
	var n [4]uint64
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil || (i != 1 && v > math.MaxUint32) {
			return mark{}, false
		}
		n[i] = v
	}
	return mark{validity: uint32(n[0]), modSeq: n[1], messages: uint32(n[2]), uidNext: uint32(n[3])}, true
}

var (
	_ plugin.FlagMirror   = (*Output)(nil)
	_ plugin.DeleteMirror = (*Output)(nil)
	_ plugin.FlagFinder   = (*Output)(nil)
	_ plugin.FolderStater = (*Output)(nil)
)
