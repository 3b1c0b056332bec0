package engine

import (
	"context"
	"errors"
	"time"

	"github.com/mailflow/mailflow/engine/ledger"
	"github.com/mailflow/mailflow/engine/quarantine"
)

// Resend puts a quarantined message back through its pipeline. It needs
// no ledger: what the message's earlier tries achieved is in its entry
// (Accepted), so recipients that already have it do not get it again, and
// a partial resend is written back there. The entry is removed once the
// message is settled (a new one is made if it is quarantined again). It
// may run while "mailflow run" runs: the entry is claimed first.
func (e *Engine) Resend(ctx context.Context, id string) (string, error) {
	release, err := e.Quarantine.Claim(id)
	if err != nil {
		return "", err
	}
	defer release()
	entry, msg, err := e.Quarantine.Get(id)
	if err != nil {
		return "", err
	}
	defer msg.Close()
	g := e.gens.pin()
	defer g.unpin()
	s := g.setup
	pipeName := entry.Pipeline
	if s.pipelines[pipeName] == nil {
		if ic := s.Config.Input(entry.Input); ic != nil {
			pipeName = ic.Pipeline
		}
	}
	rec := ledger.Record{Accepted: entry.Accepted}
	start := time.Now()
	res := e.settle(ctx, s, pipeName, msg, rec, &entryRecorder{q: e.Quarantine, entry: entry})
	e.observer.MessageDone(MessageEvent{Input: entry.Input, Outcome: res.outcome, Bytes: msg.OriginalSize(), Took: time.Since(start), InDoubt: res.inDoubt})
	switch {
	case res.state == stateLeft:
		return "left by a filter; still quarantined", nil
	case res.state != stateSettled:
		return "", res.err
	case entry.Held:
		// The source still holds the original; its record says held, and
		// that stays so until a person removes the message there.
	}
	outcome := string(res.outcome)
	if res.entry != "" {
		outcome = "quarantined again as " + res.entry
	}
	return outcome, e.Quarantine.Remove(id)
}

// entryRecorder keeps a resend's progress in the quarantine entry itself.
type entryRecorder struct {
	q     *quarantine.Store
	entry quarantine.Entry
}

func (r *entryRecorder) note(rec ledger.Record) error { return r.put(rec) }

// siblings is 0: a resent message is not compared with others.
func (r *entryRecorder) siblings(string) int { return 0 }

func (r *entryRecorder) put(rec ledger.Record) error {
	if rec.Settled != "" {
		return nil // the entry is removed right after
	}
	r.entry.Accepted = rec.Accepted
	r.entry.At = time.Now().UTC()
	if err := r.q.Update(r.entry); err != nil {
		return errors.Join(errors.New("recording a partial resend"), err)
	}
	return nil
}
