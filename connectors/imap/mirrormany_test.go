package imap

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
)

// storeCounter counts the SELECTs, SEARCHes and STOREs of the sessions
// it wraps.
type storeCounter struct {
	mu                        sync.Mutex
	selects, searches, stores int
}

type countingSession struct {
	imapserver.SessionIMAP4rev2
	n *storeCounter
}

func (s countingSession) Select(name string, opts *goimap.SelectOptions) (*goimap.SelectData, error) {
	s.n.mu.Lock()
	s.n.selects++
	s.n.mu.Unlock()
	return s.SessionIMAP4rev2.Select(name, opts)
}

func (s countingSession) Search(kind imapserver.NumKind, c *goimap.SearchCriteria, o *goimap.SearchOptions) (*goimap.SearchData, error) {
	s.n.mu.Lock()
	s.n.searches++
	s.n.mu.Unlock()
	return s.SessionIMAP4rev2.Search(kind, c, o)
}

func (s countingSession) Store(w *imapserver.FetchWriter, set goimap.NumSet, f *goimap.StoreFlags, o *goimap.StoreOptions) error {
	s.n.mu.Lock()
	s.n.stores++
	s.n.mu.Unlock()
	return s.SessionIMAP4rev2.Store(w, set, f, o)
}

// Flag changes carried many at once cost, per folder, a SELECT, a SEARCH
// and a STORE per kind of change, not a round trip or three a message;
// each change is answered on its own: a copy deleted at the destination
// is ErrNotHeld, a copy known only by its identity is found by it.
func TestManyFlagChangesAreOneStorePerFolderAndKind(t *testing.T) {
	n := &storeCounter{}
	addr := memServerWith(t, func(_ *imapserver.Conn, s imapserver.Session) imapserver.Session {
		return countingSession{SessionIMAP4rev2: s.(imapserver.SessionIMAP4rev2), n: n}
	})
	o := newOutput(t, addr, nil)
	var msgs []*message.Message
	for i := range 12 {
		msgs = append(msgs, testMessage(i, []string{"Archive", "Lists"}[i%2]))
	}
	res := deliverAll(o, msgs, false)
	for i, r := range res {
		if r.err != nil || r.placed == "" {
			t.Fatalf("message %d: %v, placed %q", i, r.err, r.placed)
		}
	}
	ctx := context.Background()
	// One copy deleted at the destination.
	if err := o.Delete(ctx, plugin.Placement{Where: res[2].placed}); err != nil {
		t.Fatal(err)
	}
	var changes []plugin.FlagChange
	for i := range msgs {
		ch := plugin.FlagChange{Placement: plugin.Placement{Where: res[i].placed}, Added: []string{`\Flagged`}}
		if i%3 == 0 {
			ch.Added, ch.Removed = nil, []string{`\Seen`}
		}
		changes = append(changes, ch)
	}
	// And one known by its identity alone (a record from before APPENDUID).
	changes[5].Placement = plugin.Placement{Folder: "Lists", Identity: msgs[5].Identity()}
	n.mu.Lock()
	n.selects, n.searches, n.stores = 0, 0, 0
	n.mu.Unlock()
	errs := o.SetFlagsMany(ctx, changes)
	for i, err := range errs {
		switch {
		case i == 2 && !errors.Is(err, plugin.ErrNotHeld):
			t.Errorf("change %d (its copy deleted): %v, want ErrNotHeld", i, err)
		case i != 2 && err != nil:
			t.Errorf("change %d: %v", i, err)
		}
	}
	got := map[string][]string{}
	for _, m := range dump(t, login(t, addr, "dst")) {
		got[message.New(m.data, message.Source{}).MessageID()] = m.flags
	}
	for i, m := range msgs {
		want := []string{`\Flagged`, `\Seen`}
		if i%3 == 0 {
			want = nil
		}
		if i == 2 {
			continue
		}
		if !slices.Equal(got[m.MessageID()], want) {
			t.Errorf("%s: flags %v, want %v", m.MessageID(), got[m.MessageID()], want)
		}
	}
	// Two folders: a SELECT, a SEARCH, and a STORE of each kind (+\Flagged,
	// -\Seen) each; the change by identity costs its own SEARCH and STORE.
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stores > 5 || n.searches > 4 {
		t.Fatalf("%d SELECTs, %d SEARCHes, %d STOREs for %d changes in 2 folders; want at most 4 SEARCHes and 5 STOREs", n.selects, n.searches, n.stores, len(changes))
	}
}

// barrierSession holds a SELECT, once armed, until SELECTs of two folders
// have come, or refuses it after 10 s. It answers NAMESPACE after 5 ms,
// as a server that far away would: sessions are worth it where round
// trips cost (roundTripsCheap).
type barrierSession struct {
	imapserver.SessionIMAP4rev2
	b *selectBarrier
}

func (s barrierSession) Namespace() (*goimap.NamespaceData, error) {
	time.Sleep(5 * time.Millisecond)
	return s.SessionIMAP4rev2.Namespace()
}

type selectBarrier struct {
	mu       sync.Mutex
	armed    bool
	seen     map[string]bool
	both     chan struct{}
	timedOut bool
}

func (s barrierSession) Select(name string, opts *goimap.SelectOptions) (*goimap.SelectData, error) {
	s.b.mu.Lock()
	armed := s.b.armed
	if armed && !s.b.seen[name] {
		s.b.seen[name] = true
		if len(s.b.seen) == 2 {
			close(s.b.both)
		}
	}
	s.b.mu.Unlock()
	if armed {
		select {
		case <-s.b.both:
		case <-time.After(10 * time.Second):
			s.b.mu.Lock()
			s.b.timedOut = true
			s.b.mu.Unlock()
			return nil, errors.New("the other folder's SELECT never came")
		}
	}
	return s.SessionIMAP4rev2.Select(name, opts)
}

// The changes of two folders are carried at once, each on a session of
// its own: over a distance, a folder's round trips do not wait for
// another's.
func TestFlagChangesOfTwoFoldersGoAtOnce(t *testing.T) {
	b := &selectBarrier{seen: map[string]bool{}, both: make(chan struct{})}
	addr := memServerWith(t, func(_ *imapserver.Conn, s imapserver.Session) imapserver.Session {
		return barrierSession{SessionIMAP4rev2: s.(imapserver.SessionIMAP4rev2), b: b}
	})
	o := newOutput(t, addr, func(o *Output) { o.MaxConnections = 2 })
	msgs := []*message.Message{testMessage(1, "Archive"), testMessage(2, "Lists")}
	res := deliverAll(o, msgs, false)
	var changes []plugin.FlagChange
	for i, r := range res {
		if r.err != nil || r.placed == "" {
			t.Fatalf("message %d: %v, placed %q", i, r.err, r.placed)
		}
		changes = append(changes, plugin.FlagChange{Placement: plugin.Placement{Where: r.placed}, Added: []string{`\Flagged`}})
	}
	b.mu.Lock()
	b.armed = true
	b.mu.Unlock()
	for i, err := range o.SetFlagsMany(context.Background(), changes) {
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	b.mu.Lock()
	timedOut := b.timedOut
	b.mu.Unlock()
	if timedOut {
		t.Fatal("one folder's SELECT waited 10 s for the other's: the folders went one after the other")
	}
	for _, m := range dump(t, login(t, addr, "dst")) {
		if !slices.Contains(m.flags, `\Flagged`) {
			t.Fatalf("flags %v, want \\Flagged", m.flags)
		}
	}
}
