package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/message"
)

// recorder keeps the record of one delivery: the ledger for a polled
// message, the quarantine entry for a resent one.
type recorder interface {
	// note records rec at once without waiting for the disk: it survives
	// the process being killed (Ledger.Note).
	note(rec ledger.Record) error
	// put records rec durably before returning.
	put(rec ledger.Record) error
	// siblings is how many other messages of the source, from the same
	// folder and with the same identity (message.Identity), the ledger has
	// as accepted by output (see Delivery.Siblings).
	siblings(output string) int
}

// settleResult is how one try at a message ended.
type settleResult struct {
	state   deliveryState // stateSettled, stateDeferred or stateLeft
	stats   Stats
	outcome string
	entry   string // the quarantine entry made, if any
	err     error  // why it was deferred
}

// settle takes msg through pipeline pipeName and its outputs, driving a
// delivery from rec (what earlier tries achieved) and recording every step
// with r. Only a result in stateSettled may be committed at the source.
//
// Cancelling ctx is a shutdown: the chain still runs to its verdict, but no
// output is handed the message any more (it is released to its source), and
// outputs get ctx so that one waiting (a rate limit, a connection) gives up.
func (e *Engine) settle(ctx context.Context, s *Setup, pipeName string, msg *message.Message, rec ledger.Record, r recorder) settleResult {
	start := time.Now()
	log := e.Log.With("input", msg.Source.Input, "id", msg.Source.ID, "message_id", msg.MessageID(), "bytes", msg.OriginalSize())
	var res settleResult
	if len(rec.Sending) > 0 && rec.Settled == "" {
		// mailflow was killed while handing this message to these outputs:
		// they may have it already. It is sent again (losing it would be
		// worse), and said so.
		log.Warn("in doubt: this message was being delivered when mailflow was stopped hard; delivering it again, so the destination may get it twice",
			"outputs", strings.Join(rec.Sending, ","))
		res.stats.InDoubt = 1
		rec.InDoubt = append(rec.InDoubt, rec.Sending...)
		rec.Sending = nil
	}
	d := newDelivery(rec)
	attrs := []any{}
	p := s.pipelines[pipeName]
	if p == nil {
		res.err = fmt.Errorf("pipeline %q is not defined", pipeName)
		return e.finished(log, msg, start, d, res, attrs)
	}
	if msg.HeaderErr != nil {
		log.Warn("header could not be parsed; the message goes on with its bytes untouched", "err", msg.HeaderErr)
	}
	v, by, err := p.chain.Run(context.WithoutCancel(ctx), msg)
	switch {
	case err != nil:
		v = Verdict{Action: ActionQuarantine, Reason: fmt.Sprintf("filter %s: %v", by, err)}
	case v.Action == ActionQuarantine:
		v.Reason = fmt.Sprintf("filter %s: %s", by, v.Reason)
	}
	if by != "" {
		attrs = append(attrs, "script", by)
	}
	if v.Reason != "" && v.Action != ActionQuarantine {
		attrs = append(attrs, "reason", v.Reason)
	}
	_ = d.filtered(v, p.outputs)
	if d.state == stateFiltered {
		attrs = append(attrs, "outputs", strings.Join(d.outputs, ","))
		if len(msg.Envelope.Recipients) > 0 {
			attrs = append(attrs, "recipients", strings.Join(msg.Envelope.Recipients, ","))
		}
		e.deliver(ctx, s, msg, d, r, log)
		if d.doubted {
			log.Warn("in doubt: the server may have taken the message although its reply never came (SMTP cannot tell); it stays at its source and is delivered again, so the destination may get it twice",
				"outputs", strings.Join(d.rec.InDoubt, ","))
			res.stats.InDoubt = 1
		}
		_ = d.finish()
	}
	if d.state == stateRefused {
		entry, err := e.Quarantine.Put(msg, QuarantineEntry{Pipeline: p.name, Reason: strings.Join(d.reasons(), "; "), Accepted: d.rec.Accepted})
		if err != nil {
			d.state, res.err = stateDeferred, err
		} else {
			res.entry = entry.ID
			_ = d.quarantined()
			log.Warn("quarantined", "quarantine_id", entry.ID, "reason", entry.Reason)
		}
	}
	switch d.state {
	case stateSettled:
		if err := r.put(d.rec); err != nil {
			// Without the record the source must keep the message: the next
			// poll delivers (or quarantines) it once more rather than lose it.
			_ = d.unrecorded()
			res.err = fmt.Errorf("ledger: %w", err)
		}
	case stateDeferred:
		if res.err == nil {
			res.err = fmt.Errorf("deferred: %s", strings.Join(d.temp, "; "))
		}
		// Keep who accepted, so that the retry sends only to the rest; and
		// clear Sending for good, so that a crash later is not taken for a
		// delivery in doubt.
		if len(d.rec.Accepted) > 0 || len(d.rec.Refused) > 0 || len(d.rec.InDoubt) > 0 {
			if err := r.put(d.rec); err != nil {
				log.Error("ledger: could not record a partial delivery; the retry may send again to recipients that accepted", "err", err)
			}
		}
	}
	return e.finished(log, msg, start, d, res, attrs)
}

// deliver hands msg to every output of d that has not accepted it yet.
func (e *Engine) deliver(ctx context.Context, s *Setup, msg *message.Message, d *delivery, r recorder, log *slog.Logger) {
	for _, name := range d.pending() {
		out := s.outputs[name]
		if out == nil {
			_ = d.skipped(name, "no such output", true)
			continue
		}
		if ctx.Err() != nil {
			_ = d.skipped(name, "mailflow is stopping; the message stays at its source", false)
			continue
		}
		if wait := e.backoff.wait(name); wait > 0 {
			_ = d.skipped(name, fmt.Sprintf("backing off for %s after earlier failures", wait.Round(time.Second)), false)
			continue
		}
		start := time.Now()
		del := Delivery{Key: msg.Key() + "." + name, Recipients: msg.Envelope.Recipients,
			Done: append(slices.Clone(d.rec.Accepted[name]), d.rec.Refused[name]...), InDoubt: slices.Contains(d.rec.InDoubt, name),
			Siblings: r.siblings(name)}
		_ = d.started(name)
		if err := r.note(d.rec); err != nil {
			log.Warn("ledger journal", "err", err)
		}
		results, err := out.Deliver(ctx, msg, del)
		_ = d.answered(results, err)
		if err := r.note(d.rec); err != nil {
			log.Warn("ledger journal", "err", err)
		}
		e.Observer.OutputResult(name, err, msg.Size(), time.Since(start))
		switch {
		case err == nil:
			e.backoff.ok(name)
		case ctx.Err() != nil:
			// Given up for the shutdown: says nothing about the output.
		case !IsPermanent(err):
			if next := e.backoff.fail(name); next > 0 {
				e.Log.Error("output unhealthy: failing for now; messages for it wait at their source; backing off", "output", name, "retry_in", next.Round(time.Second), "err", err)
			}
		}
	}
}

// finished logs one message's outcome, tells the observer, and fills in
// the result's counts.
func (e *Engine) finished(log *slog.Logger, msg *message.Message, start time.Time, d *delivery, res settleResult, attrs []any) settleResult {
	res.state = d.state
	switch d.state {
	case stateSettled:
		res.outcome = string(d.rec.Settled)
		switch d.rec.Settled {
		case ledger.Delivered:
			res.stats.Delivered++
		case ledger.Dropped:
			res.stats.Dropped++
		case ledger.Quarantined:
			res.stats.Quarantined++
		}
	case stateLeft:
		res.outcome = "left"
		res.stats.Left++
	default:
		res.state, res.outcome = stateDeferred, "deferred"
		res.stats.Deferred++
	}
	took := time.Since(start)
	attrs = append(attrs, "outcome", res.outcome, "duration", took.Round(time.Microsecond))
	if res.err != nil {
		log.Warn("message", append(attrs, "err", res.err)...)
	} else {
		log.Info("message", attrs...)
	}
	e.Observer.MessageSettled(msg.Source.Input, msg.Folder, res.outcome, msg.OriginalSize(), took)
	return res
}

// Run takes msg through the chain and returns the combined verdict, and the
// name of the filter that decided it (or broke). Each filter sees what the
// ones before it changed. A route or redirect does not end the chain: a
// later filter may still drop the message or route it elsewhere.
func (c *Chain) Run(ctx context.Context, msg *message.Message) (Verdict, string, error) {
	var out Verdict
	by := ""
	for _, f := range c.filters {
		v, err := f.f.Filter(ctx, msg)
		if err != nil {
			return out, f.name, err
		}
		switch v.Action {
		case ActionKeep:
		case ActionRoute:
			out.Outputs, by = v.Outputs, f.name
		case ActionRedirect:
			msg.Envelope.Recipients, by = v.Recipients, f.name
		case ActionDrop, ActionQuarantine, ActionLeave:
			return v, f.name, nil
		}
	}
	return out, by, nil
}
