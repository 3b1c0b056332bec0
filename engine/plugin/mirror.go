package plugin

import "context"

// An output that can change a message it holds follows the source after
// delivery: flags changed there (read, flagged, a keyword), and, when its
// config asks for it, deletions. The engine finds these changes in the
// listings and tells each output that accepted the message.

// Placement names a message an output holds.
type Placement struct {
	// Where is what the output said when it took the message
	// (Delivery.Placed); "" when it did not (a record from before).
	Where string
	// Folder and FolderRole are the message's source folder and its
	// SPECIAL-USE, as at delivery, and Identity its message.Identity: how
	// to find it where Where is not known.
	Folder, FolderRole, Identity string
}

// FlagMirror is implemented by outputs that can change the flags of a
// message they hold (IMAP STORE).
type FlagMirror interface {
	// SetFlags sets the flags added at the source and clears the ones
	// removed there, on the message at p, leaving the rest as the
	// destination has them. ErrNotHeld says the output does not hold it
	// (a person deleted it there): nothing is retried.
	SetFlags(ctx context.Context, p Placement, added, removed []string) error
}

// FlagChange is one message's flag change for FlagBatchMirror.
type FlagChange struct {
	Placement      Placement
	Added, Removed []string
}

// FlagBatchMirror is implemented by FlagMirrors that carry many changes at
// once (IMAP: per folder one SELECT, one SEARCH for the copies still
// there, one UID STORE per kind of change), so that a pass after a hundred
// flag changes costs a few round trips, not a few a message.
type FlagBatchMirror interface {
	// SetFlagsMany does SetFlags for each of changes, and returns its
	// error for each, in order (ErrNotHeld as SetFlags does).
	SetFlagsMany(ctx context.Context, changes []FlagChange) []error
}

// DeleteMirror is implemented by outputs that can delete a message they
// hold when someone deleted it at the source.
type DeleteMirror interface {
	// MirrorsDeletes says whether the output's config asks for it
	// (IMAP sync_deletes); only then is Delete called.
	MirrorsDeletes() bool
	// Delete removes the message at p. ErrNotHeld says it is not there:
	// nothing to do.
	Delete(ctx context.Context, p Placement) error
}

// ErrNotHeld is returned by FlagMirror and DeleteMirror when the output
// does not hold the message it is asked to change.
var ErrNotHeld = notHeld{}

type notHeld struct{}

func (notHeld) Error() string { return "the destination does not hold the message" }
