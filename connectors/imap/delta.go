package imap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailflow/mailflow/engine/plugin"
)

// A delta listing (plugin.DeltaSession) lists what changed since the last
// one, on servers with CONDSTORE (RFC 7162), where every change to a
// message (its arrival, a flag) gives it a new modification sequence and
// raises its folder's HIGHESTMODSEQ. The checkpoint keeps, per folder,
// UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT and MESSAGES. A poll asks them of
// every folder in one command (LIST ... RETURN (STATUS ...), RFC 5819): a
// folder where none moved costs nothing more. In one that changed,
// UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE) (CHANGEDSINCE m) lists
// the messages that came or changed. Messages that left a folder are not
// named by CONDSTORE alone (that is QRESYNC's VANISHED): when MESSAGES
// fell below what it was plus what came, that folder is listed whole and
// named in Delta.Complete. Everything is listed whole when a folder's
// UIDVALIDITY changed, folders came or went, or on_settled or the
// selection changed since the checkpoint.

// mark is where one folder stood at a listing.
type mark struct {
	validity uint32
	modSeq   uint64 // 0: the folder keeps none (NOMODSEQ)
	uidNext  uint32
	messages uint32
}

// checkpoint is where a listing stood: a mark per folder, by mailflow's
// name, and what decided which messages were listed and what became of
// them.
type checkpoint struct {
	settle    string // on_settled
	selection string // since, unseen, min_size, max_size
	folders   map[string]mark
}

// checkpointVersion begins every checkpoint; one of another version is
// not read (the listing is then whole).
const checkpointVersion = "mailflow-imap-delta 1"

// checkpoint is an empty checkpoint with the input's settle action and
// selection.
func (in *Input) checkpoint() checkpoint {
	return checkpoint{
		settle:    in.action + ":" + in.arg,
		selection: fmt.Sprintf("since=%q unseen=%t min=%d max=%d", in.Since, in.Unseen, in.MinSize, in.MaxSize),
		folders:   map[string]mark{},
	}
}

// encode writes cp as text, a line per folder in name order.
func (cp checkpoint) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nsettle %s\nselect %s\n", checkpointVersion, strconv.Quote(cp.settle), strconv.Quote(cp.selection))
	for _, name := range cp.names() {
		m := cp.folders[name]
		fmt.Fprintf(&b, "folder %s %d %d %d %d\n", strconv.Quote(name), m.validity, m.modSeq, m.uidNext, m.messages)
	}
	return b.Bytes()
}

// names are the folders of cp, sorted.
func (cp checkpoint) names() []string {
	names := make([]string, 0, len(cp.folders))
	for name := range cp.folders {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// decodeCheckpoint reads what encode wrote; not ok for anything else.
func decodeCheckpoint(raw []byte) (checkpoint, bool) {
	cp := checkpoint{folders: map[string]mark{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() || sc.Text() != checkpointVersion {
		return cp, false
	}
	quoted := func(s string) (string, string, bool) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", false
		}
		v, err := strconv.Unquote(q)
		return v, strings.TrimPrefix(s[len(q):], " "), err == nil
	}
	var ok bool
	for sc.Scan() {
		key, rest, _ := strings.Cut(sc.Text(), " ")
		switch key {
		case "settle":
			if cp.settle, _, ok = quoted(rest); !ok {
				return cp, false
			}
		case "select":
			if cp.selection, _, ok = quoted(rest); !ok {
				return cp, false
			}
		case "folder":
			name, nums, ok := quoted(rest)
			var m mark
			if !ok {
				return cp, false
			}
			if _, err := fmt.Sscanf(nums, "%d %d %d %d", &m.validity, &m.modSeq, &m.uidNext, &m.messages); err != nil {
				return cp, false
			}
			cp.folders[name] = m
		default:
			return cp, false
		}
	}
	return cp, sc.Err() == nil
}

// scheme is the listing's id scheme: each folder's UIDVALIDITY.
func scheme(cp checkpoint) string {
	var b strings.Builder
	b.WriteString("imap-uid")
	for _, name := range cp.names() {
		fmt.Fprintf(&b, " %s=%d", name, cp.folders[name].validity)
	}
	return b.String()
}

// markOf is the mark a folder's STATUS gives.
func markOf(s *goimap.StatusData) mark {
	var m mark
	if s == nil {
		return m
	}
	m.validity, m.modSeq, m.uidNext = s.UIDValidity, s.HighestModSeq, uint32(s.UIDNext)
	if s.NumMessages != nil {
		m.messages = *s.NumMessages
	}
	return m
}

// ListSince implements plugin.DeltaSession. Without CONDSTORE it lists
// everything, with no checkpoint; so does Gmail's view (gmail.go). A
// server's ask to wait is marked with how long.
func (s *session) ListSince(ctx context.Context, raw []byte) (plugin.Delta, error) {
	if s.gm != nil {
		return s.gmailList(ctx)
	}
	d, err := s.listSince(ctx, raw)
	return d, s.in.throttled(err)
}

func (s *session) listSince(ctx context.Context, raw []byte) (d plugin.Delta, err error) {
	if !s.c.condStore() {
		return s.listAll(ctx, nil)
	}
	folders, err := s.folders(tokenStatus)
	if err != nil {
		return plugin.Delta{}, err
	}
	defer func() {
		if err == nil {
			d.Folders = foldersOf(folders)
		}
	}()
	was, ok := decodeCheckpoint(raw)
	now := s.in.checkpoint()
	if !ok || was.settle != now.settle || was.selection != now.selection || len(was.folders) != len(folders) {
		return s.listAll(ctx, folders)
	}
	for _, f := range folders {
		old, listed := was.folders[f.path]
		if !listed || markOf(f.status).validity != old.validity || collides(folders, f.path, old.validity) {
			return s.listAll(ctx, folders)
		}
	}
	d = plugin.Delta{Listing: s.listing(), Partial: true}
	for _, f := range folders {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		old, st := was.folders[f.path], markOf(f.status)
		s.in.noteUIDNext(f.name, st.uidNext)
		if st == old && old.modSeq != 0 {
			now.folders[f.path] = old
			continue
		}
		items, m, whole, err := s.listChanged(f, old)
		if err != nil {
			return d, err
		}
		if m.validity != old.validity { // made again since the STATUS
			return s.listAll(ctx, folders)
		}
		if whole {
			d.Complete = append(d.Complete, fmt.Sprintf("%s/%d/", f.path, m.validity))
		}
		d.Items = append(d.Items, items...)
		now.folders[f.path] = m
	}
	d.Scheme = scheme(now)
	d.Checkpoint = now.encode()
	return d, nil
}

// collides reports whether the ids of another folder begin as those of
// folder (under UIDVALIDITY validity) do: "Archive/7/" names both the
// messages of Archive under UIDVALIDITY 7 and everything in a folder
// Archive/7. Such a folder cannot be named in Delta.Complete; the listing
// is whole instead.
func collides(folders []mailbox, folder string, validity uint32) bool {
	prefix := fmt.Sprintf("%s/%d", folder, validity)
	for _, f := range folders {
		if f.path == prefix || strings.HasPrefix(f.path, prefix+"/") {
			return true
		}
	}
	return false
}

// listChanged lists what changed in folder f since it stood at old: the
// messages that came or whose flags changed; or, when messages left it
// (or are marked \Deleted, on their way out), or the input selects by
// SEARCH, or the folder keeps no modification sequences, all of it
// (whole).
func (s *session) listChanged(f mailbox, old mark) (items []plugin.Item, m mark, whole bool, err error) {
	// The changes are asked for with the SELECT (selectThen), and their
	// answer taken whatever the SELECT's.
	var changes *imapclient.FetchCommand
	data, err := s.c.selectThen(f.name, s.c.listingSelect(), func() {
		if s.in.criteria() == nil && old.modSeq != 0 {
			changes = s.c.changedCmd(old.modSeq)
		}
	})
	var msgs []msgInfo
	var ferr error
	if changes != nil {
		msgs, ferr = s.c.infoOf(changes, true)
	}
	if err != nil {
		return nil, m, false, err
	}
	m = mark{validity: data.UIDValidity, modSeq: data.HighestModSeq, uidNext: uint32(data.UIDNext), messages: data.NumMessages}
	s.in.noteUIDNext(f.name, m.uidNext)
	if m.validity != old.validity {
		return nil, m, false, nil
	}
	// A folder that keeps no modification sequences (NOMODSEQ) refuses
	// the CHANGEDSINCE; it is listed whole.
	whole = changes == nil || m.modSeq == 0
	if !whole && ferr != nil {
		return nil, m, false, ferr
	}
	if !whole {
		came := uint32(0)
		for _, msg := range msgs {
			if msg.UID >= old.uidNext && msg.UID < m.uidNext {
				came++
			}
			if msg.UID >= old.uidNext {
				// A new message is named from its header once fetched,
				// as a whole listing's are; the identity asked for is for
				// the ones whose flags changed (changedCmd).
				msg.Identity = ""
			}
			it, ok := item(f, m.validity, msg)
			if !ok {
				whole = true
				break
			}
			items = append(items, it)
		}
		if m.messages < old.messages+came {
			whole = true
		}
	}
	if whole {
		items = nil
		msgs, err := s.c.matching(m.messages, s.in.criteria())
		if err != nil {
			return nil, m, true, err
		}
		for _, msg := range msgs {
			if it, ok := item(f, m.validity, msg); ok {
				items = append(items, it)
			}
		}
	}
	return items, m, whole, nil
}

// FolderState implements plugin.FolderStater: a token of folder's STATUS
// (stateToken), "" without CONDSTORE.
func (s *session) FolderState(ctx context.Context, folder, role string) (string, error) {
	if s.gm != nil {
		return s.gmailState()
	}
	n, err := s.c.names()
	if err != nil {
		return "", err
	}
	name, err := n.server(folder)
	if err != nil {
		return "", err
	}
	return s.c.folderState(name)
}
