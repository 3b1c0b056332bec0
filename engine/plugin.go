package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/mailflow/mailflow/engine/message"
)

// The lifecycle of every plugin, in the order the engine calls it:
//
//	new (the registry's constructor: no side effects)
//	→ decode (the TOML table into the plugin's exported struct)
//	→ Provision(env) (optional: receive logger, ledger, spool options)
//	→ Init() (optional: validate the config, no I/O)
//	→ Start(ctx) (optional: the I/O that should fail at start-up, such as
//	  creating a Maildir; never called by "mailflow check")
//	→ use (Open / Deliver / Filter, from several goroutines where stated)
//	→ Close() (optional: after the last use has returned)
//
// If any step fails, what was set up so far is closed again.

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
	// (the connection dropped, the stream is out of step).
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

// Finder is implemented by outputs that can say what they hold (IMAP),
// so that a migration can check that everything arrived.
type Finder interface {
	// Holds returns how many messages of each identity (message.Identity)
	// are where the output puts mail that came from folder, whose
	// SPECIAL-USE was role.
	Holds(ctx context.Context, folder, role string) (map[string]int, error)
}

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
	// engine.InDoubt): an output that can look (IMAP SEARCH) does, before
	// delivering again.
	InDoubt bool
}

// RecipientResult is the outcome for one recipient. A nil Err means accepted.
type RecipientResult struct {
	Recipient string
	Err       error
}

// Filter inspects and may change a message, and decides where it goes.
type Filter interface {
	// Filter is called from several goroutines at once, each with its own
	// message. An error means the filter broke: the engine quarantines the
	// message with the error, it never drops it.
	Filter(ctx context.Context, msg *message.Message) (Verdict, error)
}

// Action is what a filter decided.
type Action int

const (
	// ActionKeep goes on to the next filter, then to the pipeline's outputs.
	ActionKeep Action = iota
	// ActionRoute replaces the outputs; the chain goes on.
	ActionRoute
	// ActionRedirect replaces the envelope recipients; the chain goes on.
	ActionRedirect
	// ActionDrop ends the chain and commits the message at its source without
	// delivering it anywhere.
	ActionDrop
	// ActionQuarantine ends the chain and puts the message in the quarantine.
	ActionQuarantine
	// ActionLeave ends the chain and leaves the message at its source,
	// untouched and undelivered: it is read again on the next poll (and
	// filtered again). For "not yet" and "not this one" (migrate --since).
	ActionLeave
)

func (a Action) String() string {
	return [...]string{"keep", "route", "redirect", "drop", "quarantine", "leave"}[a]
}

// Verdict is a filter's decision about one message.
type Verdict struct {
	Action     Action
	Outputs    []string // with ActionRoute
	Recipients []string // with ActionRedirect
	Reason     string   // with ActionDrop, ActionQuarantine and ActionLeave
	// Generated are messages the filter made from this one (a vacation
	// reply, a notification), whatever the action.
	Generated []Generated
}

// Generated is a message a filter made from the message it was given. It
// is delivered as part of settling that message: its delivery is kept in
// the same ledger record, so that a crash or a retry never sends it twice
// and the message it was made from leaves its source only once it was
// accepted. An output refusing it for good is logged, not quarantined: a
// reply that cannot be delivered is no reason to keep the mail it answers.
// It is sent for a message delivered or dropped; not for one left at its
// source or quarantined.
type Generated struct {
	// Name is unique among the messages generated from one message and
	// the same each time that message is filtered ("vacation.lua:vacation").
	Name    string
	Output  string
	Message *message.Message // its Envelope names sender and recipients
}

// Provisioner is implemented by plugins that need the engine's services.
type Provisioner interface {
	// Provision is called once, after the config was decoded, before Init.
	Provision(env Env) error
}

// Initializer is implemented by plugins that validate their config.
type Initializer interface {
	// Init checks the decoded config and sets defaults. It does no I/O.
	Init() error
}

// Starter is implemented by plugins with I/O worth failing at start-up for
// (a Maildir output creates its directories).
type Starter interface {
	// Start is called once after Init, before the first use, by "run" and
	// "migrate" but not by "check". On error the plugin is closed.
	Start(ctx context.Context) error
}

// FileUser is implemented by plugins that read files named in their config
// (a password_file, a tls_ca_file). A plugin is rebuilt on reload when the
// bytes of one of these files changed, and the files are watched.
type FileUser interface {
	// Files lists the absolute paths the plugin read at Init.
	Files() []string
}

// Closer is implemented by plugins that hold resources (connections).
type Closer interface {
	// Close is called once, after the last call into the plugin returned.
	Close() error
}

// Env is what the engine gives a plugin at Provision.
type Env struct {
	Name   string // the configured name
	Logger *slog.Logger
	Spool  message.SpoolOptions
	// BaseDir is the directory of the config file; relative paths in a
	// plugin's config are relative to it.
	BaseDir string
	// StateDir is the config's state_dir (OAuth tokens live under it), and
	// ConfigPath the config file (for hints that name a command).
	StateDir   string
	ConfigPath string
	// Instance names this mailflow in the trace field its outputs add to
	// what they send (loop detection): the config's instance, or the host
	// name.
	Instance string
}
