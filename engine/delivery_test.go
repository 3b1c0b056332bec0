package engine

import (
	"errors"
	"slices"
	"testing"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine/ledger"
)

// One case per transition of the delivery state machine (delivery.go),
// plus the transitions it must refuse.
func TestDeliveryTransitions(t *testing.T) {
	temp := errors.New("421 try later")
	perm := plugin.Permanent(errors.New("554 no"))
	filtered := func(outputs ...string) *delivery {
		d := newDelivery(ledger.Record{})
		_ = d.filtered(plugin.Verdict{}, outputs)
		return d
	}
	sending := func(output string) *delivery {
		d := filtered(output)
		_ = d.started(output)
		return d
	}
	cases := []struct {
		name     string
		start    func() *delivery
		step     func(d *delivery) error
		want     deliveryState
		settled  ledger.Outcome
		check    func(t *testing.T, d *delivery)
		badInput bool // the step must be refused
	}{
		{name: "new → filtered (keep)", start: func() *delivery { return newDelivery(ledger.Record{}) },
			step: func(d *delivery) error { return d.filtered(plugin.Verdict{}, []string{"a"}) }, want: stateFiltered,
			check: func(t *testing.T, d *delivery) {
				if !slices.Equal(d.outputs, []string{"a"}) {
					t.Fatalf("outputs %v", d.outputs)
				}
			}},
		{name: "new → filtered (route replaces the outputs)", start: func() *delivery { return newDelivery(ledger.Record{}) },
			step: func(d *delivery) error {
				return d.filtered(plugin.Verdict{Action: plugin.ActionRoute, Outputs: []string{"b"}}, []string{"a"})
			}, want: stateFiltered,
			check: func(t *testing.T, d *delivery) {
				if !slices.Equal(d.pending(), []string{"b"}) {
					t.Fatalf("pending %v", d.pending())
				}
			}},
		{name: "new → settled (drop)", start: func() *delivery { return newDelivery(ledger.Record{}) },
			step: func(d *delivery) error { return d.filtered(plugin.Verdict{Action: plugin.ActionDrop}, []string{"a"}) },
			want: stateSettled, settled: ledger.Dropped},
		{name: "new → left (leave)", start: func() *delivery { return newDelivery(ledger.Record{}) },
			step: func(d *delivery) error { return d.filtered(plugin.Verdict{Action: plugin.ActionLeave}, []string{"a"}) },
			want: stateLeft},
		{name: "new → refused (a filter quarantines)", start: func() *delivery { return newDelivery(ledger.Record{}) },
			step: func(d *delivery) error {
				return d.filtered(plugin.Verdict{Action: plugin.ActionQuarantine, Reason: "spam"}, []string{"a"})
			}, want: stateRefused,
			check: func(t *testing.T, d *delivery) {
				if !slices.Equal(d.reasons(), []string{"spam"}) {
					t.Fatalf("reasons %v", d.reasons())
				}
			}},
		{name: "filtered → sending journals the output", start: func() *delivery { return filtered("a") },
			step: func(d *delivery) error { return d.started("a") }, want: stateSending,
			check: func(t *testing.T, d *delivery) {
				if !slices.Equal(d.rec.Sending, []string{"a"}) {
					t.Fatalf("Sending %v", d.rec.Sending)
				}
			}},
		{name: "sending → filtered: accepted", start: func() *delivery { return sending("a") },
			step: func(d *delivery) error { return d.answered(nil, nil) }, want: stateFiltered,
			check: func(t *testing.T, d *delivery) {
				if d.rec.Sending != nil || !slices.Equal(d.rec.Accepted["a"], []string{"*"}) || len(d.pending()) != 0 {
					t.Fatalf("record %+v", d.rec)
				}
			}},
		{name: "sending → filtered: temporary failure clears Sending", start: func() *delivery { return sending("a") },
			step: func(d *delivery) error { return d.answered(nil, temp) }, want: stateFiltered,
			check: func(t *testing.T, d *delivery) {
				if d.rec.Sending != nil || len(d.temp) != 1 || len(d.rec.Accepted["a"]) != 0 {
					t.Fatalf("record %+v temp %v", d.rec, d.temp)
				}
			}},
		{name: "sending → filtered: per recipient", start: func() *delivery { return sending("a") },
			step: func(d *delivery) error {
				return d.answered([]plugin.RecipientResult{{Recipient: "x@t"}, {Recipient: "y@t", Err: perm}, {Recipient: "z@t", Err: temp}}, nil)
			}, want: stateFiltered,
			check: func(t *testing.T, d *delivery) {
				if !slices.Equal(d.rec.Accepted["a"], []string{"x@t"}) || !slices.Equal(d.rec.Refused["a"], []string{"y@t"}) || len(d.temp) != 1 || len(d.rec.Reasons) != 1 {
					t.Fatalf("record %+v temp %v", d.rec, d.temp)
				}
			}},
		{name: "filtered → settled (every output accepted)", start: func() *delivery {
			d := sending("a")
			_ = d.answered(nil, nil)
			return d
		}, step: (*delivery).finish, want: stateSettled, settled: ledger.Delivered},
		{name: "filtered → deferred (a temporary failure)", start: func() *delivery {
			d := sending("a")
			_ = d.answered(nil, temp)
			return d
		}, step: (*delivery).finish, want: stateDeferred},
		{name: "filtered → deferred (an output backing off)", start: func() *delivery {
			d := filtered("a")
			_ = d.skipped("a", "backing off", false)
			return d
		}, step: (*delivery).finish, want: stateDeferred},
		{name: "filtered → refused (only permanent failures)", start: func() *delivery {
			d := sending("a")
			_ = d.answered(nil, perm)
			return d
		}, step: (*delivery).finish, want: stateRefused},
		{name: "filtered → deferred (the destination refused the place, not the message)", start: func() *delivery {
			d := sending("a")
			_ = d.answered(nil, plugin.RefusedPlace("INBOX.Archive", plugin.Permanent(errors.New("CREATE: NO [NOPERM] Permission denied"))))
			return d
		}, step: (*delivery).finish, want: stateDeferred,
			check: func(t *testing.T, d *delivery) {
				if len(d.perm) != 0 || len(d.reasons()) != 0 || len(d.rec.Accepted["a"]) != 0 {
					t.Fatalf("a refused place must not refuse the message: perm %v record %+v", d.perm, d.rec)
				}
			}},
		{name: "filtered → deferred (a refused place at one output, another refused the message)", start: func() *delivery {
			d := filtered("a", "b")
			_ = d.started("a")
			_ = d.answered(nil, plugin.RefusedPlace("Archive", errors.New("NO")))
			_ = d.started("b")
			_ = d.answered(nil, perm)
			return d
		}, step: (*delivery).finish, want: stateDeferred},
		{name: "filtered → refused (recipients refused on an earlier try)", start: func() *delivery {
			d := newDelivery(ledger.Record{Reasons: []string{"a: <y@t>: 550"}, Accepted: map[string][]string{"a": {"*"}}})
			_ = d.filtered(plugin.Verdict{}, []string{"a"})
			return d
		}, step: (*delivery).finish, want: stateRefused},
		{name: "filtered → refused (no outputs)", start: func() *delivery { return filtered() },
			step: (*delivery).finish, want: stateRefused},
		{name: "refused → settled (quarantined)", start: func() *delivery {
			d := sending("a")
			_ = d.answered(nil, perm)
			_ = d.finish()
			return d
		}, step: (*delivery).quarantined, want: stateSettled, settled: ledger.Quarantined},
		{name: "settled → deferred (the ledger could not record it)", start: func() *delivery {
			d := sending("a")
			_ = d.answered(nil, nil)
			_ = d.finish()
			return d
		}, step: (*delivery).unrecorded, want: stateDeferred},

		{name: "refused: sending before filtering", start: func() *delivery { return newDelivery(ledger.Record{}) },
			step: func(d *delivery) error { return d.started("a") }, want: stateNew, badInput: true},
		{name: "refused: finishing while sending", start: func() *delivery { return sending("a") },
			step: (*delivery).finish, want: stateSending, badInput: true},
		{name: "refused: quarantining a delivered message", start: func() *delivery {
			d := sending("a")
			_ = d.answered(nil, nil)
			_ = d.finish()
			return d
		}, step: (*delivery).quarantined, want: stateSettled, settled: ledger.Delivered, badInput: true},
		{name: "refused: filtering twice", start: func() *delivery { return filtered("a") },
			step: func(d *delivery) error { return d.filtered(plugin.Verdict{Action: plugin.ActionDrop}, nil) }, want: stateFiltered, badInput: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.start()
			err := c.step(d)
			if (err != nil) != c.badInput {
				t.Fatalf("step error %v, want refused=%v", err, c.badInput)
			}
			if d.state != c.want || d.rec.Settled != c.settled {
				t.Fatalf("state %s settled %q; want %s %q", d.state, d.rec.Settled, c.want, c.settled)
			}
			if c.check != nil {
				c.check(t, d)
			}
		})
	}
}
