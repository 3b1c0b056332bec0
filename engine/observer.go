package engine

import (
	"time"
)

// Observer is told what happens, for metrics, a migration's progress and
// the status page. Every method must be cheap and safe to call from many
// goroutines. Its events and Stats are counted in one place (poll.done), so
// that what an observer counts and what a poll returns agree.
type Observer interface {
	// MessageFetched: a message was read from its source (Stats.Fetched).
	MessageFetched(input, folder string, bytes int64)
	// MessageDone: one message's turn in a poll (or a resend) ended with
	// ev.Outcome; a poll gives each listed message it decided on one.
	MessageDone(ev MessageEvent)
	// OutputDone: an output answered one delivery attempt.
	OutputDone(ev OutputEvent)
	// PollDone: a poll of an input ended (Err nil: the whole listing was
	// dealt with).
	PollDone(ev PollEvent)
	// Reloaded: a reload was tried; err nil means the new config is in force.
	Reloaded(err error)
}

// MessageEvent is one message's outcome.
type MessageEvent struct {
	Input, Folder string
	Outcome       Outcome
	Bytes         int64         // as fetched; 0 for a message only committed
	Took          time.Duration // from reading it to its outcome
	// InDoubt is set when an earlier try may have reached an output
	// without its answer (see plugin.InDoubt): it was delivered again.
	InDoubt bool
}

// OutputEvent is an output's answer to one delivery attempt.
type OutputEvent struct {
	Output string
	Err    error // nil: accepted; see plugin.IsPermanent, plugin.IsInDoubt
	Bytes  int64
	Took   time.Duration
}

// PollEvent is the end of one poll.
type PollEvent struct {
	Input string
	Err   error
	Stats Stats
	Took  time.Duration
}

// NopObserver does nothing; embed it to implement only some events.
type NopObserver struct{}

func (NopObserver) MessageFetched(string, string, int64) {}
func (NopObserver) MessageDone(MessageEvent)             {}
func (NopObserver) OutputDone(OutputEvent)               {}
func (NopObserver) PollDone(PollEvent)                   {}
func (NopObserver) Reloaded(error)                       {}

var _ Observer = NopObserver{}
