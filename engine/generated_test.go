package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
)

// generating makes h's filter answer every message with one generated
// message to output "replies", and counts the deliveries each output was
// asked for, per source id.
func generating(h *harness, action plugin.Action) (count func(out, id string) int) {
	var mu sync.Mutex
	n := map[string]int{}
	for name, o := range h.outs {
		prev := o.fail
		o.fail = func(m *message.Message) error {
			mu.Lock()
			n[name+"/"+m.Source.ID]++
			mu.Unlock()
			if prev != nil {
				return prev(m)
			}
			return nil
		}
	}
	h.filters["gen.test"] = func(m *message.Message) (plugin.Verdict, error) {
		reply := message.New([]byte("From: me@example.org\r\nTo: you@example.net\r\nSubject: Auto: hi\r\nAuto-Submitted: auto-replied\r\n\r\nAway.\r\n"),
			message.Source{Input: "generated", ID: "reply-" + m.Source.ID})
		reply.Envelope = message.Envelope{Sender: message.NullSender, Recipients: []string{"you@example.net"}}
		return plugin.Verdict{Action: action, Generated: []plugin.Generated{{Name: "gen.test:vacation", Output: "replies", Message: reply}}}, nil
	}
	return func(out, id string) int {
		mu.Lock()
		defer mu.Unlock()
		return n[out+"/"+id]
	}
}

// A generated message that fails for now keeps its message at the source;
// the retry sends only what was not accepted: the original once, the reply
// once.
func TestGeneratedMessageIsSentOnceWithItsMessage(t *testing.T) {
	h := newHarness(t, enginetest.Mix(2), []string{"out", "replies"}, "gen.test")
	// The server answers 451 for the recipient (a failure of the whole
	// output would make the engine back off from it for a while).
	down := true
	h.outs["replies"].rcpt = func(m *message.Message, d plugin.Delivery) []plugin.RecipientResult {
		var res []plugin.RecipientResult
		for _, r := range d.Recipients {
			var err error
			if down {
				err = errors.New("451 4.3.0 try again later")
			}
			res = append(res, plugin.RecipientResult{Recipient: r, Err: err})
		}
		return res
	}
	count := generating(h, plugin.ActionKeep)
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Deferred != 2 || h.in.committed("0") {
		t.Fatalf("with the reply's output down: %v, committed %v", st, h.in.committed("0"))
	}
	down = false
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if st.Delivered != 2 {
		t.Fatalf("second poll: %v", st)
	}
	h.e.PollOnce(context.Background(), "mem")
	for i := range 2 {
		id := fmt.Sprint(i)
		if got := count("out", id); got != 1 {
			t.Errorf("message %s reached its output %d times", id, got)
		}
		if got := count("replies", "reply-"+id); got != 2 { // refused once, accepted once
			t.Errorf("reply to %s was tried %d times, want 2", id, got)
		}
		if got := h.outs["replies"].got["reply-"+id]; len(got) == 0 {
			t.Errorf("reply to %s never arrived", id)
		}
		if !h.in.committed(id) {
			t.Errorf("message %s was not committed", id)
		}
	}
}

// A reply refused for good is logged; the message it answers goes on.
func TestRefusedGeneratedMessageDoesNotHoldItsMessage(t *testing.T) {
	h := newHarness(t, enginetest.Mix(1), []string{"out", "replies"}, "gen.test")
	h.outs["replies"].fail = func(*message.Message) error {
		return plugin.Permanent(errors.New("550 no such user"))
	}
	count := generating(h, plugin.ActionKeep)
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Delivered != 1 || !h.in.committed("0") {
		t.Fatalf("%v, committed %v", st, h.in.committed("0"))
	}
	if entries, _ := h.e.Quarantine.List(); len(entries) != 0 {
		t.Fatalf("quarantined: %v", entries)
	}
	h.e.PollOnce(context.Background(), "mem")
	if got := count("replies", "reply-0"); got != 1 {
		t.Fatalf("a refused reply was tried %d times", got)
	}
}

// drop still sends what the filter generated (Sieve's vacation with
// discard); leave sends nothing, since the message is filtered again.
func TestGeneratedMessagesWithDropAndLeave(t *testing.T) {
	h := newHarness(t, enginetest.Mix(1), []string{"out", "replies"}, "gen.test")
	count := generating(h, plugin.ActionDrop)
	st, _ := h.e.PollOnce(context.Background(), "mem")
	if st.Dropped != 1 || count("replies", "reply-0") != 1 || count("out", "0") != 0 {
		t.Fatalf("drop: %v, reply sent %d times, original %d", st, count("replies", "reply-0"), count("out", "0"))
	}

	h = newHarness(t, enginetest.Mix(1), []string{"out", "replies"}, "gen.test")
	count = generating(h, plugin.ActionLeave)
	st, _ = h.e.PollOnce(context.Background(), "mem")
	if st.Left != 1 || count("replies", "reply-0") != 0 {
		t.Fatalf("leave: %v, reply sent %d times", st, count("replies", "reply-0"))
	}
}
