package engine

import (
	"context"
	"errors"
	"log/slog"
)

// The lifecycle of every plugin, in the order the engine calls it:
//
//	new (the registry's constructor: no side effects)
//	→ decode (the TOML table into the plugin's exported struct)
//	→ Provision(env) (optional: receive logger, ledger, spool options)
//	→ Init() (optional: validate the config, no I/O)
//	→ use (Open / Deliver / Filter, from several goroutines where stated)
//	→ Close() (optional: after the last use has returned)
//
// If any step fails, what was set up so far is closed again.

// Input is a source of messages, polled on a schedule.
type Input interface {
	// Open starts one poll of the source: a POP3 session, a directory scan.
	// The engine never has two sessions of one input open at once.
	Open(ctx context.Context) (Session, error)
}

// Session is one poll of an input.
type Session interface {
	// Next returns the next message and the function that settles it. It
	// returns ErrEndOfInput when the source has nothing more this poll.
	// Next is called from one goroutine; acks may come from others, in any
	// order, while Next is still being called.
	Next(ctx context.Context) (*Message, AckFunc, error)
	// Close ends the poll. It is called once, after every message returned
	// by Next has been acked. A source that commits at the end (POP3 QUIT)
	// commits here; an error means the commits may not have happened, which
	// the ledger makes safe to retry.
	Close(ctx context.Context) error
}

// AckFunc settles one message with its source. A nil error commits: the
// source may now delete the message. A non-nil error releases it: the message
// stays at the source and will be read again on a later poll. It is called
// exactly once per message and is safe to call from any goroutine.
type AckFunc func(ctx context.Context, err error) error

// ErrEndOfInput is returned by Session.Next when the poll has no more messages.
var ErrEndOfInput = errors.New("end of input")

// Output delivers messages to a destination.
type Output interface {
	// Deliver hands one message to the destination. It is called from
	// several goroutines at once. It returns a result per recipient where
	// the destination has recipients; an error means the whole message
	// was not accepted (see Temporary and Permanent).
	Deliver(ctx context.Context, msg *Message, d Delivery) ([]RecipientResult, error)
}

// Delivery says what to deliver for one message to one output.
type Delivery struct {
	// Key is stable across retries of the same message; outputs that can
	// recognise a copy they already hold use it to stay idempotent.
	Key string
	// Recipients, when not empty, replace the output's own recipients.
	Recipients []string
	// Done lists recipients that accepted the message on an earlier try;
	// the output must not send to them again.
	Done []string
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
	Filter(ctx context.Context, msg *Message) (Verdict, error)
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

// Closer is implemented by plugins that hold resources (connections).
type Closer interface {
	// Close is called once, after the last call into the plugin returned.
	Close() error
}

// Env is what the engine gives a plugin at Provision.
type Env struct {
	Name   string // the configured name
	Logger *slog.Logger
	Spool  SpoolOptions
	// Ledger answers, for inputs, which source ids were already delivered,
	// so that a source can skip downloading them.
	Ledger SourceLedger
	// BaseDir is the directory of the config file; relative paths in a
	// plugin's config are relative to it.
	BaseDir string
}

// SourceLedger is the view of the delivery ledger that an input gets.
type SourceLedger interface {
	// Delivered reports whether the message with this source id was fully
	// settled (delivered, dropped or quarantined) on an earlier poll.
	Delivered(id string) bool
	// Forget removes records of ids that left the source for good, so that
	// the ledger does not grow without end.
	Forget(ids []string) error
	// Known lists every id the ledger holds for this input.
	Known() []string
}
