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

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

// waitInput is a source whose messages came over SMTP with an envelope,
// and whose session waits for each one's fate (plugin.Answerer), as the
// smtp input does with answer = "after_delivery".
type waitInput struct {
	mu       sync.Mutex
	msgs     [][]byte
	rcpts    [][]string
	answers  map[string][]plugin.Answer
	takeBack bool // whether a rejection is taken back
	answerer bool // whether the session is an Answerer at all
	gone     map[string]bool
}

func (in *waitInput) Open(ctx context.Context) (plugin.Session, error) {
	if in.answerer {
		return &waitSession{in}, nil
	}
	return plainSession{&waitSession{in}}, nil
}

type waitSession struct{ in *waitInput }

// plainSession hides the Answer method.
type plainSession struct{ s *waitSession }

func (p plainSession) List(ctx context.Context) (plugin.Listing, error) { return p.s.List(ctx) }
func (p plainSession) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	return p.s.Fetch(ctx, items, each)
}
func (p plainSession) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	return p.s.Commit(ctx, items)
}
func (p plainSession) Close(ctx context.Context) error { return nil }

func (s *waitSession) List(ctx context.Context) (plugin.Listing, error) {
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	l := plugin.Listing{Scheme: "spool", Stable: true, Unique: true}
	for i, m := range s.in.msgs {
		id := fmt.Sprint(i)
		if s.in.gone[id] {
			continue
		}
		l.Items = append(l.Items, plugin.Item{ID: id, Size: int64(len(m)), Ref: i,
			Received: &message.Received{Sender: "sender@example.org", Recipients: s.in.rcpts[i], Client: message.Client{Address: "192.0.2.1", Helo: "client.example.org"}}})
	}
	return l, nil
}

func (s *waitSession) Fetch(ctx context.Context, items []plugin.Item, each func(plugin.Item, io.Reader, error) error) error {
	for _, it := range items {
		if err := each(it, bytes.NewReader(s.in.msgs[it.Ref.(int)]), nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *waitSession) Commit(ctx context.Context, items []plugin.Item) ([]plugin.Item, error) {
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	for _, it := range items {
		s.in.gone[it.ID] = true
	}
	return nil, nil
}

func (s *waitSession) Close(ctx context.Context) error { return nil }

func (s *waitSession) Answer(it plugin.Item, a plugin.Answer) bool {
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	s.in.answers[it.ID] = append(s.in.answers[it.ID], a)
	return a.Outcome == plugin.Rejected && s.in.takeBack
}

func (in *waitInput) fates(id string) []plugin.Answer {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.answers[id])
}

// newWaitHarness runs in through the test filter f.test to the mem output
// "out".
func newWaitHarness(t *testing.T, in *waitInput, filter testFilter) (*engine.Engine, *memOutput) {
	t.Helper()
	in.answers, in.gone = map[string][]plugin.Answer{}, map[string]bool{}
	reg := &plugins.Registry{}
	reg.AddInput("wait", func() plugin.Input { return in })
	out := &memOutput{got: map[string][]byte{}}
	reg.AddOutput("mem", func() plugin.Output { return out })
	reg.AddScriptLoader(".test", func(string, plugin.ScriptLimits) (plugin.Filter, error) { return filter, nil })
	conf := fmt.Sprintf("state_dir = %q\n[[input]]\nname = \"smtp\"\ntype = \"wait\"\npipeline = \"p\"\n"+
		"[[output]]\nname = \"out\"\ntype = \"mem\"\n[[pipeline]]\nname = \"p\"\nscripts = [\"f.test\"]\noutputs = [\"out\"]\n", t.TempDir())
	path := filepath.Join(t.TempDir(), "mailflow.toml")
	os.WriteFile(path, []byte(conf), 0o600)
	cfg, err := config.Load(path, reg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, out
}

// A waiting source is told each message's fate once; a rejection it takes
// back is settled without a quarantine entry, one it does not take back
// is quarantined and told so.
func TestAnswererIsToldEachFate(t *testing.T) {
	for _, takeBack := range []bool{true, false} {
		t.Run(fmt.Sprintf("takeBack=%v", takeBack), func(t *testing.T) {
			in := &waitInput{msgs: enginetest.Mix(6), answerer: true, takeBack: takeBack,
				rcpts: [][]string{{"a@x"}, {"a@x"}, {"a@x"}, {"a@x"}, {"a@x"}, {"a@x", "refuse@x"}}}
			e, out := newWaitHarness(t, in, func(m *message.Message) (plugin.Verdict, error) {
				switch m.Source.ID {
				case "1":
					return plugin.Verdict{Action: plugin.ActionDrop, Reason: "blocklisted"}, nil
				case "2":
					return plugin.Verdict{Action: plugin.ActionReject, Reason: "spam score 12.5"}, nil
				}
				return plugin.Verdict{}, nil
			})
			out.fail = func(m *message.Message) error {
				switch m.Source.ID {
				case "3":
					return plugin.Permanent(errors.New("554 5.7.1 refused"))
				}
				return nil
			}
			out.rcpt = func(m *message.Message, d plugin.Delivery) []plugin.RecipientResult {
				var res []plugin.RecipientResult
				for _, r := range d.Recipients {
					var err error
					if r == "refuse@x" {
						err = plugin.Permanent(errors.New("550 5.1.1 no such user"))
					}
					res = append(res, plugin.RecipientResult{Recipient: r, Err: err})
				}
				return res
			}
			st, _ := e.PollOnce(context.Background(), "smtp")

			want := map[string][]plugin.Outcome{"0": {plugin.Delivered}, "1": {plugin.Dropped}, "4": {plugin.Delivered}}
			if takeBack {
				want["2"], want["3"], want["5"] = []plugin.Outcome{plugin.Rejected}, []plugin.Outcome{plugin.Rejected}, []plugin.Outcome{plugin.Rejected}
			} else {
				q := []plugin.Outcome{plugin.Rejected, plugin.Quarantined}
				want["2"], want["3"], want["5"] = q, q, q
			}
			for id, w := range want {
				var got []plugin.Outcome
				for _, a := range in.fates(id) {
					got = append(got, a.Outcome)
				}
				if !slices.Equal(got, w) {
					t.Errorf("message %s: answered %v, want %v", id, got, w)
				}
			}
			if a := in.fates("2")[0]; a.Filter != "f.test" || a.Reason != "spam score 12.5" {
				t.Errorf("a filter's rejection: %+v", a)
			}
			if a := in.fates("3")[0]; !strings.Contains(a.Reason, "554 5.7.1 refused") || len(a.Recipients) != 0 {
				t.Errorf("an output's refusal of the message: %+v", a)
			}
			if a := in.fates("5")[0]; len(a.Recipients) != 1 || a.Recipients["refuse@x"] == nil || !a.Accepted {
				t.Errorf("a refusal of one recipient of two: %+v", a)
			}
			entries, _ := e.Quarantine.List()
			if takeBack {
				if st.Rejected != 3 || st.Quarantined != 0 || len(entries) != 0 {
					t.Fatalf("taken back: stats %v, quarantine %d entries", st, len(entries))
				}
				if !strings.Contains(st.String(), "rejected=3") {
					t.Errorf("summary %q does not count the rejected", st.String())
				}
				rec, _ := e.Ledger.Get("smtp", "2")
				if rec.Settled != "rejected" {
					t.Errorf("ledger: %+v", rec)
				}
			} else if st.Rejected != 0 || st.Quarantined != 3 || len(entries) != 3 {
				t.Fatalf("not taken back: stats %v, quarantine %d entries", st, len(entries))
			}
			for _, id := range []string{"0", "1", "2", "3", "4", "5"} {
				if !in.gone[id] {
					t.Errorf("settled message %s was not committed", id)
				}
			}
		})
	}
}

// A deferral is told with its reason, and whether an output has the
// message already; the message stays at its source.
func TestAnswererIsToldADeferral(t *testing.T) {
	in := &waitInput{msgs: enginetest.Mix(1), answerer: true, rcpts: [][]string{{"a@x"}}}
	e, out := newWaitHarness(t, in, func(m *message.Message) (plugin.Verdict, error) { return plugin.Verdict{}, nil })
	out.fail = func(m *message.Message) error { return errors.New("451 4.3.0 try later") }
	if st, _ := e.PollOnce(context.Background(), "smtp"); st.Deferred != 1 {
		t.Fatalf("stats %v", st)
	}
	f := in.fates("0")
	if len(f) != 1 || f[0].Outcome != plugin.Deferred || f[0].Accepted || !strings.Contains(f[0].Reason, "try later") {
		t.Fatalf("answered %+v", f)
	}
	if in.gone["0"] {
		t.Error("a deferred message was committed")
	}
}

// Without a waiting source, a filter's reject keeps the message in the
// quarantine with the filter's reason.
func TestRejectWithoutAWaitingSourceQuarantines(t *testing.T) {
	in := &waitInput{msgs: enginetest.Mix(1), rcpts: [][]string{{"a@x"}}}
	e, _ := newWaitHarness(t, in, func(m *message.Message) (plugin.Verdict, error) {
		return plugin.Verdict{Action: plugin.ActionReject, Reason: "no thanks"}, nil
	})
	st, _ := e.PollOnce(context.Background(), "smtp")
	entries, _ := e.Quarantine.List()
	if st.Quarantined != 1 || len(entries) != 1 || entries[0].Reason != "filter f.test rejected it: no thanks" {
		t.Fatalf("stats %v, quarantine %+v", st, entries)
	}
}

// A message received over SMTP goes to the recipients it was sent to, from
// its sender; quarantined, it keeps them, and a resend goes to them again.
func TestReceivedEnvelopeIsDeliveredAndKeptInTheQuarantine(t *testing.T) {
	in := &waitInput{msgs: enginetest.Mix(1), rcpts: [][]string{{"a@example.net", "b@example.net"}}}
	var seen []plugin.Delivery
	var senders []string
	e, out := newWaitHarness(t, in, func(m *message.Message) (plugin.Verdict, error) {
		if m.Received == nil || m.Received.Client.Helo != "client.example.org" {
			return plugin.Verdict{}, fmt.Errorf("the filter does not see the client: %+v", m.Received)
		}
		return plugin.Verdict{}, nil
	})
	refuse := true
	out.fail = func(m *message.Message) error {
		senders = append(senders, m.Envelope.Sender)
		if refuse {
			return plugin.Permanent(errors.New("554 no"))
		}
		return nil
	}
	out.rcpt = func(m *message.Message, d plugin.Delivery) []plugin.RecipientResult {
		seen = append(seen, d)
		return nil
	}
	if st, _ := e.PollOnce(context.Background(), "smtp"); st.Quarantined != 1 {
		t.Fatalf("stats %v", st)
	}
	entries, _ := e.Quarantine.List()
	if len(entries) != 1 || entries[0].Received == nil || !slices.Equal(entries[0].Received.Recipients, []string{"a@example.net", "b@example.net"}) {
		t.Fatalf("the quarantine does not keep the envelope: %+v", entries)
	}
	refuse = false
	if outcome, err := e.Resend(context.Background(), entries[0].ID); err != nil || outcome != "delivered" {
		t.Fatalf("resend: %q %v", outcome, err)
	}
	if len(seen) != 1 || !slices.Equal(seen[0].Recipients, []string{"a@example.net", "b@example.net"}) {
		t.Fatalf("the resend went to %+v", seen)
	}
	if !slices.Equal(senders, []string{"sender@example.org", "sender@example.org"}) {
		t.Fatalf("envelope senders %q", senders)
	}
}
