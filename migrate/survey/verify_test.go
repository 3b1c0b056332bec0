package survey_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/migrate/survey"
	"github.com/mailflow/mailflow/plugins"
)

// box is a source or a destination of two folders, A and B, whose state
// tokens can say it changed; the source counts its listings.
type box struct {
	mu     sync.Mutex
	tokens map[string]string
	items  []plugin.Item
	lists  int
}

func (b *box) token(folder string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens[folder]
}

func (b *box) Open(context.Context) (plugin.Session, error) { return sourceSession{b}, nil }

type sourceSession struct{ b *box }

func (s sourceSession) List(context.Context) (plugin.Listing, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.lists++
	return plugin.Listing{Scheme: "box", Stable: true, Keeps: true, Items: append([]plugin.Item(nil), s.b.items...)}, nil
}

func (s sourceSession) Fetch(context.Context, []plugin.Item, func(plugin.Item, io.Reader, error) error) error {
	return nil
}
func (s sourceSession) Commit(context.Context, []plugin.Item) ([]plugin.Item, error) { return nil, nil }
func (s sourceSession) Close(context.Context) error                                  { return nil }

func (s sourceSession) FolderState(_ context.Context, folder, _ string) (string, error) {
	return s.b.token(folder), nil
}

func (s sourceSession) Folders(context.Context) ([]plugin.Folder, error) {
	var out []plugin.Folder
	for _, f := range []string{"A", "B", "Empty"} {
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

// dest holds every source message, with its flags, and says its tokens in
// one go.
type dest struct{ *box }

func (d dest) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	return nil, nil
}

func (d dest) Holds(ctx context.Context, folder, role string) (map[string]int, error) {
	out := map[string]int{}
	for _, it := range d.items {
		if it.Folder == folder {
			out[it.Identity]++
		}
	}
	return out, nil
}

func (d dest) FolderStates(_ context.Context, folders []plugin.Folder) ([]string, error) {
	out := make([]string, len(folders))
	for i, f := range folders {
		out[i] = d.token(f.Name)
	}
	return out, nil
}

func (d dest) FolderState(_ context.Context, folder, _ string) (string, error) {
	return d.token(folder), nil
}

// verifyEngine is an engine moving input "old" (src) to output "new" (dst).
func verifyEngine(t *testing.T, src plugin.Input, dst plugin.Output) *engine.Engine {
	t.Helper()
	cfg, err := config.New(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sched, _ := config.ParseSchedule("")
	cfg.Inputs = []*config.Input{{Name: "old", Type: "box", Pipeline: "p", Plugin: src, Sched: sched}}
	cfg.Pipelines = []*config.Pipeline{{Name: "p", Outputs: []string{"new"}}}
	cfg.Outputs = []*config.Output{{Name: "new", Type: "box", Plugin: dst}}
	e, err := engine.Open(cfg, plugins.Default, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// A verification asks both sides' folder states before it lists anything:
// when no folder changed on either side since it found them equal, it
// lists nothing; when one changed, it checks that one and passes over the
// others.
func TestVerifyListsNothingWhereNothingChanged(t *testing.T) {
	src := &box{tokens: map[string]string{"A": "a1", "B": "b1", "Empty": "e1"}}
	for i := range 6 {
		f := []string{"A", "B", "A"}[i%3]
		src.items = append(src.items, plugin.Item{ID: fmt.Sprint(i), Folder: f, Size: 10, Identity: fmt.Sprintf("m%d@x", i)})
	}
	dst := dest{&box{tokens: map[string]string{"A": "a1", "B": "b1"}, items: src.items}}
	e := verifyEngine(t, src, dst)
	ctx := context.Background()

	checks, known, err := survey.VerifySince(ctx, e, "old", "new", nil)
	if err != nil || len(checks) != 2 || src.lists != 1 || len(known) != 2 {
		t.Fatalf("first: checks %+v, tokens %+v, %d listings, %v", checks, known, src.lists, err)
	}
	checks, known, err = survey.VerifySince(ctx, e, "old", "new", known)
	if err != nil || src.lists != 1 {
		t.Fatalf("unchanged: %d listings (want none more), %v", src.lists, err)
	}
	for _, c := range checks {
		if want := map[string]int{"A": 4, "B": 2}[c.Folder]; !c.Unchanged || c.Source != want || c.Found != want {
			t.Fatalf("unchanged: %+v, want %d unchanged", c, want)
		}
	}
	if len(checks) != 2 || len(known) != 2 {
		t.Fatalf("unchanged: checks %+v, tokens %+v", checks, known)
	}
	dst.mu.Lock()
	dst.tokens["B"] = "b2" // a change at the destination, in B
	dst.mu.Unlock()
	checks, _, err = survey.VerifySince(ctx, e, "old", "new", known)
	if err != nil || src.lists != 2 || len(checks) != 2 || !checks[0].Unchanged || checks[1].Unchanged || checks[1].Found != 2 {
		t.Fatalf("B changed: checks %+v, %d listings, %v", checks, src.lists, err)
	}
}

// namedBox is a box whose sessions read one folder with its identities
// (plugin.FolderNamer), counting which folders they read.
type namedBox struct {
	*box
	read       []string
	identified int // items asked to be named (plugin.Identifier)
}

func (b *namedBox) Open(context.Context) (plugin.Session, error) {
	return namedSession{sourceSession{b.box}, b}, nil
}

type namedSession struct {
	sourceSession
	nb *namedBox
}

func (s namedSession) Identify(_ context.Context, items []plugin.Item) error {
	s.nb.identified += len(items)
	return nil
}

func (s namedSession) ListNamed(_ context.Context, folder string) ([]plugin.Item, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.nb.read = append(s.nb.read, folder)
	var out []plugin.Item
	for _, it := range s.b.items {
		if it.Folder == folder {
			out = append(out, it)
		}
	}
	return out, nil
}

// A source that reads a folder with its identities is never listed whole:
// the verification reads the folders that changed, each once, and finds
// what is missing there.
func TestVerifyReadsOnlyTheFoldersThatChanged(t *testing.T) {
	src := &namedBox{box: &box{tokens: map[string]string{"A": "a1", "B": "b1", "Empty": "e1"}}}
	for i := range 6 {
		f := []string{"A", "B", "A"}[i%3]
		src.items = append(src.items, plugin.Item{ID: fmt.Sprint(i), Folder: f, Size: 10, Identity: fmt.Sprintf("m%d@x", i)})
	}
	dst := dest{&box{tokens: map[string]string{"A": "a1", "B": "b1"}, items: append([]plugin.Item(nil), src.items...)}}
	e := verifyEngine(t, src, dst)
	ctx := context.Background()

	checks, known, err := survey.VerifySince(ctx, e, "old", "new", nil)
	if err != nil || len(checks) != 2 || len(known) != 2 || src.lists != 0 || fmt.Sprint(src.read) != "[A B]" {
		t.Fatalf("first: checks %+v, tokens %+v, %d listings, read %v, %v", checks, known, src.lists, src.read, err)
	}
	for _, c := range checks {
		if want := map[string]int{"A": 4, "B": 2}[c.Folder]; c.Unchanged || c.Source != want || c.Found != want {
			t.Fatalf("first: %+v, want %d found", c, want)
		}
	}
	// A message of B goes missing at the destination, which says so.
	dst.mu.Lock()
	dst.tokens["B"] = "b2"
	dst.items = slices.DeleteFunc(dst.items, func(it plugin.Item) bool { return it.Identity == "m1@x" })
	dst.mu.Unlock()
	src.read = nil
	checks, known, err = survey.VerifySince(ctx, e, "old", "new", known)
	if err != nil || src.lists != 0 || fmt.Sprint(src.read) != "[B]" || len(checks) != 2 {
		t.Fatalf("B changed: checks %+v, %d listings, read %v, %v", checks, src.lists, src.read, err)
	}
	if a, b := checks[0], checks[1]; !a.Unchanged || a.Found != 4 || b.Unchanged || b.Found != 1 || fmt.Sprint(b.Missing) != "[m1@x]" {
		t.Fatalf("B changed: %+v", checks)
	}
	if _, ok := known["B"]; ok || len(known) != 1 {
		t.Fatalf("B is not clean and must be checked again next time: tokens %+v", known)
	}
	if src.identified != 0 {
		t.Fatalf("%d messages named again after the folder's read named them", src.identified)
	}
}
