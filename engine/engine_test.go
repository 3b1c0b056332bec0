package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/plugins"
)

// memInput is an input over a fixed list of messages that records every ack.
type memInput struct {
	msgs [][]byte
	mu   sync.Mutex
	acks map[string][]error // id → each ack's error
	gone map[string]bool    // committed
}

func (in *memInput) Open(ctx context.Context) (engine.Session, error) {
	return &memSession{in: in}, nil
}

type memSession struct {
	in *memInput
	i  int
}

func (s *memSession) Next(ctx context.Context) (*engine.Message, engine.AckFunc, error) {
	for s.i < len(s.in.msgs) {
		i := s.i
		s.i++
		id := fmt.Sprint(i)
		s.in.mu.Lock()
		gone := s.in.gone[id]
		s.in.mu.Unlock()
		if gone {
			continue
		}
		msg := engine.NewMessage(s.in.msgs[i], engine.Source{Input: "mem", ID: id})
		return msg, func(ctx context.Context, err error) error {
			s.in.mu.Lock()
			defer s.in.mu.Unlock()
			s.in.acks[id] = append(s.in.acks[id], err)
			if err == nil {
				s.in.gone[id] = true
			}
			return nil
		}, nil
	}
	return nil, nil, engine.ErrEndOfInput
}

func (s *memSession) Close(ctx context.Context) error { return nil }

// memOutput records deliveries and fails as told.
type memOutput struct {
	mu   sync.Mutex
	got  map[string][]byte
	fail func(msg *engine.Message) error
	rcpt func(msg *engine.Message, d engine.Delivery) []engine.RecipientResult
}

func (o *memOutput) Deliver(ctx context.Context, msg *engine.Message, d engine.Delivery) ([]engine.RecipientResult, error) {
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

type testFilter func(msg *engine.Message) (engine.Verdict, error)

func (f testFilter) Filter(ctx context.Context, msg *engine.Message) (engine.Verdict, error) {
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
	h := &harness{in: &memInput{msgs: msgs, acks: map[string][]error{}, gone: map[string]bool{}},
		outs: map[string]*memOutput{}, filters: map[string]testFilter{}}
	reg := &plugins.Registry{}
	reg.AddInput("mem", func() engine.Input { return h.in })
	var conf strings.Builder
	fmt.Fprintf(&conf, "state_dir = %q\n[[input]]\nname = \"mem\"\ntype = \"mem\"\npipeline = \"p\"\n", t.TempDir())
	for _, name := range outputs {
		o := &memOutput{got: map[string][]byte{}}
		h.outs[name] = o
		reg.AddOutput(name, func() engine.Output { return o })
		fmt.Fprintf(&conf, "[[output]]\nname = %q\ntype = %q\n", name, name)
	}
	reg.AddScriptLoader(".test", func(path string, _ engine.ScriptLimits) (engine.Filter, error) {
		return testFilter(func(m *engine.Message) (engine.Verdict, error) { return h.filters[filepath.Base(path)](m) }), nil
	})
	scripts := "[]"
	if script != "" {
		scripts = fmt.Sprintf("[%q]", script)
	}
	fmt.Fprintf(&conf, "[[pipeline]]\nname = \"p\"\nscripts = %s\noutputs = [\"%s\"]\n", scripts, outputs[0])
	path := filepath.Join(t.TempDir(), "mailflow.toml")
	os.WriteFile(path, []byte(conf.String()), 0o600)
	cfg, err := engine.LoadConfig(path, reg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	h.e = e
	return h
}

// assertAckedOnce checks that every message was acked exactly once per poll
// that saw it, and returns the final ack error of each.
func (h *harness) lastAck(t *testing.T, id string) error {
	t.Helper()
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	acks := h.in.acks[id]
	if len(acks) == 0 {
		t.Fatalf("message %s was never acked", id)
	}
	return acks[len(acks)-1]
}

func TestDeliveredMessagesAreAckedOnceAndByteIdentical(t *testing.T) {
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
		if len(h.in.acks[id]) != 1 || h.in.acks[id][0] != nil {
			t.Fatalf("message %d acks: %v", i, h.in.acks[id])
		}
		if string(h.outs["out"].got[id]) != string(m) {
			t.Fatalf("message %d changed on the way", i)
		}
	}
}

func TestTemporaryFailureKeepsMessageAtSource(t *testing.T) {
	h := newHarness(t, enginetest.Mix(3), []string{"out"}, "")
	h.outs["out"].fail = func(*engine.Message) error { return errors.New("connection refused") }
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Failed != 3 || st.Delivered != 0 {
		t.Fatalf("stats %v", st)
	}
	for i := range 3 {
		if err := h.lastAck(t, fmt.Sprint(i)); err == nil {
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
	h.outs["out"].fail = func(m *engine.Message) error {
		if m.Source.ID == "1" {
			return engine.Permanent(errors.New("554 5.7.1 rejected"))
		}
		return nil
	}
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Delivered != 1 || st.Quarantined != 1 {
		t.Fatalf("stats %v", st)
	}
	if h.lastAck(t, "1") != nil {
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
	h.filters["f.test"] = func(m *engine.Message) (engine.Verdict, error) {
		switch m.Source.ID {
		case "0":
			return engine.Verdict{Action: engine.ActionDrop, Reason: "blocklisted"}, nil
		case "1":
			return engine.Verdict{Action: engine.ActionRoute, Outputs: []string{"b"}}, nil
		case "2":
			return engine.Verdict{}, errors.New("script blew up")
		}
		return engine.Verdict{Action: engine.ActionKeep}, nil
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
		if h.lastAck(t, fmt.Sprint(i)) != nil {
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
	var calls []engine.Delivery
	tempFail := true
	h.outs["smtp"].rcpt = func(m *engine.Message, d engine.Delivery) []engine.RecipientResult {
		calls = append(calls, d)
		var res []engine.RecipientResult
		for _, r := range []string{"a@x", "b@x"} {
			if contains(d.Done, r) {
				continue
			}
			var err error
			if r == "b@x" && tempFail {
				err = errors.New("452 4.2.2 mailbox full")
			}
			res = append(res, engine.RecipientResult{Recipient: r, Err: err})
		}
		return res
	}
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Failed != 1 || h.lastAck(t, "0") == nil {
		t.Fatalf("a 4xx recipient must keep the message at its source: %v", st)
	}
	tempFail = false
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if st.Delivered != 1 || h.lastAck(t, "0") != nil {
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
	if len(h.in.acks["0"]) != 2 || h.lastAck(t, "0") != nil {
		t.Fatalf("acks %v", h.in.acks["0"])
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
