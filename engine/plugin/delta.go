package plugin

import "context"

// DeltaSession is implemented by sessions that can list only what changed
// at the source since an earlier listing (IMAP CONDSTORE: a folder's
// HIGHESTMODSEQ, FETCH CHANGEDSINCE), so that a poll of a mailbox where
// nothing changed costs a command per folder, not a line per message.
type DeltaSession interface {
	// ListSince lists what changed since checkpoint cp, which an earlier
	// ListSince of this input returned (nil: none; list everything). The
	// engine calls it instead of List. An error means the listing is not
	// complete, as for List.
	ListSince(ctx context.Context, cp []byte) (Delta, error)
}

// Delta is what a DeltaSession lists.
type Delta struct {
	Listing
	// Partial is set when Items holds only what changed since the
	// checkpoint: messages that are new, and messages whose flags
	// changed. Every message not listed is as the last listing had it. A
	// session gives a full listing instead (Partial unset: Items is
	// everything) whenever its ids may have changed meaning (an IMAP
	// folder's UIDVALIDITY), so Scheme is the checkpoint's, and whenever
	// its settle action changed since the checkpoint (a mailbox kept, then
	// to be emptied: the messages settled before must be listed to be
	// committed).
	Partial bool
	// Complete names the places, as id prefixes (an IMAP folder's
	// "Archive/1234/"), that a partial listing lists whole because
	// messages left them: a record of an id under one of them that is not
	// listed is about a message gone from the source.
	Complete []string
	// Checkpoint is where this listing stands. The engine keeps it only
	// once every listed message was dealt with (delivered, dropped,
	// quarantined, held, or settled before), so that one left for later
	// is listed again.
	Checkpoint []byte
}
