package plugin

import (
	"context"

	"github.com/mailflow/mailflow/engine/message"
)

// Output delivers messages to a destination.
type Output interface {
	// Deliver hands one message to the destination. It is called from
	// several goroutines at once. It returns a result per recipient where
	// the destination has recipients; an error means the whole message
	// was not accepted (see Temporary and Permanent).
	Deliver(ctx context.Context, msg *message.Message, d Delivery) ([]RecipientResult, error)
}

// Delivery says what to deliver for one message to one output.
type Delivery struct {
	// Key is stable across retries of the same message; outputs that can
	// recognise a copy they already hold use it to stay idempotent.
	Key string
	// Recipients, when not empty, replace the output's own recipients.
	Recipients []string
	// Done lists recipients that already answered for good on an earlier
	// try (accepted, or refused with a 5xx): the output must not send to
	// them again.
	Done []string
	// Siblings is how many other messages of the source, from the same
	// folder and with the same identity (message.Identity), this output
	// accepted on earlier polls: copies that an output looking for
	// what it holds already (IMAP skip_existing) must leave to them. Mail
	// without a Message-ID can share an identity (a header-less message
	// has only its size).
	Siblings int
	// InDoubt is set when an earlier delivery of this message to this
	// output may have arrived without the output learning it (see
	// InDoubt): an output that can look (IMAP SEARCH) does, before
	// delivering again.
	InDoubt bool
	// Placed, when not nil, is called by an output that can say where it
	// put the message (IMAP: the folder, UIDVALIDITY and UID APPENDUID
	// names), before Deliver returns: the engine records it, and a later
	// change at the source goes to that copy (FlagMirror, DeleteMirror).
	Placed func(where string)
}

// Warmer is implemented by outputs that can open a connection before
// the first call that needs one, in the background, so that its login
// overlaps other work: a migration's destination logs in while the
// source is surveyed. A failed attempt is not reported: the first call
// that needs the connection dials again, and says why.
type Warmer interface {
	Warm(ctx context.Context)
}

// RecipientResult is the outcome for one recipient. A nil Err means accepted.
type RecipientResult struct {
	Recipient string
	Err       error
}

// Finder is implemented by outputs that can say what they hold (IMAP),
// so that a migration can check that everything arrived.
type Finder interface {
	// Holds returns how many messages of each identity (message.Identity)
	// are where the output puts mail that came from folder, whose
	// SPECIAL-USE was role.
	Holds(ctx context.Context, folder, role string) (map[string]int, error)
}

// FlagFinder is implemented by Finders that can also say the flags of
// each copy they hold, so that a verification compares flags and
// keywords, not only presence.
type FlagFinder interface {
	// HoldsFlags returns, per identity, the flags of each copy held where
	// the output puts mail that came from folder, whose SPECIAL-USE was
	// role.
	HoldsFlags(ctx context.Context, folder, role string) (map[string][][]string, error)
}

// FolderStater is implemented by sessions and Finders that can say
// cheaply whether a folder changed (IMAP STATUS: UIDVALIDITY,
// HIGHESTMODSEQ, MESSAGES), so that a verification passes over a folder
// that changed on neither side since it last found the two equal.
type FolderStater interface {
	// FolderState returns a token that changes whenever what the folder
	// holds, or a flag in it, changes; "" when it cannot tell. For a
	// Finder, folder and role are the source folder's, as in Holds.
	FolderState(ctx context.Context, folder, role string) (string, error)
}

// Folder is one folder of a source, as a FolderLister lists it.
type Folder struct {
	Name string // mailflow's name for it ("Archive/2024"), as Item.Folder
	Role string // its SPECIAL-USE, as Item.FolderRole
	// State is its FolderState token ("" when the source cannot tell),
	// and Messages how many messages it holds (-1: not known).
	State    string
	Messages int
}

// FolderLister is implemented by sessions that can list the folders the
// input reads, each with its FolderState token, in one command (IMAP:
// LIST ... RETURN (STATUS ...)), so that a verification of a mailbox that
// changed nowhere reads no listing.
type FolderLister interface {
	Folders(ctx context.Context) ([]Folder, error)
}

// FolderNamer is implemented by sessions that can list one folder's
// messages, as their listing would, each with its Identity (IMAP: one UID
// FETCH of flags and the header fields that name a message), so that a
// verification reads only the folders that changed, and each once rather
// than a listing and then the identities. folder is a Folder's Name.
type FolderNamer interface {
	ListNamed(ctx context.Context, folder string) ([]Item, error)
}

// FolderChangeNamer is implemented by FolderNamers that can list only the
// messages of a folder that came, or whose flags changed, since it stood
// at one of its FolderState tokens (IMAP: UID FETCH ... (CHANGEDSINCE
// m)), so that a verification after a pass that changed a few messages
// reads those, not the folder: came are the messages that came since,
// changed those that were there then and whose flags changed, both as
// ListNamed lists them. ok is false when that cannot be told soundly: the
// token is of another folder life (UIDVALIDITY) or not understood, a
// message left the folder since, or the input selects which messages it
// reads. The folder must then be read whole.
type FolderChangeNamer interface {
	ListNamedSince(ctx context.Context, folder, since string) (came, changed []Item, ok bool, err error)
}

// FlagFinderSince is FolderChangeNamer's counterpart for a FlagFinder:
// HoldsFlags of only the copies that came (came), or were there and whose
// flags changed (changed), since the destination folder stood at the
// FolderState token since; ok is false when that cannot be told soundly
// (as for FolderChangeNamer).
type FlagFinderSince interface {
	HoldsFlagsSince(ctx context.Context, folder, role, since string) (came, changed map[string][][]string, ok bool, err error)
}

// FolderStatesFinder is implemented by Finders that can say the
// FolderState tokens of many folders at once (IMAP: a STATUS each, sent
// together).
type FolderStatesFinder interface {
	// FolderStates returns, for each of folders (the source's, as in
	// Holds), the token of the folder where its mail goes.
	FolderStates(ctx context.Context, folders []Folder) ([]string, error)
}

// PlaceMaker is implemented by outputs that make the place a message goes
// to before they deliver there (IMAP: CREATE of its folder), so that a
// migration learns, before it moves anything, which places the destination
// refuses.
type PlaceMaker interface {
	// MakePlace makes, unless it is there, the place mail from folder
	// (whose SPECIAL-USE was role) goes to. A *RefusedPlaceError says the
	// destination will not have it; another error says nothing for good.
	MakePlace(ctx context.Context, folder, role string) error
}
