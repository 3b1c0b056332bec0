package engine

import (
	"fmt"
	"slices"

	"github.com/mailflow/mailflow/engine/ledger"
)

// deliveryState is where one message is on its way from its source to its
// outputs. The transitions, and nothing else, change a delivery:
//
//	new ──filtered──▶ filtered ──sending──▶ sending ──answered──▶ filtered
//	new ──filtered(drop)──▶ settled          filtered ──finish──▶ settled | deferred | refused
//	new ──filtered(leave)──▶ left            new | refused ──quarantined──▶ settled
//	settled ──unrecorded──▶ deferred         (the ledger could not record it)
//
// Only a settled delivery may be committed at its source.
type deliveryState int

const (
	stateNew      deliveryState = iota // fetched; the chain has not run
	stateFiltered                      // the chain decided; outputs may be tried
	stateSending                       // handed to one output; no answer yet
	stateSettled                       // delivered, dropped or quarantined: commit it
	stateDeferred                      // stays at its source; tried again later
	stateRefused                       // refused for good somewhere: to the quarantine
	stateLeft                          // a filter left it at its source on purpose
)

func (s deliveryState) String() string {
	return [...]string{"new", "filtered", "sending", "settled", "deferred", "refused", "left"}[s]
}

// delivery is the state of one message and the ledger record it keeps.
type delivery struct {
	state   deliveryState
	rec     ledger.Record
	outputs []string // where the verdict sends it
	sending string   // the output it is with, in stateSending
	doubted bool     // an output of this try may have it without having said so
	temp    []string // temporary failures of this try, as text
	perm    []string // permanent refusals of this try, as text
}

func newDelivery(rec ledger.Record) *delivery {
	if rec.Accepted == nil {
		rec.Accepted = map[string][]string{}
	}
	return &delivery{state: stateNew, rec: rec}
}

func (d *delivery) must(from ...deliveryState) error {
	if !slices.Contains(from, d.state) {
		return fmt.Errorf("delivery: not allowed in state %s", d.state)
	}
	return nil
}

// filtered takes the chain's verdict; outputs are the pipeline's own, used
// when the verdict did not route the message elsewhere.
func (d *delivery) filtered(v Verdict, outputs []string) error {
	if err := d.must(stateNew); err != nil {
		return err
	}
	switch v.Action {
	case ActionDrop:
		d.state, d.rec.Settled = stateSettled, ledger.Dropped
	case ActionLeave:
		d.state = stateLeft
	case ActionQuarantine:
		d.state = stateRefused
		d.perm = append(d.perm, v.Reason)
	default:
		d.outputs = outputs
		if v.Outputs != nil {
			d.outputs = v.Outputs
		}
		d.state = stateFiltered
	}
	return nil
}

// pending lists the outputs still to try: those that have not accepted.
func (d *delivery) pending() []string {
	var out []string
	for _, o := range d.outputs {
		if !slices.Contains(d.rec.Accepted[o], "*") {
			out = append(out, o)
		}
	}
	return out
}

// started records that output was handed the message. The record is
// journaled in this state, so that a hard kill now leaves the message
// marked as in doubt at that output.
func (d *delivery) started(output string) error {
	if err := d.must(stateFiltered); err != nil {
		return err
	}
	d.state, d.sending = stateSending, output
	d.rec.Sending = append(d.rec.Sending, output)
	return nil
}

// answered records the output's answer: err for the whole message, or a
// result per recipient. Sending is cleared whatever the answer, so a
// temporary failure is not taken for "in doubt" after a later crash.
func (d *delivery) answered(results []RecipientResult, err error) error {
	if err := d.must(stateSending); err != nil {
		return err
	}
	name := d.sending
	d.rec.Sending = slices.DeleteFunc(d.rec.Sending, func(s string) bool { return s == name })
	if len(d.rec.Sending) == 0 {
		d.rec.Sending = nil
	}
	d.state, d.sending = stateFiltered, ""
	switch {
	case err != nil && IsInDoubt(err):
		d.temp = append(d.temp, fmt.Sprintf("%s: %v", name, err))
		if !slices.Contains(d.rec.InDoubt, name) {
			d.rec.InDoubt = append(d.rec.InDoubt, name)
		}
		d.doubted = true
	case err != nil && IsPermanent(err):
		d.perm = append(d.perm, fmt.Sprintf("%s: %v", name, err))
	case err != nil:
		d.temp = append(d.temp, fmt.Sprintf("%s: %v", name, err))
	case len(results) == 0:
		d.rec.Accepted[name] = []string{"*"}
	}
	if err != nil {
		return nil
	}
	for _, r := range results {
		switch {
		case r.Err == nil:
			if !slices.Contains(d.rec.Accepted[name], r.Recipient) {
				d.rec.Accepted[name] = append(d.rec.Accepted[name], r.Recipient)
			}
		case IsPermanent(r.Err):
			if d.rec.Refused == nil {
				d.rec.Refused = map[string][]string{}
			}
			d.rec.Refused[name] = append(d.rec.Refused[name], r.Recipient)
			d.rec.Reasons = append(d.rec.Reasons, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
		default:
			d.temp = append(d.temp, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
		}
	}
	return nil
}

// skipped records an output that was not tried (it is backing off, or
// it does not exist).
func (d *delivery) skipped(output, why string, permanent bool) error {
	if err := d.must(stateFiltered); err != nil {
		return err
	}
	if permanent {
		d.perm = append(d.perm, output+": "+why)
	} else {
		d.temp = append(d.temp, output+": "+why)
	}
	return nil
}

// finish ends a try: settled when every output accepted (recipients
// refused for good on an earlier try count as answered), deferred when one
// failed for now, refused when the only failures are for good.
func (d *delivery) finish() error {
	if err := d.must(stateFiltered); err != nil {
		return err
	}
	refused := len(d.perm) > 0 || len(d.rec.Reasons) > 0
	switch {
	case len(d.outputs) == 0:
		d.state = stateRefused
		d.perm = append(d.perm, "no output to deliver to (the pipeline has none and no filter routed it)")
	case len(d.temp) > 0:
		d.state = stateDeferred
	case refused:
		d.state = stateRefused
	default:
		d.state, d.rec.Settled = stateSettled, ledger.Delivered
	}
	return nil
}

// quarantined records that the message is safe in the quarantine.
func (d *delivery) quarantined() error {
	if err := d.must(stateNew, stateRefused); err != nil {
		return err
	}
	d.state, d.rec.Settled = stateSettled, ledger.Quarantined
	return nil
}

// unrecorded undoes a settle that the ledger could not record: without
// the record the source must keep the message.
func (d *delivery) unrecorded() error {
	if err := d.must(stateSettled); err != nil {
		return err
	}
	d.state, d.rec.Settled = stateDeferred, ""
	return nil
}

// reasons is why a refused delivery goes to the quarantine: this try's
// refusals and the recipients refused on earlier tries.
func (d *delivery) reasons() []string {
	return append(slices.Clone(d.perm), d.rec.Reasons...)
}
