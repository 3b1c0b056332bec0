package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

// memInput is an input over a list of messages that counts every fetch and
// commit. Its ids are the messages' indexes; a committed message is gone
// from later listings unless keep is set.
type memInput struct {
	mu     sync.Mutex
	msgs   [][]byte
	keep   bool
	scheme string // "" is "mem"
	unsafe bool   // the listing says its ids are not stable
	prefix string // put before every id
	// announce, when set for an index, is the size the listing gives for
	// that message instead of its length (a server whose LIST is wrong).
	announce map[int]int64
	// misread, when set for an index, is what that message's reader says
	// of its bytes once read (a POP3 server that sent them wrong).
	misread map[int]error
	fetches map[string]int
	commits map[string]int
	gone    map[string]bool
}

func newMemInput(msgs [][]byte) *memInput {
	return &memInput{msgs: msgs, fetches: map[string]int{}, commits: map[string]int{}, gone: map[string]bool{}}
}

func (in *memInput) Open(ctx context.Context) (plugin.Session, error) {
	return &memSession{in: in}, nil
}

// committed reports whether id was committed at least once.
func (in *memInput) committed(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.commits[id] > 0
}

type memSession struct{ in *memInput }

func (s *memSession) List(ctx context.Context) (plugin.Listing, error) {
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	l := plugin.Listing{Scheme: s.in.scheme, Stable: !s.in.unsafe, Keeps: s.in.keep}
	if l.Scheme == "" {
		l.Scheme = "mem"
	}
	for i, m := range s.in.msgs {
		id := s.in.prefix + fmt.Sprint(i)
		if !s.in.gone[id] {
			size := int64(len(m))
			if a, ok := s.in.announce[i]; ok {
				size = a
			}
			l.Items = append(l.Items, plugin.Item{ID: id, Size: size, Ref: i})
		}
	}
	return l, nil
}

func (s *memSession) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	for _, it := range items {
		s.in.mu.Lock()
		s.in.fetches[it.ID]++
		b := s.in.msgs[it.Ref.(int)]
		why := s.in.misread[it.Ref.(int)]
		s.in.mu.Unlock()
		var r io.Reader = bytes.NewReader(b)
		if why != nil {
			r = misreadReader{r, why}
		}
		if err := each(it, r, nil); err != nil {
			return err
		}
	}
	return nil
}

// misreadReader is a reader that knows its bytes are not the message.
type misreadReader struct {
	io.Reader
	why error
}

func (r misreadReader) Misread() error { return r.why }

func (s *memSession) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	for _, it := range items {
		s.in.commits[it.ID]++
		if !s.in.keep {
			s.in.gone[it.ID] = true
		}
	}
	return nil, nil
}

func (s *memSession) Close(ctx context.Context) error { return nil }

// memOutput records deliveries and fails as told.
type memOutput struct {
	mu   sync.Mutex
	got  map[string][]byte
	fail func(msg *message.Message) error
	rcpt func(msg *message.Message, d plugin.Delivery) []plugin.RecipientResult
}

func (o *memOutput) Deliver(ctx context.Context, msg *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	if o.fail != nil {
		if err := o.fail(msg); err != nil {
			return nil, err
		}
	}
	b, _ := io.ReadAll(msg.Reader())
	o.mu.Lock()
	o.got[msg.Source.ID] = b
	o.mu.Unlock()
	if o.rcpt != nil {
		return o.rcpt(msg, d), nil
	}
	return nil, nil
}

type testFilter func(msg *message.Message) (plugin.Verdict, error)

func (f testFilter) Filter(ctx context.Context, msg *message.Message) (plugin.Verdict, error) {
	return f(msg)
}

// harness wires one mem input through a pipeline to named mem outputs.
type harness struct {
	e       *engine.Engine
	in      *memInput
	outs    map[string]*memOutput
	filters map[string]testFilter
}

func newHarness(t *testing.T, msgs [][]byte, outputs []string, script string) *harness {
	t.Helper()
	return newHarnessWith(t, msgs, outputs, script, "")
}

// newHarnessWith is newHarness with more top-level config lines.
func newHarnessWith(t *testing.T, msgs [][]byte, outputs []string, script, top string, opts ...engine.Option) *harness {
	t.Helper()
	h := &harness{in: newMemInput(msgs),
		outs: map[string]*memOutput{}, filters: map[string]testFilter{}}
	reg := &plugins.Registry{}
	reg.AddInput("mem", func() plugin.Input { return h.in })
	var conf strings.Builder
	fmt.Fprintf(&conf, "state_dir = %q\n%s\n[[input]]\nname = \"mem\"\ntype = \"mem\"\npipeline = \"p\"\n", t.TempDir(), top)
	for _, name := range outputs {
		o := &memOutput{got: map[string][]byte{}}
		h.outs[name] = o
		reg.AddOutput(name, func() plugin.Output { return o })
		fmt.Fprintf(&conf, "[[output]]\nname = %q\ntype = %q\n", name, name)
	}
	reg.AddScriptLoader(".test", func(path string, _ plugin.ScriptLimits) (plugin.Filter, error) {
		return testFilter(func(m *message.Message) (plugin.Verdict, error) { return h.filters[filepath.Base(path)](m) }), nil
	})
	scripts := "[]"
	if script != "" {
		scripts = fmt.Sprintf("[%q]", script)
	}
	fmt.Fprintf(&conf, "[[pipeline]]\nname = \"p\"\nscripts = %s\noutputs = [\"%s\"]\n", scripts, outputs[0])
	path := filepath.Join(t.TempDir(), "mailflow.toml")
	os.WriteFile(path, []byte(conf.String()), 0o600)
	cfg, err := config.Load(path, reg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	h.e = e
	return h
}

func TestDeliveredMessagesAreCommittedOnceAndByteIdentical(t *testing.T) {
	msgs := enginetest.Mix(50)
	h := newHarness(t, msgs, []string{"out"}, "")
	st, err := h.e.PollOnce(context.Background(), "mem")
	if err != nil {
		t.Fatal(err)
	}
	if st.Delivered != 50 || st.Fetched != 50 {
		t.Fatalf("stats %v", st)
	}
	for i, m := range msgs {
		id := fmt.Sprint(i)
		if h.in.commits[id] != 1 || h.in.fetches[id] != 1 {
			t.Fatalf("message %d fetched %d and committed %d times", i, h.in.fetches[id], h.in.commits[id])
		}
		if string(h.outs["out"].got[id]) != string(m) {
			t.Fatalf("message %d changed on the way", i)
		}
	}
}

func TestTemporaryFailureKeepsMessageAtSource(t *testing.T) {
	h := newHarness(t, enginetest.Mix(3), []string{"out"}, "")
	h.outs["out"].fail = func(*message.Message) error { return errors.New("connection refused") }
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Deferred != 3 || st.Delivered != 0 {
		t.Fatalf("stats %v", st)
	}
	for i := range 3 {
		if h.in.committed(fmt.Sprint(i)) {
			t.Fatalf("message %d was committed although its output failed", i)
		}
	}
	entries, _ := h.e.Quarantine.List()
	if len(entries) != 0 {
		t.Fatalf("a temporary failure must not quarantine: %v", entries)
	}
}

func TestPermanentFailureQuarantinesWithReason(t *testing.T) {
	msgs := enginetest.Mix(2)
	h := newHarness(t, msgs, []string{"out"}, "")
	h.outs["out"].fail = func(m *message.Message) error {
		if m.Source.ID == "1" {
			return plugin.Permanent(errors.New("554 5.7.1 rejected"))
		}
		return nil
	}
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Delivered != 1 || st.Quarantined != 1 {
		t.Fatalf("stats %v", st)
	}
	if !h.in.committed("1") {
		t.Fatal("a quarantined message must be committed at its source")
	}
	entries, _ := h.e.Quarantine.List()
	if len(entries) != 1 || !strings.Contains(entries[0].Reason, "554 5.7.1 rejected") || entries[0].SourceID != "1" {
		t.Fatalf("quarantine: %+v", entries)
	}
	_, qm, err := h.e.Quarantine.Get(entries[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(qm.Original())
	qm.Close()
	if string(b) != string(msgs[1]) {
		t.Fatal("the quarantined .eml is not the original message")
	}
	// resend goes through the pipeline again and empties the quarantine
	h.outs["out"].fail = nil
	if out, err := h.e.Resend(context.Background(), entries[0].ID); err != nil || out != "delivered" {
		t.Fatalf("resend: %q %v", out, err)
	}
	if entries, _ := h.e.Quarantine.List(); len(entries) != 0 {
		t.Fatalf("resent entry still quarantined: %v", entries)
	}
}

func TestFilterVerdicts(t *testing.T) {
	h := newHarness(t, enginetest.Mix(4), []string{"a", "b"}, "f.test")
	h.filters["f.test"] = func(m *message.Message) (plugin.Verdict, error) {
		switch m.Source.ID {
		case "0":
			return plugin.Verdict{Action: plugin.ActionDrop, Reason: "blocklisted"}, nil
		case "1":
			return plugin.Verdict{Action: plugin.ActionRoute, Outputs: []string{"b"}}, nil
		case "2":
			return plugin.Verdict{}, errors.New("script blew up")
		}
		return plugin.Verdict{Action: plugin.ActionKeep}, nil
	}
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Dropped != 1 || st.Delivered != 2 || st.Quarantined != 1 {
		t.Fatalf("stats %v", st)
	}
	if _, ok := h.outs["b"].got["1"]; !ok {
		t.Fatal("routed message not in b")
	}
	if _, ok := h.outs["a"].got["1"]; ok {
		t.Fatal("routed message also went to the default output")
	}
	if _, ok := h.outs["a"].got["3"]; !ok {
		t.Fatal("kept message not in default output a")
	}
	for i := range 4 {
		if !h.in.committed(fmt.Sprint(i)) {
			t.Fatalf("message %d not committed", i)
		}
	}
	entries, _ := h.e.Quarantine.List()
	if len(entries) != 1 || !strings.Contains(entries[0].Reason, "script blew up") {
		t.Fatalf("quarantine: %+v", entries)
	}
}

func TestPartialRecipientsAreRetriedOnlyForTheRest(t *testing.T) {
	h := newHarness(t, enginetest.Mix(1), []string{"smtp"}, "")
	var calls []plugin.Delivery
	tempFail := true
	h.outs["smtp"].rcpt = func(m *message.Message, d plugin.Delivery) []plugin.RecipientResult {
		calls = append(calls, d)
		var res []plugin.RecipientResult
		for _, r := range []string{"a@x", "b@x"} {
			if contains(d.Done, r) {
				continue
			}
			var err error
			if r == "b@x" && tempFail {
				err = errors.New("452 4.2.2 mailbox full")
			}
			res = append(res, plugin.RecipientResult{Recipient: r, Err: err})
		}
		return res
	}
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Deferred != 1 || h.in.committed("0") {
		t.Fatalf("a 4xx recipient must keep the message at its source: %v", st)
	}
	tempFail = false
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if st.Delivered != 1 || !h.in.committed("0") {
		t.Fatalf("retry: %v", st)
	}
	if len(calls) != 2 || !contains(calls[1].Done, "a@x") {
		t.Fatalf("the retry must skip a@x, which accepted: %+v", calls)
	}
	// a third poll sees the message again (the mem source only forgets on
	// commit, which happened): nothing more is delivered.
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if st.Fetched != 0 {
		t.Fatalf("committed message fetched again: %v", st)
	}
}

func TestSettledMessageIsCommittedWithoutRedelivery(t *testing.T) {
	// The source failed to commit (as when a POP3 session dies before
	// QUIT): on the next poll the ledger says settled and nothing is sent.
	h := newHarness(t, enginetest.Mix(1), []string{"out"}, "")
	if _, err := h.e.PollOnce(context.Background(), "mem"); err != nil {
		t.Fatal(err)
	}
	h.in.gone["0"] = false // the source "restored" it
	delete(h.outs["out"].got, "0")
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Skipped != 1 || st.Delivered != 0 {
		t.Fatalf("stats %v", st)
	}
	if _, again := h.outs["out"].got["0"]; again {
		t.Fatal("message delivered twice")
	}
	// The source deletes on commit, so a settled message it still lists is
	// fetched once more and its content checked before it is committed.
	if h.in.commits["0"] != 2 || h.in.fetches["0"] != 2 {
		t.Fatalf("fetched %d, committed %d; want 2 and 2", h.in.fetches["0"], h.in.commits["0"])
	}
	// A source that keeps its mail lists settled messages every time:
	// they are passed over on id and size, without a fetch.
	h.in.keep, h.in.gone["0"] = true, false
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if st.Skipped != 1 || h.in.fetches["0"] != 2 {
		t.Fatalf("keep mode: %v, fetched %d times", st, h.in.fetches["0"])
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// When a source starts naming its messages another way (a changed id
// scheme), the poll matches them to the ledger by content: nothing is
// delivered again, and the records move to the new ids.
func TestSchemeChangeMatchesByContentAndMovesRecords(t *testing.T) {
	msgs := enginetest.Mix(5)
	h := newHarness(t, msgs, []string{"out"}, "")
	h.in.keep = true
	if st, _ := h.e.PollOnce(context.Background(), "mem"); st.Delivered != 5 {
		t.Fatalf("first poll: %v", st)
	}
	h.in.scheme, h.in.prefix = "other", "x"
	st, err := h.e.PollOnce(context.Background(), "mem")
	if err != nil || st.Delivered != 0 || st.Skipped != 5 || st.Fetched != 5 {
		t.Fatalf("poll under the new scheme: %v %v", st, err)
	}
	if got := h.e.Ledger.Stats(); len(got) != 1 || got[0].Records != 5 || got[0].Meta.Scheme != "other" {
		t.Fatalf("ledger after the change: %+v", got)
	}
	if rec, ok := h.e.Ledger.Get("mem", "x3"); !ok || rec.Settled == "" {
		t.Fatal("the record did not follow the message to its new id")
	}
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if st.Fetched != 0 || st.Skipped != 5 {
		t.Fatalf("third poll, same scheme again: %v", st)
	}
	if n := len(h.outs["out"].got); n != 5 {
		t.Fatalf("output has %d", n)
	}
}

// Ids that the source says are not stable are never trusted alone: every
// settled message is fetched and its digest compared before a commit.
func TestUnstableIdsAreCheckedByContent(t *testing.T) {
	msgs := enginetest.Mix(3)
	h := newHarness(t, msgs, []string{"out"}, "f.test")
	h.in.unsafe, h.in.keep = true, true
	leave := true
	h.filters["f.test"] = func(m *message.Message) (plugin.Verdict, error) {
		if m.Source.ID == "2" && leave {
			return plugin.Verdict{Action: plugin.ActionLeave}, nil
		}
		return plugin.Verdict{}, nil
	}
	if st, _ := h.e.PollOnce(context.Background(), "mem"); st.Delivered != 2 || st.Left != 1 {
		t.Fatalf("first poll: %v", st)
	}
	// The source now lists the same ids for other bytes (as a header hash
	// would, for two messages with the same header).
	h.in.msgs = [][]byte{msgs[1], msgs[0], msgs[2]}
	leave = false
	for poll := 2; poll <= 3; poll++ {
		st, _ := h.e.PollOnce(context.Background(), "mem")
		if want := int64(3 - poll); st.Delivered != want || st.Skipped != 3-want || st.Fetched != 3 {
			t.Fatalf("poll %d: %v; want %d delivered", poll, st, want)
		}
	}
	if n := len(h.outs["out"].got); n != 3 {
		t.Fatalf("output has %d distinct ids", n)
	}
}

// The journal marks a delivery under way before the output is called and
// clears the mark on every answer: after a hard kill, only a delivery that
// was really under way is taken for in doubt.
func TestJournalMarksOnlyDeliveriesUnderWay(t *testing.T) {
	h := newHarness(t, enginetest.Mix(2), []string{"out"}, "")
	hang, inside := make(chan struct{}), make(chan struct{})
	h.outs["out"].fail = func(m *message.Message) error {
		if m.Source.ID == "1" {
			close(inside)
			<-hang
		} else {
			<-inside // fail only once 1 is with the output (no back-off for it)
		}
		return errors.New("421 later")
	}
	done := make(chan struct{})
	go func() { h.e.PollOnce(context.Background(), "mem"); close(done) }()
	defer func() { close(hang); <-done }()
	// What a SIGKILL would leave, taken until message 0's answer is in the
	// journal: the database file and the journal.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := ledger.Open(copyState(t, h.e.Config().StateDir))
		if err != nil {
			t.Fatal(err)
		}
		r0, ok0 := l.Get("mem", "0")
		r1, _ := l.Get("mem", "1")
		l.Close()
		if ok0 && r0.Digest != "" && r0.Sending == nil {
			if !slices.Equal(r1.Sending, []string{"out"}) {
				t.Fatalf("the delivery under way is not marked: %+v", r1)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a delivery that failed for now is still marked as under way: %+v", r0)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func copyState(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	for _, name := range []string{"ledger.db", "ledger.journal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, name), b, 0o600)
	}
	return to
}

// While every output of the pipeline backs off after a failure, a poll
// does not download the mailbox again only to leave it there.
func TestNoFetchingWhileEveryOutputBacksOff(t *testing.T) {
	h := newHarness(t, enginetest.Mix(3), []string{"out"}, "")
	h.outs["out"].fail = func(*message.Message) error { return errors.New("421 try later") }
	if st, _ := h.e.PollOnce(context.Background(), "mem"); st.Deferred != 3 {
		t.Fatalf("first poll: %v", st)
	}
	before := h.in.fetches["0"]
	st, err := h.e.PollOnce(context.Background(), "mem")
	if err != nil || st.Fetched != 0 || h.in.fetches["0"] != before {
		t.Fatalf("poll during the back-off fetched: %v %v", st, err)
	}
}

// A destination that refuses the place a message goes to (an IMAP folder
// it will not create) refuses no message: each stays at its source, out of
// the quarantine, and the output is not backed off, so that the messages
// for other places go on. The next poll tries them again.
func TestRefusedPlaceLeavesTheMessageAtItsSource(t *testing.T) {
	var mu sync.Mutex
	var seen []engine.OutputEvent
	obs := outputEvents(func(ev engine.OutputEvent) { mu.Lock(); seen = append(seen, ev); mu.Unlock() })
	h := newHarnessWith(t, enginetest.Mix(6), []string{"out"}, "", "", engine.WithObserver(obs))
	refusal := plugin.RefusedPlace("INBOX.Archive", errors.New(`imap CREATE "INBOX.Archive": NO [NOPERM] Permission denied`))
	h.outs["out"].fail = func(m *message.Message) error {
		if m.Source.ID == "1" || m.Source.ID == "4" {
			return refusal
		}
		return nil
	}
	for poll := 1; poll <= 2; poll++ {
		st, err := h.e.PollOnce(context.Background(), "mem")
		want := engine.Stats{Fetched: 6, Delivered: 4, Deferred: 2}
		if poll == 2 {
			want = engine.Stats{Fetched: 2, Deferred: 2} // the 4 delivered left the source
		}
		if err != nil || st != want {
			t.Fatalf("poll %d: %v %v; want %v", poll, st, err, want)
		}
		if h.in.committed("1") || h.in.committed("4") {
			t.Fatalf("poll %d: a message whose place was refused left its source", poll)
		}
		if entries, _ := h.e.Quarantine.List(); len(entries) != 0 {
			t.Fatalf("poll %d: a refused place quarantined %d messages", poll, len(entries))
		}
		if w := h.e.OutputWait("out"); w != 0 {
			t.Fatalf("poll %d: the output backs off for %v after a refused place", poll, w)
		}
	}
	refused := 0
	for _, ev := range seen {
		if r, ok := plugin.PlaceRefused(ev.Err); ok && r.Place == "INBOX.Archive" {
			refused++
		}
	}
	if refused != 4 {
		t.Fatalf("observer saw %d refused places, want 4 (2 messages, 2 polls): %+v", refused, seen)
	}
}

// outputEvents is an engine.Observer of OutputDone only.
type outputEvents func(engine.OutputEvent)

func (f outputEvents) MessageFetched(string, string, int64) {}
func (f outputEvents) MessageDone(engine.MessageEvent)      {}
func (f outputEvents) OutputDone(ev engine.OutputEvent)     { f(ev) }
func (f outputEvents) PollDone(engine.PollEvent)            {}
func (f outputEvents) Reloaded(error)                       {}
func (f outputEvents) Waiting(engine.WaitEvent)             {}

// A message whose fetched bytes never match the size the source announces
// is held after fetch_attempts polls, and from then on passed over while
// the source lists it the same way — also when that size is 0 (Dovecot
// lists an empty file so), which a record could not tell from "not
// recorded" before.
func TestHeldMessageIsPassedOverEvenAtSizeZero(t *testing.T) {
	for _, announced := range []int64{0, 7} {
		t.Run(fmt.Sprintf("announced %d", announced), func(t *testing.T) {
			msgs := enginetest.Mix(3)
			h := newHarness(t, msgs, []string{"out"}, "")
			h.in.announce = map[int]int64{1: announced}
			for poll := 1; poll <= 3; poll++ {
				h.e.PollOnce(context.Background(), "mem")
			}
			if rec, _ := h.e.Ledger.Get("mem", "1"); rec.Settled != ledger.Held {
				t.Fatalf("not held after 3 polls: %+v", rec)
			}
			fetched := h.in.fetches["1"]
			for poll := 4; poll <= 6; poll++ {
				st, err := h.e.PollOnce(context.Background(), "mem")
				if err != nil || st.Deferred != 0 || st.Fetched != 0 {
					t.Fatalf("poll %d after the hold: %v %v", poll, st, err)
				}
			}
			if h.in.fetches["1"] != fetched || h.in.committed("1") {
				t.Fatalf("the held message was fetched %d more times, committed %v", h.in.fetches["1"]-fetched, h.in.committed("1"))
			}
		})
	}
}

// A message whose reader says its bytes are wrong, and would be again
// (plugin.Misreader), is held on the first poll with that reason, and
// passed over after — also when its size happens to agree (an empty
// message a server sent as one blank line); one whose size merely disagrees still gets
// fetch_attempts tries, as a transfer can go wrong once.
func TestMisreadMessageIsHeldAtOnce(t *testing.T) {
	msgs := enginetest.Mix(4)
	h := newHarness(t, msgs, []string{"out"}, "")
	h.in.announce = map[int]int64{1: 3, 2: 5}
	h.in.misread = map[int]error{1: errors.New("the server sent the first line's dot unstuffed"), 3: errors.New("an empty message sent as a blank line")}
	st, err := h.e.PollOnce(context.Background(), "mem")
	if err != nil || st.Held != 2 || st.Deferred != 1 || st.Delivered != 1 {
		t.Fatalf("first poll: %v %v; want 2 held (the misread), 1 deferred (the size only), 1 delivered", st, err)
	}
	rec, _ := h.e.Ledger.Get("mem", "1")
	if rec.Settled != ledger.Held || rec.Attempts != 1 {
		t.Fatalf("ledger record of the misread message: %+v", rec)
	}
	entries, err := h.e.Quarantine.List()
	if err != nil || len(entries) != 2 {
		t.Fatalf("quarantine: %v %v", entries, err)
	}
	reasons := entries[0].Reason + "\n" + entries[1].Reason
	if !entries[0].Held || !entries[1].Held || !strings.Contains(reasons, "first line's dot unstuffed") || !strings.Contains(reasons, "sent as a blank line") || strings.Count(reasons, "the source keeps the message") != 2 {
		t.Fatalf("quarantine entries: %+v", entries)
	}
	fetched := h.in.fetches["1"]
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if h.in.fetches["1"] != fetched || h.in.committed("1") {
		t.Fatalf("second poll fetched the held message again (%d) or committed it (%v): %v", h.in.fetches["1"]-fetched, h.in.committed("1"), st)
	}
	if rec, _ := h.e.Ledger.Get("mem", "2"); rec.Settled != "" || rec.Attempts != 2 {
		t.Fatalf("the size-only mismatch after two polls: %+v", rec)
	}
}

// A server may end a message that lacks a final line end with a CRLF of
// its own (Dovecot's POP3 does): two bytes more than announced, ending in
// CRLF, agree; two bytes more of anything else do not.
func TestSizeAgreesWithAnAddedFinalLineEnd(t *testing.T) {
	for _, c := range []struct {
		raw       string
		announced int64
		want      bool
	}{
		// Dovecot lists "Subject: a\n\nno newline at end" at 31 and sends this.
		{"Subject: a\r\n\r\nno newline at end\r\n", 31, true},
		{"Subject: a\r\nX: b\r\n\r\nbody\r\n", 24, true},
		{"Subject: a\r\nX: b\r\n\r\nbody..", 24, false},
		{"Subject: a\r\nX: b\r\n\r\nbody\r\n", 22, true}, // line ends counted as LF
		{"Subject: a\r\nX: b\r\n\r\nbody\r\n", 25, false},
	} {
		msg, err := message.Read(strings.NewReader(c.raw), message.Source{}, message.SpoolOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := engine.SizeAgrees(c.announced, msg); got != c.want {
			t.Errorf("%q announced %d: agrees %v, want %v", c.raw, c.announced, got, c.want)
		}
		msg.Close()
	}
}

// An empty listing says nothing about how a source makes its ids: it
// neither warns of a scheme change nor records the scheme it happens to
// report, so the next listing with messages is compared with the last one
// that had any.
func TestEmptyListingLeavesTheSchemeAsItWas(t *testing.T) {
	msgs := enginetest.Mix(2)
	h := newHarness(t, msgs, []string{"out"}, "")
	h.in.scheme = "pop3-header"
	if st, _ := h.e.PollOnce(context.Background(), "mem"); st.Delivered != 2 {
		t.Fatalf("first poll: %v", st)
	}
	var logged bytes.Buffer
	h.e.Log = slog.New(slog.NewTextHandler(&logged, nil))
	h.in.scheme = "uidl" // what an emptied mailbox without UIDL reports
	if st, _ := h.e.PollOnce(context.Background(), "mem"); st.Fetched != 0 {
		t.Fatalf("poll of the empty mailbox: %v", st)
	}
	if strings.Contains(logged.String(), "identifies its messages differently") {
		t.Fatalf("an empty mailbox was warned about:\n%s", logged.String())
	}
	if m := h.e.Ledger.Meta("mem"); m.Scheme != "pop3-header" {
		t.Fatalf("the scheme of an empty listing was recorded: %q", m.Scheme)
	}
}
