package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/engine/quarantine"
)

// countingObserver counts events by outcome. Messages are settled on
// goroutines of their own, so it is called from several at once.
type countingObserver struct {
	NopObserver
	mu      sync.Mutex
	fetched int
	done    map[Outcome]int
}

func (o *countingObserver) MessageFetched(string, string, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fetched++
}

func (o *countingObserver) MessageDone(ev MessageEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done[ev.Outcome]++
}

// intakeRig is a poll of one input whose pipeline's only output accepts
// everything, with a memory_budget of budget bytes and spill_over of
// inMemory.
func intakeRig(t *testing.T, budget, inMemory int64) (*intake, *countingObserver) {
	t.Helper()
	dir := t.TempDir()
	l, err := ledger.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	q, err := quarantine.Open(dir + "/quarantine")
	if err != nil {
		t.Fatal(err)
	}
	obs := &countingObserver{done: map[Outcome]int{}}
	ic := &config.Input{Name: "in", Pipeline: "p"}
	cfg := &config.Config{StateDir: dir, FetchAttempts: 3, Inputs: []*config.Input{ic},
		Spool: message.SpoolOptions{Dir: dir, InMemory: inMemory, MaxSize: 1 << 20, MaxHeader: 1 << 20}}
	s := &Setup{Config: cfg, outputs: map[string]plugin.Output{"out": acceptAll{}},
		pipelines: map[string]*pipeline{"p": {name: "p", chain: &Chain{}, outputs: []string{"out"}}}}
	e := &Engine{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ledger: l, Quarantine: q, observer: obs,
		sem: make(chan struct{}, 2), mem: newMemBudget(budget), buffers: message.NewBufferPool()}
	p := &poll{e: e, s: s, ic: ic, log: e.Log, records: map[string]ledger.Record{}}
	return &intake{p: p, ctx: context.Background()}, obs
}

type acceptAll struct{}

func (acceptAll) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	return nil, nil
}

func mail(size int) []byte {
	head := "From: a@example.org\r\nSubject: x\r\n\r\n"
	return []byte(head + strings.Repeat("b", size-len(head)))
}

// Each kind of message the source hands over ends where it should: read
// and settled, left at the source for a broken fetch or a size over the
// bound, held back after a size that does not match, and the memory it
// took is given back every time.
func TestIntakeTakesEachMessageWhereItBelongs(t *testing.T) {
	in, obs := intakeRig(t, 64<<10, 16<<10)
	small, big := mail(2000), mail(40<<10)
	steps := []struct {
		name string
		item plugin.Item
		body []byte
		err  error
	}{
		{"small, in memory", plugin.Item{ID: "1", Size: 2000}, small, nil},
		{"over spill_over: spooled", plugin.Item{ID: "2", Size: int64(len(big))}, big, nil},
		{"unknown size", plugin.Item{ID: "3", Size: -1}, small, nil},
		{"fetch failed", plugin.Item{ID: "4", Size: 2000}, nil, errors.New("-ERR gone")},
		{"size disagrees", plugin.Item{ID: "5", Size: 2500}, small, nil},
		{"over max_message_size", plugin.Item{ID: "6", Size: 2 << 20}, mail(2<<20 + 10), nil},
	}
	for _, st := range steps {
		var r io.Reader
		if st.body != nil {
			r = bytes.NewReader(st.body)
		}
		if err := in.take(st.item, r, st.err); err != nil {
			t.Fatalf("%s: take: %v", st.name, err)
		}
	}
	in.wait()
	if obs.fetched != 4 || obs.done[Delivered] != 3 || obs.done[Deferred] != 2 {
		t.Fatalf("fetched %d, outcomes %v; want 4 fetched, 3 delivered, 2 deferred (the broken fetch, the size mismatch)", obs.fetched, obs.done)
	}
	st := in.p.stats
	if st.Fetched != 4 || st.Delivered != 3 || st.Deferred != 2 {
		t.Fatalf("stats %v disagree with the observer", st)
	}
	if len(in.p.commit) != 3 {
		t.Fatalf("%d messages to commit, want the 3 delivered", len(in.p.commit))
	}
	if free := in.p.e.mem.free; free != 64<<10 {
		t.Fatalf("memory_budget has %d bytes free after every message was done, want all %d back", free, 64<<10)
	}
}

// A message that must wait for room in memory_budget gives up when the
// poll is stopped, and the fetch stops with it.
func TestIntakeStopsWaitingForMemoryWhenThePollStops(t *testing.T) {
	in, _ := intakeRig(t, 4000, 4000)
	in.p.e.mem.take(3000) // held by a message of another input
	ctx, cancel := context.WithCancel(context.Background())
	in.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- in.take(plugin.Item{ID: "1", Size: 2000}, bytes.NewReader(mail(2000)), nil) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("take returned %v, want the poll's cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("take still waits for memory after the poll stopped")
	}
	in.wait()
	if in.p.stats.Fetched != 0 || len(in.p.commit) != 0 {
		t.Fatalf("a message that never got room was read or committed: %v", in.p.stats)
	}
}

// A step the delivery state machine refuses is a bug: it is logged, and
// the message is deferred (it stays at its source), never committed.
func TestRefusedTransitionDefersTheMessage(t *testing.T) {
	in, _ := intakeRig(t, 64<<10, 16<<10)
	var logged bytes.Buffer
	e := in.p.e
	e.Log = slog.New(slog.NewTextHandler(&logged, nil))
	msg, err := message.Read(bytes.NewReader(mail(2000)), message.Source{Input: "in", ID: "1"}, message.DefaultSpool)
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	d := newDelivery(ledger.Record{})
	d.state = stateSettled // as if the chain had run already: filtered is refused
	res := e.drive(context.Background(), in.p.s, "p", msg, d, ledgerRecorder{l: e.Ledger, input: "in", id: "1"}, e.Log, settleResult{}, time.Now())
	if res.state != stateDeferred || res.outcome != Deferred || res.err == nil {
		t.Fatalf("a refused step ended as %s/%s (err %v), want deferred", res.state, res.outcome, res.err)
	}
	if !strings.Contains(logged.String(), "bug: the delivery state machine refused a step") {
		t.Fatalf("the refused step was not logged as a bug:\n%s", logged.String())
	}
}
