package engine

import (
	"fmt"
	"slices"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine/ledger"
)

// deliveryState is where one message is on its way from its source to its
// outputs. The transitions, and nothing else, change a delivery:
//
//	new ──filtered──▶ filtered ──sending──▶ sending ──answered──▶ filtered
//	new ──filtered(drop)──▶ settled          filtered ──finish──▶ settled | deferred | refused
//	new ──filtered(leave)──▶ left            new | refused ──quarantined──▶ settled
//	settled ──unrecorded──▶ deferred         refused ──rejected──▶ settled (its source took it back)
//	                                         (unrecorded: the ledger could not record it)
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
	// refusedBy holds the recipients refused for good on this try, with
	// their errors: a source that takes a refusal back answers each.
	refusedBy map[string]error
	// rejectedBy and rejectWhy are the filter that rejected the message
	// (ActionReject) and its reason, as the filter gave it.
	rejectedBy, rejectWhy string

	// Messages a filter generated from this one (Verdict.Generated), by
	// target: each is one more entry in outputs, its answers kept in the
	// record under that target, apart from the outputs' own.
	generated map[string]plugin.Generated
	genFailed []string // generated messages refused for good: logged only
	dropped   bool     // the verdict was drop: settled as dropped once the generated are sent
}

// generatedTarget is the name under which a generated message's delivery
// is recorded. Output names cannot hold a colon.
func generatedTarget(name string) string { return "generated:" + name }

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
func (d *delivery) filtered(v plugin.Verdict, outputs []string) error {
	if err := d.must(stateNew); err != nil {
		return err
	}
	switch v.Action {
	case plugin.ActionDrop:
		if len(v.Generated) == 0 {
			d.state, d.rec.Settled = stateSettled, ledger.Dropped
			return nil
		}
		d.dropped, d.state = true, stateFiltered
	case plugin.ActionLeave:
		d.state = stateLeft
	case plugin.ActionQuarantine, plugin.ActionReject:
		d.state = stateRefused
		d.perm = append(d.perm, v.Reason)
	default:
		d.outputs = slices.Clone(outputs)
		if v.Outputs != nil {
			d.outputs = slices.Clone(v.Outputs)
		}
		d.state = stateFiltered
	}
	if d.state == stateFiltered && len(v.Generated) > 0 {
		d.generated = make(map[string]plugin.Generated, len(v.Generated))
		for _, g := range v.Generated {
			t := generatedTarget(g.Name)
			if _, dup := d.generated[t]; dup {
				continue
			}
			d.generated[t] = g
			d.outputs = append(d.outputs, t)
		}
	}
	return nil
}

// pending lists the outputs still to try: those that have not accepted.
func (d *delivery) pending() []string {
	var out []string
	for _, o := range d.outputs {
		if slices.Contains(d.rec.Accepted[o], "*") {
			continue
		}
		if g, ok := d.generated[o]; ok && d.generatedDone(o, g) {
			continue
		}
		out = append(out, o)
	}
	return out
}

// generatedDone reports whether every recipient of a generated message
// has answered for good, on this try or an earlier one.
func (d *delivery) generatedDone(target string, g plugin.Generated) bool {
	if slices.Contains(d.rec.Refused[target], "*") {
		return true
	}
	for _, r := range g.Message.Envelope.Recipients {
		if !slices.Contains(d.rec.Accepted[target], r) && !slices.Contains(d.rec.Refused[target], r) {
			return false
		}
	}
	return len(g.Message.Envelope.Recipients) > 0
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
func (d *delivery) answered(results []plugin.RecipientResult, err error) error {
	if err := d.must(stateSending); err != nil {
		return err
	}
	name := d.sending
	d.rec.Sending = slices.DeleteFunc(d.rec.Sending, func(s string) bool { return s == name })
	if len(d.rec.Sending) == 0 {
		d.rec.Sending = nil
	}
	d.state, d.sending = stateFiltered, ""
	if _, ok := d.generated[name]; ok {
		d.generatedAnswered(name, results, err)
		return nil
	}
	switch {
	case err != nil && plugin.IsInDoubt(err):
		d.temp = append(d.temp, fmt.Sprintf("%s: %v", name, err))
		if !slices.Contains(d.rec.InDoubt, name) {
			d.rec.InDoubt = append(d.rec.InDoubt, name)
		}
		d.doubted = true
	case err != nil && isRefusedPlace(err):
		// The destination refused where the message was to go, not the
		// message: it stays at its source, out of the quarantine, until
		// the config sends it elsewhere (plugin.RefusedPlaceError).
		d.temp = append(d.temp, fmt.Sprintf("%s: %v", name, err))
	case err != nil && plugin.IsPermanent(err):
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
		case plugin.IsPermanent(r.Err):
			if d.rec.Refused == nil {
				d.rec.Refused = map[string][]string{}
			}
			d.rec.Refused[name] = append(d.rec.Refused[name], r.Recipient)
			d.rec.Reasons = append(d.rec.Reasons, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
			if d.refusedBy == nil {
				d.refusedBy = map[string]error{}
			}
			d.refusedBy[r.Recipient] = r.Err
		default:
			d.temp = append(d.temp, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
		}
	}
	return nil
}

// isRefusedPlace reports whether err is a destination's refusal of the
// place a message was to go to (plugin.RefusedPlaceError).
func isRefusedPlace(err error) bool {
	_, ok := plugin.PlaceRefused(err)
	return ok
}

// generatedAnswered is answered for a generated message: refusals for good
// are noted (and not tried again) without making the message it was
// generated from a refused one.
func (d *delivery) generatedAnswered(name string, results []plugin.RecipientResult, err error) {
	refuse := func(who, why string) {
		if d.rec.Refused == nil {
			d.rec.Refused = map[string][]string{}
		}
		d.rec.Refused[name] = append(d.rec.Refused[name], who)
		d.genFailed = append(d.genFailed, why)
	}
	switch {
	case err != nil && plugin.IsInDoubt(err):
		d.temp = append(d.temp, fmt.Sprintf("%s: %v", name, err))
		if !slices.Contains(d.rec.InDoubt, name) {
			d.rec.InDoubt = append(d.rec.InDoubt, name)
		}
		d.doubted = true
		return
	case err != nil && plugin.IsPermanent(err):
		refuse("*", fmt.Sprintf("%s: %v", name, err))
		return
	case err != nil:
		d.temp = append(d.temp, fmt.Sprintf("%s: %v", name, err))
		return
	case len(results) == 0:
		d.rec.Accepted[name] = []string{"*"}
	}
	for _, r := range results {
		switch {
		case r.Err == nil:
			if !slices.Contains(d.rec.Accepted[name], r.Recipient) {
				d.rec.Accepted[name] = append(d.rec.Accepted[name], r.Recipient)
			}
		case plugin.IsPermanent(r.Err):
			refuse(r.Recipient, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
		default:
			d.temp = append(d.temp, fmt.Sprintf("%s: <%s>: %v", name, r.Recipient, r.Err))
		}
	}
}

// placed records where output put the message (plugin.Delivery.Placed),
// while it is being sent there.
func (d *delivery) placed(output, where string) {
	if d.state != stateSending || d.sending != output {
		return
	}
	if d.rec.Where == nil {
		d.rec.Where = map[string]string{}
	}
	d.rec.Where[output] = where
}

// skipped records an output that was not tried (it is backing off, or
// it does not exist).
func (d *delivery) skipped(output, why string, permanent bool) error {
	if err := d.must(stateFiltered); err != nil {
		return err
	}
	if _, ok := d.generated[output]; ok && permanent {
		if d.rec.Refused == nil {
			d.rec.Refused = map[string][]string{}
		}
		d.rec.Refused[output] = []string{"*"}
		d.genFailed = append(d.genFailed, output+": "+why)
		return nil
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
	case len(d.outputs) == len(d.generated) && !d.dropped:
		d.state = stateRefused
		d.perm = append(d.perm, "no output to deliver to (the pipeline has none and no filter routed it)")
	case len(d.temp) > 0:
		d.state = stateDeferred
	case refused:
		d.state = stateRefused
	case d.dropped:
		d.state, d.rec.Settled = stateSettled, ledger.Dropped
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

// rejected records that the source took the refused message back (an SMTP
// client still waiting was told 5xx): it is settled without a copy kept.
func (d *delivery) rejected() error {
	if err := d.must(stateRefused); err != nil {
		return err
	}
	d.state, d.rec.Settled = stateSettled, ledger.Rejected
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
