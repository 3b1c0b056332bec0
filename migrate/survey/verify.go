package survey

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// FolderCheck is what a verification found for one source folder.
type FolderCheck struct {
	Folder string `json:"folder"`
	Source int    `json:"source"` // messages at the source
	Found  int    `json:"found"`  // of those, found at the destination
	// Made counts the found and missing messages that have no Message-ID
	// and were named by a digest of Date, From, Subject and size instead.
	Made int `json:"without_message_id"`
	// Unnamed counts messages the source could not name (no identity in
	// its listing, no header to peek at): counted, not checked.
	Unnamed int      `json:"not_checked"`
	Missing []string `json:"missing,omitempty"` // identities at the source and not at the destination
	// FlagsDiffer are identities found at the destination with other
	// flags or keywords than at the source (where the destination can say
	// its flags: plugin.FlagFinder).
	FlagsDiffer []string `json:"flags_differ,omitempty"`
	// FlagsNotCompared is set when the destination cannot say its flags
	// (an SMTP server): FlagsDiffer is then empty for want of a look, not
	// because they agree.
	FlagsNotCompared bool `json:"flags_not_compared,omitempty"`
	// Unchanged is set when neither side changed since a verification
	// found them equal (plugin.FolderStater): counted, not read again.
	Unchanged bool `json:"unchanged,omitempty"`
	// ReadChanged is set when only what changed on either side since a
	// verification found them equal was read (plugin.FolderChangeNamer):
	// the source's messages that came or changed, this many, each with
	// its copy. Made counts among those only.
	ReadChanged int `json:"read_changed,omitempty"`
}

// Clean reports whether the folder checked out: nothing missing, no flags
// different.
func (c FolderCheck) Clean() bool { return len(c.Missing) == 0 && len(c.FlagsDiffer) == 0 }

// Tokens are, per source folder, the state tokens of both sides
// (plugin.FolderStater) when a verification last found the folder clean.
type Tokens map[string]FolderTokens

// FolderTokens are one folder's state tokens, at the source and at the
// destination.
type FolderTokens struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// Messages is how many the verification that found the folder clean
	// checked: what it holds while the tokens hold.
	Messages int `json:"messages,omitempty"`
	// Held is how many the source said the folder held then
	// (plugin.Folder's Messages: with those its listing leaves out, such
	// as messages marked \Deleted), so that a later check by changes
	// counts as a whole read would.
	Held int `json:"held,omitempty"`
}

// holds reports whether both sides' tokens are known and those of was.
func (t FolderTokens) holds(was FolderTokens) bool {
	return t.Source != "" && t.Destination != "" && t.Source == was.Source && t.Destination == was.Destination
}

// Verify checks that every message the input's source holds is at the
// output, folder by folder, by identity (message.Identity), and with the
// same flags where the output can say its flags: for migrations, after the
// run. The output must be a plugin.Finder.
func Verify(ctx context.Context, e *engine.Engine, input, output string) ([]FolderCheck, error) {
	checks, _, err := VerifySince(ctx, e, input, output, nil)
	return checks, err
}

// VerifySince is Verify that passes over a folder whose state tokens on
// both sides are those known from a verification that found it clean:
// nothing changed there since. It returns the tokens of every folder it
// finds clean now, to pass to the next one.
func VerifySince(ctx context.Context, e *engine.Engine, input, output string, known Tokens) ([]FolderCheck, Tokens, error) {
	return VerifySurveyed(ctx, e, input, output, known, nil)
}

// VerifySurveyed is VerifySince that first asks the destination alone
// where surveyed, the folders a survey of this run listed
// (plugin.Listing.Folders), says how the source stood: when neither side
// changed in any folder since known, the answer needs no session of the
// source (on a mailbox that changed nowhere, that session was most of a
// pass). The source's tokens are then those of before the run moved
// anything, never later than the ones VerifySince would take: a change
// made at the source since shows in the next verification's.
func VerifySurveyed(ctx context.Context, e *engine.Engine, input, output string, known Tokens, surveyed []plugin.Folder) ([]FolderCheck, Tokens, error) {
	oc := e.Config().Output(output)
	if oc == nil {
		return nil, nil, fmt.Errorf("no output %q", output)
	}
	finder, ok := oc.Plugin.(plugin.Finder)
	if !ok {
		return nil, nil, fmt.Errorf("output %q cannot say what it holds", output)
	}
	if sourceUnchanged(surveyed, known) {
		if checks, clean, ok := allUnchanged(statesOf(ctx, surveyed, finder), known); ok {
			return checks, clean, nil
		}
	}
	var checks []FolderCheck
	clean := Tokens{}
	err := e.LookUnlisted(ctx, input, func(sess plugin.Session) error {
		// The tokens are taken before anything is read, so that a change
		// made while a folder is checked shows in the next ones; where
		// both sides can say them all at once (plugin.FolderLister,
		// plugin.FolderStatesFinder), a mailbox that changed nowhere costs
		// a command a side, and no listing.
		now, whole := folderStates(ctx, sess, finder)
		if whole && len(known) > 0 {
			if same, tokens, ok := allUnchanged(now, known); ok {
				checks, clean = same, tokens
				return nil
			}
		}
		if nl, ok := sess.(plugin.FolderNamer); ok && whole {
			named, err := checkNamed(ctx, sess, nl, finder, now, known, clean)
			checks = named
			if err != nil {
				return fmt.Errorf("output %q, %w", output, err)
			}
			return nil
		}
		listing, err := sess.List(ctx)
		if err != nil {
			return err
		}
		// Each folder's messages are copied when it is checked (naming them
		// fills in their Identity), not all at once: one folder's copy at a
		// time, not the listing's.
		by := map[string][]int{}
		role := map[string]string{}
		for i, it := range listing.Items {
			by[it.Folder] = append(by[it.Folder], i)
			role[it.Folder] = it.FolderRole
		}
		for _, f := range sortedKeys(by) {
			at, ok := now[f]
			if !ok {
				at.tok = FolderTokens{Source: folderState(ctx, sess, f, role[f]), Destination: folderState(ctx, finder, f, role[f])}
			}
			tok := FolderTokens{Source: at.tok.Source, Destination: at.tok.Destination, Messages: len(by[f])}
			if tok.holds(known[f]) {
				checks = append(checks, FolderCheck{Folder: f, Source: len(by[f]), Found: len(by[f]), Unchanged: true})
				clean[f] = tok
				continue
			}
			items := make([]plugin.Item, len(by[f]))
			for j, i := range by[f] {
				items[j] = listing.Items[i]
			}
			c, err := checkFolder(ctx, sess, finder, f, role[f], items)
			if err != nil {
				return fmt.Errorf("output %q, folder %q: %w", output, f, err)
			}
			if c.Clean() && tok.Source != "" && tok.Destination != "" {
				clean[f] = tok
			}
			checks = append(checks, c)
		}
		return nil
	})
	return checks, clean, err
}

// sourceUnchanged reports whether the source's folders that hold
// messages, as surveyed, all have the tokens known: only then may the
// destination's alone tell that nothing needs reading.
func sourceUnchanged(surveyed []plugin.Folder, known Tokens) bool {
	held := false
	for _, f := range surveyed {
		if f.Messages == 0 {
			continue
		}
		if f.State == "" || f.State != known[f.Name].Source {
			return false
		}
		held = true
	}
	return held
}

// allUnchanged returns the checks and tokens of every folder of now that
// holds messages, when each one's tokens are those known: not ok when one
// changed since (or none holds any).
func allUnchanged(now map[string]folderAt, known Tokens) ([]FolderCheck, Tokens, bool) {
	var same []FolderCheck
	clean := Tokens{}
	for _, f := range sortedKeys(now) {
		at := now[f]
		if at.messages == 0 {
			continue // nothing to check, as a listing would list nothing there
		}
		if !at.tok.holds(known[f]) {
			return nil, nil, false
		}
		c, tok := unchanged(f, at, known[f])
		same = append(same, c)
		clean[f] = tok
	}
	return same, clean, same != nil
}

// unchanged is the check of folder f, whose tokens are those of was (a
// verification found it clean): as many messages as it counted then
// (else as the source says it holds now), all found, none read.
func unchanged(f string, at folderAt, was FolderTokens) (FolderCheck, FolderTokens) {
	n := was.Messages
	if n == 0 {
		n = at.messages
	}
	return FolderCheck{Folder: f, Source: n, Found: n, Unchanged: true},
		FolderTokens{Source: at.tok.Source, Destination: at.tok.Destination, Messages: n, Held: at.messages}
}

// checkNamed checks the folders of now that changed on either side
// since known, each read on its own with its messages' identities
// (plugin.FolderNamer): no listing of the whole source, and no second
// command for the identities. The tokens of the folders found clean go
// into clean.
func checkNamed(ctx context.Context, sess plugin.Session, nl plugin.FolderNamer, finder plugin.Finder, now map[string]folderAt, known, clean Tokens) ([]FolderCheck, error) {
	var checks []FolderCheck
	for _, f := range sortedKeys(now) {
		at := now[f]
		if at.messages == 0 {
			continue
		}
		if at.tok.holds(known[f]) {
			c, tok := unchanged(f, at, known[f])
			checks = append(checks, c)
			clean[f] = tok
			continue
		}
		if c, ok, err := checkSince(ctx, sess, finder, f, at, known[f]); err != nil {
			return checks, fmt.Errorf("folder %q: %w", f, err)
		} else if ok {
			checks = append(checks, c)
			clean[f] = FolderTokens{Source: at.tok.Source, Destination: at.tok.Destination, Messages: c.Source, Held: at.messages}
			continue
		}
		items, err := nl.ListNamed(ctx, f)
		if err != nil {
			return checks, fmt.Errorf("folder %q: %w", f, err)
		}
		if len(items) == 0 {
			continue // as a listing would list nothing there
		}
		role := items[0].FolderRole
		c, err := checkFolder(ctx, sess, finder, f, role, items)
		if err != nil {
			return checks, fmt.Errorf("folder %q: %w", f, err)
		}
		if c.Clean() && at.tok.Source != "" && at.tok.Destination != "" {
			clean[f] = FolderTokens{Source: at.tok.Source, Destination: at.tok.Destination, Messages: len(items), Held: at.messages}
		}
		checks = append(checks, c)
	}
	return checks, nil
}

// checkSince checks folder f, which stands at at and was found clean at
// was, by what changed on either side since (plugin.FolderChangeNamer,
// plugin.FlagFinderSince): after a pass, every message that came to the
// source must meet a copy that came to the destination, and every one
// whose flags changed a copy that was there and changed, with its flags;
// nothing else may have changed at the destination. Each side matched by
// identity as checkFolder matches, so this finds what a whole read would.
// ok is false, and the folder is to be read whole, when a side cannot say
// its changes soundly (a message left, another folder life), a changed
// message has no identity or no such copy, or a copy changed that no
// change at the source explains (a change made at the destination alone,
// which the whole read reports).
func checkSince(ctx context.Context, sess plugin.Session, finder plugin.Finder, f string, at folderAt, was FolderTokens) (FolderCheck, bool, error) {
	src, ok := sess.(plugin.FolderChangeNamer)
	dst, ok2 := finder.(plugin.FlagFinderSince)
	if !ok || !ok2 || was.Source == "" || was.Destination == "" || at.messages < 0 {
		return FolderCheck{}, false, nil
	}
	var (
		copiesCame, copiesChanged map[string][][]string
		dstOK                     bool
		dstErr                    error
		read                      = make(chan struct{})
	)
	go func() { // both sides at once, as checkFolder reads them
		defer close(read)
		copiesCame, copiesChanged, dstOK, dstErr = dst.HoldsFlagsSince(ctx, f, at.role, was.Destination)
	}()
	came, changed, srcOK, srcErr := src.ListNamedSince(ctx, f, was.Source)
	<-read
	if err := errors.Join(srcErr, dstErr); err != nil || !srcOK || !dstOK {
		return FolderCheck{}, false, err
	}
	// No message left either side since (else not ok): what the folder
	// holds now is what was checked then and what came.
	n := at.messages
	if was.Held > 0 {
		n = was.Messages + at.messages - was.Held
	}
	c := FolderCheck{Folder: f, Source: n, Found: n, ReadChanged: len(came) + len(changed)}
	for _, side := range []struct {
		items  []plugin.Item
		copies map[string][][]string
	}{{came, copiesCame}, {changed, copiesChanged}} {
		left := 0
		for _, fl := range side.copies {
			left += len(fl)
		}
		for _, it := range side.items {
			if it.Identity == "" {
				return FolderCheck{}, false, nil
			}
			if strings.HasSuffix(it.Identity, "@"+message.IdentityDomain) {
				c.Made++
			}
			there := side.copies[it.Identity]
			i := slices.IndexFunc(there, func(fl []string) bool { return sameFlags(fl, it.Flags) })
			if i < 0 {
				return FolderCheck{}, false, nil
			}
			side.copies[it.Identity] = slices.Delete(there, i, i+1)
			left--
		}
		if left != 0 {
			return FolderCheck{}, false, nil
		}
	}
	return c, true, nil
}

// folderAt is a source folder's tokens, and how many messages it holds
// (-1: not known).
type folderAt struct {
	tok      FolderTokens
	messages int
	role     string // its SPECIAL-USE, as plugin.Folder's
}

// folderStates asks the source for its folders with their tokens
// (plugin.FolderLister), and the destination for the tokens of where each
// folder's mail goes, in one go where it can (plugin.FolderStatesFinder).
// whole is false when the source cannot list them so: the tokens are then
// asked folder by folder, once the listing named the folders.
func folderStates(ctx context.Context, sess plugin.Session, finder plugin.Finder) (map[string]folderAt, bool) {
	fl, ok := sess.(plugin.FolderLister)
	if !ok {
		return nil, false
	}
	folders, err := fl.Folders(ctx)
	if err != nil {
		return nil, false
	}
	return statesOf(ctx, folders, finder), true
}

// statesOf is folderStates of the source's folders as listed: the
// destination is asked for its tokens.
func statesOf(ctx context.Context, folders []plugin.Folder, finder plugin.Finder) map[string]folderAt {
	folders = slices.DeleteFunc(slices.Clone(folders), func(f plugin.Folder) bool { return f.Messages == 0 })
	var dst []string
	var err error
	if fs, ok := finder.(plugin.FolderStatesFinder); ok {
		if dst, err = fs.FolderStates(ctx, folders); err != nil || len(dst) != len(folders) {
			dst = nil
		}
	}
	now := make(map[string]folderAt, len(folders))
	for i, f := range folders {
		at := folderAt{tok: FolderTokens{Source: f.State}, messages: f.Messages, role: f.Role}
		if dst != nil {
			at.tok.Destination = dst[i]
		} else {
			at.tok.Destination = folderState(ctx, finder, f.Name, f.Role)
		}
		now[f.Name] = at
	}
	return now
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func folderState(ctx context.Context, side any, folder, role string) string {
	fs, ok := side.(plugin.FolderStater)
	if !ok {
		return ""
	}
	tok, err := fs.FolderState(ctx, folder, role)
	if err != nil {
		return ""
	}
	return tok
}

// checkFolder names the folder's messages and looks for each at the
// destination.
func checkFolder(ctx context.Context, sess plugin.Session, finder plugin.Finder, folder, role string, items []plugin.Item) (FolderCheck, error) {
	c := FolderCheck{Folder: folder, Source: len(items)}
	// The two sides are read at once: two servers (or two sessions), and
	// over a distance each read is mostly waiting.
	copies := map[string][][]string{} // identity → flags of each copy (nil flags: not known)
	var heldErr error
	read := make(chan struct{})
	go func() {
		defer close(read)
		if ff, ok := finder.(plugin.FlagFinder); ok {
			copies, heldErr = ff.HoldsFlags(ctx, folder, role)
			return
		}
		c.FlagsNotCompared = true
		held, err := finder.Holds(ctx, folder, role)
		for id, n := range held {
			copies[id] = make([][]string, n)
		}
		heldErr = err
	}()
	nameErr := name(ctx, sess, items)
	<-read
	if err := errors.Join(nameErr, heldErr); err != nil {
		return c, err
	}
	for _, it := range items {
		if it.Identity == "" {
			c.Unnamed++
			continue
		}
		if strings.HasSuffix(it.Identity, "@"+message.IdentityDomain) {
			c.Made++
		}
		there := copies[it.Identity]
		if len(there) == 0 {
			c.Missing = append(c.Missing, it.Identity)
			continue
		}
		c.Found++
		// The copy whose flags match, else the first: each copy is
		// matched to one message.
		at := slices.IndexFunc(there, func(f []string) bool { return f == nil || sameFlags(f, it.Flags) })
		if at < 0 {
			c.FlagsDiffer = append(c.FlagsDiffer, it.Identity)
			at = 0
		}
		copies[it.Identity] = slices.Delete(there, at, at+1)
	}
	return c, nil
}

// name fills in the identity of items that have none, from the session
// (plugin.Identifier), else from their headers (plugin.HeaderPeeker).
func name(ctx context.Context, sess plugin.Session, items []plugin.Item) error {
	var unnamed []int // those a FolderNamer's listing did not name
	for i, it := range items {
		if it.Identity == "" {
			unnamed = append(unnamed, i)
		}
	}
	if len(unnamed) == 0 {
		return nil
	}
	if id, ok := sess.(plugin.Identifier); ok {
		some := make([]plugin.Item, len(unnamed))
		for j, i := range unnamed {
			some[j] = items[i]
		}
		if err := id.Identify(ctx, some); err != nil {
			return err
		}
		for j, i := range unnamed {
			items[i] = some[j]
		}
	}
	peek, ok := sess.(plugin.HeaderPeeker)
	if !ok {
		return nil
	}
	for i, it := range items {
		if it.Identity != "" {
			continue
		}
		h, err := peek.PeekHeader(ctx, it)
		if err != nil {
			return err
		}
		items[i].Identity = message.HeaderIdentity(h, it.Size)
	}
	return nil
}

// sameFlags compares two sets of flags case-insensitively, leaving out
// \Recent (a session's, never stored). Keywords are compared without case
// too: IMAP atoms are, and servers differ in the case they give back
// (go-imap's lowers every flag; Gmail's labels are case-insensitive).
func sameFlags(a, b []string) bool {
	norm := func(fs []string) []string {
		var out []string
		for _, f := range fs {
			f = strings.ToLower(f)
			if f != `\recent` {
				out = append(out, f)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}
