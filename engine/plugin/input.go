package plugin

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/mailflow/mailflow/engine/message"
)

// Input is a source of messages, polled on a schedule.
//
// An input only describes its source and does what the engine tells it:
// it lists what the source holds, fetches messages by id, and commits
// (deletes, moves, flags) the ids the engine says are settled. Which
// messages to fetch, whether a message was delivered before, and when a
// message may leave its source are the engine's decisions, made from the
// ledger; an input keeps no record of its own.
type Input interface {
	// Open starts one poll of the source: a POP3 session, a directory scan.
	// The engine never has two sessions of one input open at once.
	Open(ctx context.Context) (Session, error)
}

// Session is one poll of an input. The engine calls List once, then Fetch
// at most once, then Commit at most once, then Close; all from one goroutine.
type Session interface {
	// List returns what the source holds now. An error means the listing
	// is not complete: the engine then fetches and commits nothing.
	List(ctx context.Context) (Listing, error)
	// Fetch reads the messages of items, calling each once per item (in
	// their order, or, for a source read over several sessions at once,
	// from several goroutines at once) with a reader over the message's bytes exactly as the source
	// holds them (valid only during the call), or with a non-nil error when
	// that one message could not be read but the session is still usable
	// (it vanished, the server refused it). When each returns an error,
	// Fetch stops and returns it. Fetch's own error means the session broke
	// (the connection dropped, the stream is out of step). Fetch does not
	// change items: they may be the listing's own.
	Fetch(ctx context.Context, items []Item, each func(Item, io.Reader, error) error) error
	// Commit applies the source's settle action (delete, move, flag, or
	// nothing for a source that keeps its mail) to items: the engine
	// recorded every one of them durably as settled first. It returns the
	// items it could not commit, which stay at the source for the next
	// poll; an error means none may have been committed. A source that
	// commits at the end (POP3's QUIT) may only queue here.
	Commit(ctx context.Context, items []Item) (failed []Item, err error)
	// Close ends the session, committing what Commit queued. An error means
	// those commits may not have happened, which the ledger makes safe: the
	// next poll commits them again.
	Close(ctx context.Context) error
}

// Listing is what a source holds at the start of a session.
type Listing struct {
	// Scheme names how the source made its ids ("uidl", "maildir",
	// "pop3-header"). The ledger remembers it: records made under one
	// scheme say nothing about ids made under another, so when it changes
	// the engine identifies messages by their content for that poll.
	Scheme string
	// Stable is true when an id names one message for as long as that
	// message is at the source (POP3 UIDL, a Maildir file name). When it is
	// false the ids are only hints (made from a header, a position), and
	// the engine commits nothing on an id alone: it fetches the message and
	// compares its digest with the record first.
	Stable bool
	// Keeps is true when a commit leaves the message at the source (keep
	// mode, a flag). Then a settled message is expected to be listed again,
	// and is passed over on its id and size. Otherwise a settled message
	// still listed is one whose commit did not take: it is fetched and its
	// content checked before it is committed again, so that an id reused
	// for another message never deletes that message unread.
	Keeps bool
	// Unique is true when the source never gives an id to another message
	// (IMAP: a UID is never reused under one UIDVALIDITY, RFC 3501 2.3.1.1).
	// Then a settled message still listed, with the size it had, is that
	// same message whose commit did not take: it is committed again on its
	// id, without being fetched.
	Unique bool
	Items  []Item
	// Folders are the source's folders with their FolderState tokens as
	// the listing found them, where the session says them in the same
	// command (IMAP's LIST ... RETURN (STATUS ...)); nil otherwise. A
	// migration's verification takes them rather than log in again to ask
	// whether anything changed there since it last checked.
	Folders []Folder
}

// Reusable is implemented by sessions whose Close does nothing but end
// the session (what a poll settles, Commit did at the source), so that
// an engine may keep one after a poll for a look that follows it
// (engine.WithSessionsReused) rather than log in again. A POP3 session,
// whose QUIT deletes, is not one.
type Reusable interface {
	Reusable() bool
}

// Item is one message as a listing describes it.
type Item struct {
	ID   string // the source's id for it, under the listing's scheme
	Size int64  // bytes, as the source announces them; -1 when unknown
	// What else the source knows, where it knows it.
	Folder string // levels separated by "/", whatever the source's separator
	// FolderRole is the folder's SPECIAL-USE attribute (\Sent, \Drafts,
	// \Junk, \Trash, \Archive): an output maps it to its own folder of
	// that use, whatever that is called.
	FolderRole string
	Flags      []string
	Date       time.Time
	// Identity names the message across mailboxes (message.Identity: its
	// Message-ID, or a digest of Date, From, Subject and size), where the
	// listing knows it; a migration's verification looks for it.
	Identity string
	// Received is the envelope and client of a message that was handed
	// over SMTP or LMTP (the smtp and lmtp inputs): the engine gives it to
	// the message, whose envelope it becomes.
	Received *message.Received
	// Ref is the input's own handle for the message (a POP3 message
	// number, a file path); the engine passes it back untouched.
	Ref any
}

// MailWaiter is implemented by inputs that can be told when new mail
// arrives (IMAP IDLE), so that it is fetched within seconds instead of at
// the next scheduled poll.
type MailWaiter interface {
	// WaitForMail blocks until the source has mail it did not have at the last
	// listing (nil: poll now), ctx ends, or watching fails (an error; the
	// engine tries again with back-off, and polls on schedule meanwhile).
	// ErrNotWatching says the input does not watch (not configured, or the
	// server cannot): the engine keeps to the schedule.
	WaitForMail(ctx context.Context) error
}

// ErrNotWatching is returned by MailWaiter.WaitForMail when the input does
// not watch.
var ErrNotWatching = errors.New("not watching for new mail")

// Misreader is implemented by a reader a Session hands to Fetch's each
// that can tell, once read to its end, that its bytes are not the message
// as the source holds it and that fetching again would give the same bytes
// (a POP3 server that sent a first line ".." unstuffed). Misread returns
// why, or nil. The engine then holds the message at once instead of
// fetching it fetch_attempts times.
type Misreader interface{ Misread() error }

// Identifier is implemented by sessions whose listing leaves Item.Identity
// empty because naming a message costs the server a read of it (IMAP): the
// engine asks for the identities it needs (a migration's verification, the
// messages a poll needs to count siblings of), not for every message.
type Identifier interface {
	// Identify fills in the Identity of each of items.
	Identify(ctx context.Context, items []Item) error
}

// HeaderPeeker is implemented by sessions that can read a message's
// header without fetching the whole message (POP3 TOP), for dry runs.
type HeaderPeeker interface {
	PeekHeader(ctx context.Context, it Item) ([]byte, error)
}
