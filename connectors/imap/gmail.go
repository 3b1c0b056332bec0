package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/mailflow/mailflow/connectors/internal/labels"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Gmail shows every message once in [Gmail]/All Mail and again in the
// folder of each of its labels (INBOX for \Inbox, [Gmail]/Sent Mail for
// \Sent, "Work" for Work), so that a copy of every folder copies a message
// once per label, and Spam and Trash besides. With gmail on, the input
// reads Gmail's view instead (X-GM-EXT-1): All Mail once, each message with
// its labels (X-GM-LABELS) and Gmail's id for it (X-GM-MSGID), and lists it
// once for each place its labels give under gmail_labels:
//
//   - "folders": a copy in the folder of each label: INBOX for \Inbox, Sent
//     (SPECIAL-USE \Sent) for \Sent, Drafts (\Drafts) for \Draft, "Work/2024"
//     for that label; a message with none (archived) in Archive (\Archive);
//   - "keywords": once, where Gmail shows it (INBOX, else Sent, else Drafts,
//     else Archive), its labels as keywords (what a keyword cannot hold, a
//     space, non-ASCII, as "_");
//   - "first": once, in the folder of its first label, the labels of one's
//     own first, in the order of their names, then INBOX, Sent, Drafts;
//     Archive when it has none.
//
// Whatever the rule: \Starred is \Flagged (as Gmail's IMAP has it already),
// \Important the keyword $Important. The input's folders and exclude
// patterns choose among these places ("Work/*"). [Gmail]/Spam and
// [Gmail]/Trash, which hold what is in no other folder, are read only with
// gmail_spam_trash, into Spam (\Junk) and Trash (\Trash).
//
// Each copy is named gm/MSGID/FOLDER: Gmail's id does not change when the
// folder's UIDs are renumbered or the labels change, so that a label added
// later adds one copy, a run again after a kill copies nothing twice, and
// one message under several labels is never taken for several messages.
// Its body is fetched once, however many copies it has.

// GmailSource is the Gmail part of the input's config.
type GmailSource struct {
	// Gmail is "off" (default: Gmail's folders are read as any server's),
	// "auto" (Gmail's view where the server offers X-GM-EXT-1) or "on" (and
	// a server without it is an error).
	Gmail string `toml:"gmail"`
	// GmailLabels is what the labels become: "folders" (default),
	// "keywords" or "first".
	GmailLabels string `toml:"gmail_labels"`
	// GmailSpamTrash also reads [Gmail]/Spam and [Gmail]/Trash.
	GmailSpamTrash bool `toml:"gmail_spam_trash"`
}

// capGmail is the capability Gmail's extensions come with.
const capGmail = goimap.Cap("X-GM-EXT-1")

// gmailScheme is the id scheme of Gmail's view, whatever the rule: an id
// names a message and a folder, so that another rule keeps the copies it
// shares with the last one.
const gmailScheme = "gmail-msgid"

// labelRule is gmail_labels.
type labelRule string

const (
	labelFolders  labelRule = "folders"
	labelKeywords labelRule = "keywords"
	labelFirst    labelRule = "first"
)

// initGmail checks the Gmail keys against the input's settle action.
func (g *GmailSource) initGmail(action string) error {
	switch g.Gmail {
	case "":
		g.Gmail = "off"
	case "off", "auto", "on":
	default:
		return fmt.Errorf(`gmail must be "off", "auto" or "on", not %q`, g.Gmail)
	}
	switch labelRule(g.GmailLabels) {
	case "":
		g.GmailLabels = string(labelFolders)
	case "copies": // what the mbox input calls it
		g.GmailLabels = string(labelFolders)
	case labelFolders, labelKeywords, labelFirst:
	default:
		return fmt.Errorf(`gmail_labels must be "folders", "keywords" or "first", not %q`, g.GmailLabels)
	}
	if g.Gmail == "on" && action == "move" {
		return errGmailMove
	}
	return nil
}

// errGmailMove: a message is in All Mail whatever it is moved to.
var errGmailMove = errors.New(`gmail: on_settled = "move:…" cannot take a message out of [Gmail]/All Mail (its labels are its folders): use "flag:…", "delete" or "keep"`)

// gmailView is what a session reading Gmail's view knows.
type gmailView struct {
	rule             labelRule
	all, spam, trash string // the server's names for the special folders
	// copies counts, per message, its copies in the last listing: a
	// message is deleted only with the last of them (Commit).
	copies map[ref]int
}

// gmailView is the session's view of Gmail, or nil where the input reads
// the server's folders as they are.
func (in *Input) gmailView(c *conn) (*gmailView, error) {
	has := c.caps.Has(capGmail)
	switch {
	case in.Gmail == "off" || in.Gmail == "auto" && !has:
		return nil, nil
	case !has:
		return nil, plugin.Permanent(fmt.Errorf(`gmail = "on": the server offers no X-GM-EXT-1, so it is not Gmail; set gmail = "off" or "auto"`))
	case in.action == "move":
		return nil, plugin.Permanent(errGmailMove)
	}
	return &gmailView{rule: labelRule(in.GmailLabels)}, nil
}

// gmailFolders finds All Mail, Spam and Trash by their SPECIAL-USE
// attributes: their names depend on the account's language
// ("[Google Mail]/Alle Nachrichten").
func (s *session) gmailFolders() error {
	defer s.c.wd.begin()()
	list, err := s.c.c.List("", "*", &goimap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		return s.in.throttled(fmt.Errorf("imap LIST: %w", err))
	}
	g := s.gm
	for _, m := range list {
		for _, a := range m.Attrs {
			switch a {
			case goimap.MailboxAttrAll:
				g.all = m.Mailbox
			case goimap.MailboxAttrJunk:
				g.spam = m.Mailbox
			case goimap.MailboxAttrTrash:
				g.trash = m.Mailbox
			}
		}
	}
	if g.all == "" {
		return fmt.Errorf(`gmail: the server lists no folder with \All (Gmail's All Mail)`)
	}
	return nil
}

// gmailInfo is a message as a listing of Gmail's view sees it.
type gmailInfo struct {
	msgInfo
	id     uint64
	labels []string
}

// gmailMessages lists the messages of the selected folder (n of them)
// that the input's selection takes, with their labels and ids.
func (s *session) gmailMessages(n uint32) ([]gmailInfo, error) {
	if n == 0 {
		return nil, nil
	}
	var set goimap.NumSet = goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}
	if criteria := s.in.criteria(); criteria != nil {
		end := s.c.wd.begin()
		data, err := s.c.c.UIDSearch(criteria, nil).Wait()
		end()
		if err != nil {
			return nil, fmt.Errorf("imap SEARCH: %w", err)
		}
		uids := data.AllUIDs()
		if len(uids) == 0 {
			return nil, nil
		}
		u := goimap.UIDSet{}
		u.AddNum(uids...)
		set = u
	}
	defer s.c.wd.begin()()
	msgs, err := s.c.c.Fetch(set, &goimap.FetchOptions{UID: true, RFC822Size: true, Flags: true, InternalDate: true,
		GmailMsgID: true, GmailLabels: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("imap FETCH: %w", err)
	}
	out := make([]gmailInfo, 0, len(msgs))
	for _, m := range msgs {
		gi := gmailInfo{msgInfo: msgInfo{UID: uint32(m.UID), Size: m.RFC822Size, Date: m.InternalDate, Flags: make([]string, 0, len(m.Flags))},
			id: m.GmailMsgID, labels: m.GmailLabels}
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				gi.Flags = append(gi.Flags, string(f))
			}
		}
		if gi.id == 0 {
			return nil, fmt.Errorf("gmail: the server gave UID %d no X-GM-MSGID", gi.UID)
		}
		out = append(out, gi)
	}
	slices.SortFunc(out, func(a, b gmailInfo) int { return int(a.UID) - int(b.UID) })
	return out, nil
}

// gmailList lists Gmail's view whole: every copy of every message of All
// Mail (and of Spam and Trash with gmail_spam_trash) that the rule, the
// folder patterns and the selection take.
func (s *session) gmailList(ctx context.Context) (plugin.Delta, error) {
	d := plugin.Delta{Listing: s.listing()}
	d.Scheme = gmailScheme
	if err := s.gmailFolders(); err != nil {
		return d, err
	}
	g := s.gm
	g.copies = map[ref]int{}
	sources := []struct {
		name string
		bin  *place // where all of it goes: Spam or Trash
	}{{name: g.all}}
	if s.in.GmailSpamTrash {
		if g.spam != "" {
			sources = append(sources, struct {
				name string
				bin  *place
			}{g.spam, &spamPlace})
		}
		if g.trash != "" {
			sources = append(sources, struct {
				name string
				bin  *place
			}{g.trash, &trashPlace})
		}
	}
	s.in.mu.Lock()
	if s.in.watched != g.all {
		s.in.watched, s.in.uidNext = g.all, 0
	}
	s.in.mu.Unlock()
	for _, src := range sources {
		if err := ctx.Err(); err != nil {
			return d, err
		}
		data, err := s.c.selectData(src.name, false)
		if err != nil {
			return d, s.in.throttled(err)
		}
		s.in.noteUIDNext(src.name, uint32(data.UIDNext))
		msgs, err := s.gmailMessages(data.NumMessages)
		if err != nil {
			return d, s.in.throttled(err)
		}
		for _, m := range msgs {
			if containsFold(m.Flags, `\Deleted`) {
				continue
			}
			places, flags := g.rule.places(m.labels, m.Flags, src.bin)
			r := ref{folder: src.name, uid: m.UID}
			for _, p := range places {
				mb := mailbox{path: p.folder, raw: p.folder}
				if !mb.matches(s.in.Folders) || mb.matches(s.in.Exclude) {
					continue
				}
				d.Items = append(d.Items, plugin.Item{
					ID: fmt.Sprintf("gm/%d/%s", m.id, p.folder), Size: m.Size, Folder: p.folder, FolderRole: p.role,
					Flags: flags, Date: m.Date, Ref: r,
				})
				g.copies[r]++
				if g.rule != labelFolders {
					break // the first place the patterns take
				}
			}
		}
	}
	return d, nil
}

// place is a folder a copy goes to, by mailflow's name, and its
// SPECIAL-USE.
type place struct{ folder, role string }

// Gmail's own places.
var (
	inboxPlace   = place{folder: "INBOX"}
	sentPlace    = place{folder: "Sent", role: `\Sent`}
	draftsPlace  = place{folder: "Drafts", role: `\Drafts`}
	archivePlace = place{folder: "Archive", role: `\Archive`}
	spamPlace    = place{folder: "Spam", role: `\Junk`}
	trashPlace   = place{folder: "Trash", role: `\Trash`}
)

// places are where a message with labels and IMAP flags may go under the
// rule, in the rule's order (for "first" the first that the folder
// patterns take is the one), and the flags of its copies. A message from
// Spam or Trash goes to bin whatever its labels.
func (rule labelRule) places(gmLabels, imapFlags []string, bin *place) ([]place, []string) {
	flags := slices.Clone(imapFlags)
	add := func(f string) {
		if !containsFold(flags, f) {
			flags = append(flags, f)
		}
	}
	var own, system []place
	var keywords []string
	for _, l := range gmLabels {
		switch strings.ToLower(l) {
		case `\inbox`:
			system = append(system, inboxPlace)
		case `\sent`:
			system = append(system, sentPlace)
		case `\draft`, `\drafts`:
			system = append(system, draftsPlace)
			add(`\Draft`)
		case `\starred`:
			add(`\Flagged`)
		case `\important`:
			add("$Important")
		default:
			if strings.HasPrefix(l, `\`) || strings.TrimSpace(l) == "" {
				continue // Gmail's own, and no place: \Muted, \Chats, …
			}
			own = append(own, place{folder: l})
			keywords = append(keywords, labels.Keyword(l))
		}
	}
	slices.SortFunc(own, func(a, b place) int { return strings.Compare(a.folder, b.folder) })
	order := []place{inboxPlace, sentPlace, draftsPlace}
	slices.SortFunc(system, func(a, b place) int { return slices.Index(order, a) - slices.Index(order, b) })
	if bin != nil {
		return []place{*bin}, flags
	}
	var out []place
	switch rule {
	case labelKeywords:
		slices.Sort(keywords)
		for _, k := range keywords {
			add(k)
		}
		out = system[:min(len(system), 1)] // where Gmail shows it
	default:
		for _, p := range append(own, system...) {
			if !slices.ContainsFunc(out, func(q place) bool { return q.folder == p.folder }) {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		out = []place{archivePlace} // in All Mail only: archived
	}
	return out, flags
}

// copyLimit is how large a message with several copies may be to be held
// in memory while each copy is handed on; a larger one is held in a file.
const copyLimit = 1 << 20

// handCopies hands the one message r holds on as each of its copies its:
// read once (in memory, or in a file under dir when it is large), then
// given to each in turn.
func handCopies(its []plugin.Item, r io.Reader, dir string, each func(plugin.Item, io.Reader, error) error) error {
	head, err := io.ReadAll(io.LimitReader(r, copyLimit+1))
	if err != nil {
		return err
	}
	open := func() io.Reader { return bytes.NewReader(head) }
	if len(head) > copyLimit {
		f, err := os.CreateTemp(dir, "mailflow-gmail-copy-*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		n, err := io.Copy(f, io.MultiReader(bytes.NewReader(head), r))
		if err != nil {
			return err
		}
		head = nil
		open = func() io.Reader { return io.NewSectionReader(f, 0, n) }
	}
	for _, it := range its {
		if err := each(it, open(), nil); err != nil {
			return &handError{err}
		}
	}
	return nil
}

// gmailCommit applies on_settled to the copies in items, but to a message
// only with the last of its copies: deleting a message (or flagging it)
// once one copy went would lose the others, which may not have. The
// copies held back are returned, to be committed with the others.
func (s *session) gmailCommit(items []plugin.Item) (now, later []plugin.Item) {
	if s.in.action == "flag" {
		return items, nil // a flag on a message loses no copy of it
	}
	settled := map[ref]int{}
	for _, it := range items {
		settled[it.Ref.(ref)]++
	}
	for _, it := range items {
		if settled[it.Ref.(ref)] < s.gm.copies[it.Ref.(ref)] {
			later = append(later, it)
		} else {
			now = append(now, it)
		}
	}
	return now, later
}

// errGmailFolders: in Gmail's view, the places a listing gives (a label's
// copies, Archive) are not the server's folders, whose states a LIST would
// say; a verification asks each place's state (gmailState) once listed.
var errGmailFolders = errors.New("gmail: the places of Gmail's view are known from a listing")

// gmailState is FolderState in Gmail's view: All Mail's, for every folder,
// since a change anywhere may change any label's folder; with the rule, so
// that a rule changed since a verification is not taken for no change.
func (s *session) gmailState() (string, error) {
	if s.gm.all == "" {
		if err := s.gmailFolders(); err != nil {
			return "", err
		}
	}
	tok, err := s.c.folderState(s.gm.all)
	if tok == "" || err != nil {
		return "", err
	}
	return "gmail-" + string(s.gm.rule) + "." + tok, nil
}
