package imap

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// What the destination holds: the copies in a folder by identity
// (message.Identity), for skip_existing, for a delivery in doubt, and for a
// migration's verification.

// heldCopy is one message in a folder of the destination.
type heldCopy struct {
	validity, uid uint32
}

// folderCopies are the messages of one folder by identity.
type folderCopies struct {
	validity uint32
	uids     map[string][]uint32
}

// heldIndex is what each target folder held when the output first
// delivered to it: identity → the copies not yet matched to a message.
// Each folder has its own lock, so that the folders a pass delivers to are
// read at once, each on a session of its own, rather than one after the
// other while every delivery waits.
type heldIndex struct {
	mu      sync.Mutex
	folders map[string]*heldFolder
}

// heldFolder is one folder's entry: copies is nil until it was read.
// Until then a few messages are looked for one at a time (a UID SEARCH
// each): a later pass brings a few messages to a folder of thousands, and
// reading the thousands' identities for them costs both sides more than
// the searches. A look sees the folder as it is, with the copies this
// output put there since it began looking; those are left to their own
// messages: an APPEND made while looking is waited for (sending, done)
// before the next look for its identity (only a copy of that identity can
// be among what a look finds) or the read, and its copy kept in claimed
// with those the looks took. An identity whose APPEND may or may not have
// stored a copy (in doubt, or no APPENDUID) is never claimed again
// (doubt): a second copy rather than a message without one.
type heldFolder struct {
	mu      sync.Mutex
	done    sync.Cond // signalled, with mu, when an APPEND made while looking ends
	copies  *folderCopies
	looked  int
	held    uint32         // how many messages the last look saw there
	sending map[string]int // looks, and APPENDs made while looking, in flight, by identity
	claimed map[uint32]bool
	doubt   map[string]bool
}

// looksBeforeRead is how many messages are looked for one at a time in a
// folder holding held messages before it is read whole: one for every 32
// it holds, so that the looks never cost more than a small part of the
// read they spare (a look is a command or three; a read is a few hundred
// bytes a message, on both sides).
func looksBeforeRead(held uint32) int { return int(held / 32) }

// errCannotLook says a server cannot name the copies this output appends
// (no UIDPLUS): without that a look could take one of them for a copy
// that was there. The folder is read whole, before any APPEND to it.
var errCannotLook = errors.New("imap: no UIDPLUS, a folder is read whole")

// folder returns folder's entry, made empty the first time.
func (h *heldIndex) folder(folder string) *heldFolder {
	h.mu.Lock()
	defer h.mu.Unlock()
	hf, ok := h.folders[folder]
	if !ok {
		if h.folders == nil {
			h.folders = map[string]*heldFolder{}
		}
		hf = &heldFolder{}
		hf.done.L = &hf.mu
		h.folders[folder] = hf
	}
	return hf
}

// take reports whether folder holds a copy of identity that no message
// delivered before has claimed (siblings: those the ledger has as
// delivered, whose copies are among those the folder holds), and claims
// it, saying which in at; read lists the folder the first time (again
// after a failed read). look, where given, looks for the copies of this
// identity alone, saying also how many messages the folder holds: used
// instead of read while the folder was not read and looksBeforeRead
// allows. When take answers no while looking, the caller's APPEND is one
// the next look must not see as a copy that was there: it calls sent with
// the UID it got (0: none), sure false when the APPEND may have stored a
// copy it cannot name; sent is nil otherwise. With same (not nil), only a
// copy same says holds the message's bytes is claimed: two messages may
// share an identity (no Message-ID, the same Date, From, Subject and
// size), and after a kill the copy of one whose APPEND was in doubt must
// not be taken for the other, which would then never be sent.
func (h *heldIndex) take(folder, identity string, siblings int, read func() (*folderCopies, error), look func() (uint32, uint32, []uint32, error), same func(uid uint32) (bool, error), at *heldCopy) (there bool, sent func(uid uint32, sure bool), err error) {
	hf := h.folder(folder)
	hf.mu.Lock()
	defer hf.mu.Unlock()
	// Looks for other identities go on at once, each on a session of its
	// own; one for this identity waits for what is in flight of it.
	// The first look says how many the folder holds: the others wait for
	// it.
	for hf.copies == nil && look != nil && (hf.sending[identity] > 0 || hf.looked > 0 && hf.held == 0 && len(hf.sending) > 0) {
		hf.done.Wait() // lets go of hf.mu: the folder may be read meanwhile
	}
	if hf.doubt[identity] {
		return false, nil, nil
	}
	if hf.copies == nil && look != nil && (hf.looked == 0 || hf.looked < looksBeforeRead(hf.held)) {
		hf.looked++
		hf.busy(identity, +1)
		hf.mu.Unlock()
		validity, held, uids, err := look()
		hf.mu.Lock()
		if held > 0 && hf.held == 0 {
			hf.held = held
			hf.done.Broadcast()
		}
		switch {
		case errors.Is(err, errCannotLook):
			hf.busy(identity, -1)
		case err != nil:
			hf.busy(identity, -1)
			return false, nil, err
		case held == 0 && hf.copies == nil:
			// Empty (or not there): nothing to look for, now or later.
			hf.busy(identity, -1)
			hf.copies = &folderCopies{validity: validity, uids: map[string][]uint32{}}
		default:
			uids = slices.DeleteFunc(uids, func(uid uint32) bool { return hf.claimed[uid] })
			idx := &folderCopies{validity: validity, uids: map[string][]uint32{identity: uids}}
			ok, err := claim(idx, identity, siblings, same, at)
			if ok {
				hf.claim(at.uid)
			}
			if ok || err != nil {
				hf.busy(identity, -1)
				return ok, nil, err
			}
			// Still busy: this identity's APPEND is now in flight.
			return false, func(uid uint32, sure bool) { hf.sent(identity, uid, sure) }, nil
		}
	}
	for hf.copies == nil && len(hf.sending) > 0 {
		hf.done.Wait()
	}
	if hf.doubt[identity] {
		return false, nil, nil
	}
	if hf.copies == nil {
		idx, err := read()
		if err != nil {
			return false, nil, err
		}
		for id, uids := range idx.uids {
			idx.uids[id] = slices.DeleteFunc(uids, func(uid uint32) bool { return hf.claimed[uid] })
		}
		hf.copies = idx
	}
	ok, err := claim(hf.copies, identity, siblings, same, at)
	return ok, nil, err
}

// claim marks uid as taken; hf.mu is held.
func (hf *heldFolder) claim(uid uint32) {
	if hf.claimed == nil {
		hf.claimed = map[uint32]bool{}
	}
	hf.claimed[uid] = true
}

// busy counts a look or an APPEND of identity in flight (n +1), or its end
// (n -1, waking those that wait for it); hf.mu is held.
func (hf *heldFolder) busy(identity string, n int) {
	if hf.sending == nil {
		hf.sending = map[string]int{}
	}
	if hf.sending[identity] += n; hf.sending[identity] <= 0 {
		delete(hf.sending, identity)
		hf.done.Broadcast()
	}
}

// sent ends an APPEND of identity made while looking (see take).
func (hf *heldFolder) sent(identity string, uid uint32, sure bool) {
	hf.mu.Lock()
	defer hf.mu.Unlock()
	hf.busy(identity, -1)
	switch {
	case uid != 0:
		hf.claim(uid)
	case !sure:
		if hf.doubt == nil {
			hf.doubt = map[string]bool{}
		}
		hf.doubt[identity] = true
	}
}

// claim takes from idx a copy of identity, beyond the siblings' (see
// take), and says which in at.
func claim(idx *folderCopies, identity string, siblings int, same func(uid uint32) (bool, error), at *heldCopy) (bool, error) {
	uids := idx.uids[identity]
	if len(uids)-siblings <= 0 {
		return false, nil
	}
	for i := len(uids) - 1; i >= 0; i-- {
		if same != nil {
			ok, err := same(uids[i])
			if err != nil {
				return false, err
			}
			if !ok {
				continue
			}
		}
		*at = heldCopy{validity: idx.validity, uid: uids[i]}
		idx.uids[identity] = slices.Delete(uids, i, i+1)
		return true, nil
	}
	return false, nil
}

// missing reports whether err is the server saying that a folder does not
// exist (a NO to SELECT or STATUS): it holds nothing.
func missing(err error) bool {
	var ie *goimap.Error
	return errors.As(err, &ie) && ie.Type == goimap.StatusResponseTypeNo
}

// inventory selects folder read-only and lists every message with its
// identity; a folder that does not exist holds nothing.
func (c *conn) inventory(folder string) (uint32, []msgInfo, error) {
	validity, n, err := c.examine(folder, false)
	if err != nil {
		if missing(err) {
			return 0, nil, nil
		}
		return 0, nil, err
	}
	if n == 0 {
		return validity, nil, nil
	}
	infos, err := c.identify(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}})
	return validity, infos, err
}

// identities counts the messages of folder by identity (message.Identity);
// a folder that does not exist holds nothing.
func (c *conn) identities(folder string) (map[string]int, error) {
	_, infos, err := c.inventory(folder)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(infos))
	for _, m := range infos {
		out[m.Identity]++
	}
	return out, nil
}

// copies lists the messages of folder by identity, with their UIDs.
func (c *conn) copies(folder string) (*folderCopies, error) {
	validity, infos, err := c.inventory(folder)
	if err != nil {
		return nil, err
	}
	fc := &folderCopies{validity: validity, uids: make(map[string][]uint32, len(infos))}
	for _, m := range infos {
		fc.uids[m.Identity] = append(fc.uids[m.Identity], m.UID)
	}
	return fc, nil
}

// flagsByIdentity lists the flags of each copy in folder by identity,
// sorted, without \Recent (which no client sets).
func (c *conn) flagsByIdentity(folder string) (map[string][][]string, error) {
	_, infos, err := c.inventory(folder)
	if err != nil {
		return nil, err
	}
	return flagsOf(infos), nil
}

// flagsOf is flagsByIdentity of the messages infos.
func flagsOf(infos []msgInfo) map[string][][]string {
	out := make(map[string][][]string, len(infos))
	for _, m := range infos {
		fl := slices.DeleteFunc(slices.Clone(m.Flags), func(f string) bool { return f == `\Recent` })
		slices.Sort(fl)
		if fl == nil {
			fl = []string{}
		}
		out[m.Identity] = append(out[m.Identity], fl)
	}
	return out
}

// find looks in folder for a copy of the message with this identity, by
// its Message-ID (id) where it has one, else among the messages of its
// size (every message when size is -1, not known); the zero heldCopy when
// there is none. SEARCH HEADER matches substrings, so each candidate's
// identity is compared whole. An identity may name two messages (a
// Message-ID used twice; two messages without a header, of one size):
// when content is given, a candidate must also hold those bytes (line ends
// aside, which a server may change), so that a message in doubt is never
// taken for another and lost.
func (c *conn) find(folder, id, identity string, size int64, content func() io.Reader) (heldCopy, error) {
	validity, _, same, err := c.copiesOf(folder, id, identity, size)
	if err != nil || len(same) == 0 {
		return heldCopy{}, err
	}
	if content == nil {
		return heldCopy{validity: validity, uid: same[0]}, nil
	}
	want, err := crlfDigest(content())
	if err != nil {
		return heldCopy{}, err
	}
	var found uint32
	err = c.fetch(same, func(uid uint32, r io.Reader) error {
		got, err := crlfDigest(r)
		if err != nil {
			return err
		}
		if found == 0 && got == want {
			found = uid
		}
		return nil
	})
	if err != nil || found == 0 {
		return heldCopy{}, err
	}
	return heldCopy{validity: validity, uid: found}, nil
}

// copiesOf lists the UIDs of the copies of identity in folder, found as
// find finds them, with the folder's UIDVALIDITY and how many messages it
// holds (0 for a folder that does not exist).
func (c *conn) copiesOf(folder, id, identity string, size int64) (validity, held uint32, uids []uint32, err error) {
	criteria := &goimap.SearchCriteria{} // ALL
	switch {
	case id != "":
		criteria.Header = []goimap.SearchCriteriaHeaderField{{Key: "Message-Id", Value: id}}
	case size >= 0:
		criteria.Larger, criteria.Smaller = size-1, size+1
	}
	var found []uint32
	var serr error
	if v, n, ok := c.selected(folder); ok {
		// Selected already (the look before, or the APPEND's folder
		// after it): the server shows its changes with the SEARCH's
		// answer, and an EXAMINE again was half of each look.
		found, serr = c.searched(c.c.UIDSearch(criteria, nil))
		validity, held = v, n
	} else {
		// The SEARCH goes with the EXAMINE (selectThen): one round trip
		// a look, not two.
		var cmd *imapclient.SearchCommand
		data, err := c.selectThen(folder, &goimap.SelectOptions{ReadOnly: true}, func() { cmd = c.c.UIDSearch(criteria, nil) })
		found, serr = c.searched(cmd)
		if err != nil {
			if missing(err) {
				err = nil
			}
			return 0, 0, nil, err
		}
		validity, held = data.UIDValidity, data.NumMessages
	}
	if held == 0 {
		return validity, 0, nil, nil
	}
	if serr != nil || len(found) == 0 {
		return validity, held, nil, serr
	}
	infos, err := c.identify(uidSet(found))
	if err != nil {
		return validity, held, nil, err
	}
	for _, m := range infos {
		if m.Identity == identity {
			uids = append(uids, m.UID)
		}
	}
	return validity, held, uids, nil
}

// searched takes in the answer to a UID SEARCH in the selected folder.
func (c *conn) searched(cmd *imapclient.SearchCommand) ([]uint32, error) {
	defer c.wd.begin()()
	data, err := cmd.Wait()
	if err != nil {
		return nil, fmt.Errorf("imap SEARCH: %w", err)
	}
	var out []uint32
	for _, u := range data.AllUIDs() {
		out = append(out, uint32(u))
	}
	return out, nil
}

// crlfDigest is the SHA-256 of r's bytes with every line ending in CRLF.
func crlfDigest(r io.Reader) ([32]byte, error) {
	h := sha256.New()
	buf := make([]byte, 32<<10)
	var prev byte
	for {
		n, err := r.Read(buf)
		start := 0
		for i := 0; i < n; i++ {
			if buf[i] == '\n' && (i > 0 && buf[i-1] != '\r' || i == 0 && prev != '\r') {
				h.Write(buf[start:i])
				h.Write([]byte("\r"))
				start = i
			}
		}
		h.Write(buf[start:n])
		if n > 0 {
			prev = buf[n-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return [32]byte{}, err
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// holdsBytes reports whether the copy at uid in folder holds body's bytes,
// line ends aside (a server may change them).
func (o *Output) holdsBytes(ctx context.Context, folder string, uid uint32, body func() io.Reader) (bool, error) {
	want, err := crlfDigest(body())
	if err != nil {
		return false, err
	}
	var got [32]byte
	err = o.use(ctx, func(c *conn) error {
		if _, _, err := c.examine(folder, false); err != nil {
			return err
		}
		return c.fetch([]uint32{uid}, func(_ uint32, r io.Reader) (err error) {
			got, err = crlfDigest(r)
			return err
		})
	})
	return err == nil && got == want, err
}
