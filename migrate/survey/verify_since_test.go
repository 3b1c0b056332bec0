package survey_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/migrate/survey"
)

// modBox is one side of a migration whose folders keep modification
// sequences, as CONDSTORE's: every change gives a message the next one,
// a folder's token is its highest, and either side can say what changed
// since a token. lost marks a folder that lost a message (what a count
// check shows), where a change list is not the whole story.
type modBox struct {
	mu     sync.Mutex
	mod    int
	items  []modItem
	lost   map[string]bool
	whole  []string // folders read whole
	since  []string // folders read by their changes
	opened int      // sessions opened
}

type modItem struct {
	plugin.Item
	born, mod int
}

func (b *modBox) add(folder, id string, flags ...string) { b.addAs(folder, id, id, flags...) }

// addAs adds a message whose identity may be another's.
func (b *modBox) addAs(folder, id, identity string, flags ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mod++
	b.items = append(b.items, modItem{plugin.Item{ID: id, Folder: folder, Size: 10, Identity: identity, Flags: flags}, b.mod, b.mod})
}

func (b *modBox) flag(id string, flags ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mod++
	for i := range b.items {
		if b.items[i].ID == id {
			b.items[i].Flags, b.items[i].mod = flags, b.mod
		}
	}
}

func (b *modBox) remove(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items = slices.DeleteFunc(b.items, func(it modItem) bool { return it.Identity == id })
	b.lost[id[:1]] = true // identities begin with their folder's name
}

func (b *modBox) token(folder string) string {
	n, top := 0, 0
	for _, it := range b.items {
		if it.Folder == folder {
			n++
			top = max(top, it.mod)
		}
	}
	return fmt.Sprintf("%d", top*1000+n)
}

// changed lists folder's items that came and those changed since the
// token since, or not ok.
func (b *modBox) changed(folder, since string) (came, changed []plugin.Item, ok bool) {
	tok, err := strconv.Atoi(since)
	if err != nil || b.lost[folder] {
		return nil, nil, false
	}
	b.since = append(b.since, folder)
	for _, it := range b.items {
		switch {
		case it.Folder != folder || it.mod <= tok/1000:
		case it.born > tok/1000:
			came = append(came, it.Item)
		default:
			changed = append(changed, it.Item)
		}
	}
	return came, changed, true
}

func (b *modBox) Open(context.Context) (plugin.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opened++
	return modSession{b}, nil
}

type modSession struct{ b *modBox }

func (s modSession) List(context.Context) (plugin.Listing, error) {
	return plugin.Listing{}, fmt.Errorf("a source that names its folders is never listed whole")
}
func (s modSession) Fetch(context.Context, []plugin.Item, func(plugin.Item, io.Reader, error) error) error {
	return nil
}
func (s modSession) Commit(context.Context, []plugin.Item) ([]plugin.Item, error) { return nil, nil }
func (s modSession) Close(context.Context) error                                  { return nil }
func (s modSession) FolderState(_ context.Context, folder, _ string) (string, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.b.token(folder), nil
}

func (s modSession) Folders(context.Context) ([]plugin.Folder, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	var out []plugin.Folder
	for _, f := range []string{"A", "B"} {
		n := 0
		for _, it := range s.b.items {
			if it.Folder == f {
				n++
			}
		}
		out = append(out, plugin.Folder{Name: f, State: s.b.token(f), Messages: n})
	}
	return out, nil
}

func (s modSession) ListNamed(_ context.Context, folder string) ([]plugin.Item, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.whole = append(s.b.whole, folder)
	var out []plugin.Item
	for _, it := range s.b.items {
		if it.Folder == folder {
			out = append(out, it.Item)
		}
	}
	return out, nil
}

func (s modSession) ListNamedSince(_ context.Context, folder, since string) ([]plugin.Item, []plugin.Item, bool, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	came, changed, ok := s.b.changed(folder, since)
	return came, changed, ok, nil
}

// modDest is the destination side.
type modDest struct{ *modBox }

func (d modDest) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	return nil, nil
}

func (d modDest) Holds(context.Context, string, string) (map[string]int, error) {
	return nil, fmt.Errorf("not asked: HoldsFlags is")
}

func (d modDest) HoldsFlags(_ context.Context, folder, _ string) (map[string][][]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.whole = append(d.whole, folder)
	out := map[string][][]string{}
	for _, it := range d.items {
		if it.Folder == folder {
			out[it.Identity] = append(out[it.Identity], append([]string{}, it.Flags...)) // known: never nil
		}
	}
	return out, nil
}

func (d modDest) HoldsFlagsSince(_ context.Context, folder, _, since string) (map[string][][]string, map[string][][]string, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	came, changed, ok := d.changed(folder, since)
	if !ok {
		return nil, nil, false, nil
	}
	flags := func(items []plugin.Item) map[string][][]string {
		out := map[string][][]string{}
		for _, it := range items {
			out[it.Identity] = append(out[it.Identity], append([]string{}, it.Flags...)) // known: never nil
		}
		return out
	}
	return flags(came), flags(changed), true, nil
}

func (d modDest) FolderState(_ context.Context, folder, _ string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.token(folder), nil
}

// sixEqual is a source and a destination holding the same six messages,
// three in each of folders A and B, and an engine between them.
func sixEqual(t *testing.T) (*modBox, modDest, *engine.Engine) {
	src := &modBox{lost: map[string]bool{}}
	dst := modDest{&modBox{lost: map[string]bool{}}}
	for i := range 6 {
		f := []string{"A", "B"}[i%2]
		id := fmt.Sprintf("%s%d@x", f, i)
		src.add(f, id)
		dst.add(f, id)
	}
	return src, dst, verifyEngine(t, src, dst)
}

// After a pass that changed a few messages, a verification reads only
// those on both sides, each matched to a copy that changed with it; what
// it cannot account for so (a copy changed at the destination alone, a
// change at the source not carried, a message gone) it reads whole, and
// reports.
func TestVerifyReadsOnlyWhatChangedSinceItFoundTheFolderEqual(t *testing.T) {
	src, dst, e := sixEqual(t)
	ctx := context.Background()
	verify := func(known survey.Tokens) ([]survey.FolderCheck, survey.Tokens) {
		t.Helper()
		src.whole, src.since, dst.whole, dst.since = nil, nil, nil, nil
		checks, known, err := survey.VerifySince(ctx, e, "old", "new", known)
		if err != nil || len(checks) != 2 {
			t.Fatalf("checks %+v, %v", checks, err)
		}
		return checks, known
	}
	_, known := verify(nil)
	if len(known) != 2 {
		t.Fatalf("first verification: tokens %+v", known)
	}

	// A pass: a flag at the source carried, a new message copied.
	src.flag("A0@x", `\Flagged`)
	dst.flag("A0@x", `\Flagged`)
	src.add("A", "A6@x", `\Seen`)
	dst.add("A", "A6@x", `\Seen`)
	checks, known := verify(known)
	a, b := checks[0], checks[1]
	if !a.Clean() || a.ReadChanged != 2 || a.Source != 4 || a.Found != 4 || !b.Unchanged {
		t.Fatalf("after a pass: %+v", checks)
	}
	if src.whole != nil || dst.whole != nil || fmt.Sprint(src.since, dst.since) != "[A] [A]" || len(known) != 2 {
		t.Fatalf("after a pass, read whole %v %v, by changes %v %v; tokens %+v", src.whole, dst.whole, src.since, dst.since, known)
	}

	// A flag changed at the destination alone: no change at the source
	// explains it, so the folder is read and the difference reported.
	dst.flag("B1@x", `\Deleted`)
	checks, known = verify(known)
	if b := checks[1]; b.Clean() || fmt.Sprint(b.FlagsDiffer) != "[B1@x]" || b.ReadChanged != 0 || fmt.Sprint(src.whole) != "[B]" {
		t.Fatalf("changed at the destination: %+v, read whole %v", checks, src.whole)
	}
	if _, ok := known["B"]; ok {
		t.Fatalf("B differs and must be read again next time: tokens %+v", known)
	}
	dst.flag("B1@x")
	_, known = verify(known)

	// A change at the source that did not reach the destination.
	src.flag("A2@x", `\Answered`)
	checks, known = verify(known)
	if a := checks[0]; fmt.Sprint(a.FlagsDiffer) != "[A2@x]" || fmt.Sprint(src.whole) != "[A]" {
		t.Fatalf("not carried: %+v, read whole %v", checks, src.whole)
	}
	dst.flag("A2@x", `\Answered`)
	_, known = verify(known)
	if len(known) != 2 {
		t.Fatalf("mended: tokens %+v", known)
	}

	// Two messages of one identity: the one that came was not copied,
	// and the copy of the other was changed at the destination to the
	// newcomer's flags. By identity and flags alone the change would
	// pass for the copy; a copy that was there cannot be the newcomer's.
	src.addAs("A", "A7", "twin@x")
	dst.addAs("A", "A7", "twin@x")
	_, known = verify(known)
	src.addAs("A", "A8", "twin@x", `\Seen`)
	dst.flag("A7", `\Seen`)
	checks, known = verify(known)
	if a := checks[0]; a.Clean() || fmt.Sprint(a.Missing, a.FlagsDiffer) != "[twin@x] [twin@x]" || fmt.Sprint(src.whole) != "[A]" {
		t.Fatalf("twins: %+v, read whole %v", checks, src.whole)
	}
	dst.flag("A7")
	dst.addAs("A", "A8", "twin@x", `\Seen`)
	if _, known = verify(known); len(known) != 2 {
		t.Fatalf("twins mended: tokens %+v", known)
	}

	// A message gone at the destination, with another change there that
	// a change list would account for.
	src.flag("B3@x", `\Seen`)
	dst.flag("B3@x", `\Seen`)
	dst.remove("B5@x")
	checks, _ = verify(known)
	if b := checks[1]; fmt.Sprint(b.Missing) != "[B5@x]" || fmt.Sprint(src.whole) != "[B]" {
		t.Fatalf("gone at the destination: %+v, read whole %v", checks, src.whole)
	}
}

// A verification given the folder states a survey of the run listed
// (plugin.Listing.Folders) opens no session of the source when neither
// side changed since it last found them equal; when the destination
// changed, it reads as VerifySince does. A change at the source after
// the survey is not this run's: the next verification finds it.
func TestVerifyAfterASurveyThatSawNoChangeOpensNoSourceSession(t *testing.T) {
	src, dst, e := sixEqual(t)
	ctx := context.Background()
	_, known, err := survey.VerifySince(ctx, e, "old", "new", nil)
	if err != nil || len(known) != 2 {
		t.Fatalf("first verification: tokens %+v, %v", known, err)
	}
	surveyed := func() []plugin.Folder {
		t.Helper()
		folders, err := modSession{src}.Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return folders
	}
	verify := func(known survey.Tokens, surveyed []plugin.Folder) ([]survey.FolderCheck, survey.Tokens) {
		t.Helper()
		src.opened, src.whole = 0, nil
		checks, known, err := survey.VerifySurveyed(ctx, e, "old", "new", known, surveyed)
		if err != nil || len(checks) != 2 {
			t.Fatalf("checks %+v, %v", checks, err)
		}
		return checks, known
	}

	checks, again := verify(known, surveyed())
	if src.opened != 0 || !checks[0].Unchanged || !checks[1].Unchanged || checks[0].Source != 3 || fmt.Sprint(again) != fmt.Sprint(known) {
		t.Fatalf("nothing changed: %d sessions opened, checks %+v, tokens %+v (were %+v)", src.opened, checks, again, known)
	}

	// Changed at the destination alone: the source is read, the
	// difference reported.
	dst.flag("B1@x", `\Deleted`)
	checks, again = verify(known, surveyed())
	if src.opened != 1 || fmt.Sprint(checks[1].FlagsDiffer) != "[B1@x]" || fmt.Sprint(src.whole) != "[B]" {
		t.Fatalf("changed at the destination: %d sessions, checks %+v, read whole %v", src.opened, checks, src.whole)
	}
	if _, ok := again["B"]; ok {
		t.Fatalf("B differs and must be read again next time: tokens %+v", again)
	}
	dst.flag("B1@x")
	if _, known = verify(again, surveyed()); len(known) != 2 {
		t.Fatalf("mended: tokens %+v", known)
	}

	// Changed at the source after the survey: this verification speaks
	// of the source as surveyed, and the next one reads the change.
	before := surveyed()
	src.flag("A2@x", `\Answered`)
	checks, again = verify(known, before)
	if src.opened != 0 || !checks[0].Unchanged {
		t.Fatalf("changed after the survey: %d sessions, checks %+v", src.opened, checks)
	}
	checks, _ = verify(again, surveyed())
	if src.opened != 1 || fmt.Sprint(checks[0].FlagsDiffer) != "[A2@x]" {
		t.Fatalf("the next verification: %d sessions, checks %+v", src.opened, checks)
	}
}
