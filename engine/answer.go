package engine

import (
	"log/slog"
	"strings"

	"github.com/mailflow/mailflow/engine/plugin"
)

// A source that waits for each message's fate (plugin.Answerer: an SMTP or
// LMTP client held until its message was delivered) is told it, and may
// take a refused message back, as a 5xx to the client, instead of the
// quarantine keeping it. The client then still has the message: nothing
// is lost, and its sender gets the refusal from its own server.

// answerer is a recorder whose source waits for its message's fate.
type answerer interface {
	// offer offers a refusal to the source, and reports whether the
	// source took the message back.
	offer(a plugin.Answer) bool
}

// takenBack offers the refused delivery d to its source, when the
// recorder has one that waits; if the source takes it back, d is settled
// as rejected.
func (e *Engine) takenBack(r recorder, d *delivery, log *slog.Logger, step func(error) bool) bool {
	back, ok := r.(answerer)
	if !ok {
		return false
	}
	a := plugin.Answer{Outcome: plugin.Rejected, Reason: strings.Join(d.reasons(), "; "), Accepted: len(d.rec.Accepted) > 0}
	switch {
	case d.rejectedBy != "":
		a.Filter, a.Reason = d.rejectedBy, d.rejectWhy
	case len(d.perm) == 0 && len(d.refusedBy) > 0:
		// Only some recipients were refused (on this try): say which.
		a.Recipients = d.refusedBy
	}
	if !back.offer(a) || !step(d.rejected()) {
		return false
	}
	log.Warn("rejected: refused for good, and answered so to the client that handed it over, which keeps it", "reason", a.Reason)
	return true
}

// offer implements answerer for a polled message whose session waits.
func (r ledgerRecorder) offer(a plugin.Answer) bool {
	if r.answer == nil {
		return false
	}
	return r.answer.Answer(r.it, a)
}

// answerOf is the fate of a message as its waiting source is told it,
// once its try ended (a rejection was told when it was offered).
func answerOf(res settleResult) plugin.Answer {
	a := plugin.Answer{Outcome: plugin.Deferred, Accepted: res.accepted}
	switch res.outcome {
	case Delivered:
		a.Outcome = plugin.Delivered
	case Dropped:
		a.Outcome = plugin.Dropped
	case Quarantined:
		a.Outcome = plugin.Quarantined
	case Left:
		a.Outcome = plugin.Left
	}
	switch {
	case res.reason != "":
		a.Reason, a.Filter = res.reason, res.filter
	case res.err != nil:
		a.Reason = res.err.Error()
	}
	return a
}
