package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/plugin"
)

// A look made for the next poll (a migration's survey) is that poll's
// listing: the source is listed once, not twice. A message that came
// after the look is the following poll's, not lost.
func TestThePollTakesTheListingOfTheLookBeforeIt(t *testing.T) {
	box, out := newKeptBox(true, 4), &mirrorOutput{held: map[string][]string{}}
	e := openKept(t, box, out)
	if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Delivered != 4 {
		t.Fatalf("first poll: %v %v", st, err)
	}
	news := enginetest.Mix(7)[4:]
	box.add("n1", news[0], []string{})
	box.add("n2", news[1], []string{})

	var seen []string
	err := e.LookAhead(context.Background(), "box", func(_ plugin.Session, l plugin.Listing, settled map[string]ledger.Outcome) error {
		for _, it := range l.Items {
			seen = append(seen, fmt.Sprintf("%s settled=%t", it.ID, settled[it.ID] != ""))
		}
		return nil
	})
	if err != nil || len(seen) != 2 {
		t.Fatalf("the look saw %v (%v); want the 2 new messages", seen, err)
	}
	lists := box.lists
	box.add("n3", news[2], []string{}) // after the look

	st, err := e.PollOnce(context.Background(), "box")
	if err != nil || st.Delivered != 2 {
		t.Fatalf("the poll after the look: %v %v; want the 2 it saw delivered", st, err)
	}
	if box.lists != lists {
		t.Fatalf("the poll listed the source again (%d listings more)", box.lists-lists)
	}
	st, err = e.PollOnce(context.Background(), "box")
	if err != nil || st.Delivered != 1 || box.lists != lists+1 {
		t.Fatalf("the next poll: %v %v, %d listings more; want the message that came after the look, listed anew", st, err, box.lists-lists)
	}
	if len(out.held) != 7 {
		t.Fatalf("the output holds %d messages, want 7", len(out.held))
	}
}

// reusedBox is a keptBox whose sessions say whether closing them commits
// nothing (plugin.Reusable), and which counts the sessions opened and
// closed.
type reusedBox struct {
	*keptBox
	reusable bool
	mu       sync.Mutex
	opens    int
	closes   int
}

type reusedSession struct {
	*keptSession
	b *reusedBox
}

func (b *reusedBox) Open(context.Context) (plugin.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opens++
	return reusedSession{&keptSession{b.keptBox}, b}, nil
}

func (s reusedSession) Close(context.Context) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.closes++
	return nil
}

func (s reusedSession) Reusable() bool { return s.b.reusable }

// With WithSessionsReused, the look that follows a poll (a migration's
// verification) takes the poll's session rather than open another, where
// the session says closing it commits nothing; one that does not say so
// is closed after the poll, as without the option.
func TestALookAfterAPollTakesThePollsSession(t *testing.T) {
	for _, c := range []struct {
		reuse, reusable bool
		opens           int
	}{{true, true, 1}, {true, false, 2}, {false, true, 2}} {
		box := &reusedBox{keptBox: newKeptBox(false, 3), reusable: c.reusable}
		var opts []engine.Option
		if c.reuse {
			opts = append(opts, engine.WithSessionsReused())
		}
		e := openKept(t, box, &mirrorOutput{held: map[string][]string{}}, opts...)
		if st, err := e.PollOnce(context.Background(), "box"); err != nil || st.Delivered != 3 {
			t.Fatalf("%+v: poll: %v %v", c, st, err)
		}
		if err := e.LookUnlisted(context.Background(), "box", func(plugin.Session) error { return nil }); err != nil {
			t.Fatalf("%+v: look: %v", c, err)
		}
		box.mu.Lock()
		opens, closes := box.opens, box.closes
		box.mu.Unlock()
		if opens != c.opens || closes != opens {
			t.Errorf("reuse %v, reusable %v: %d sessions opened, %d closed; want %d, all closed", c.reuse, c.reusable, opens, closes, c.opens)
		}
	}
}
