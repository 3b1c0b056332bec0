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
	// Waiting: an input's poll loop waits for its next poll (Next), and
	// watches the source for new mail meanwhile (Watching, IMAP IDLE)
	// unless watching failed (Err).
	Waiting(ev WaitEvent)
}

// WaitEvent is an input between two polls.
type WaitEvent struct {
	Input    string
	Next     time.Time // when it polls next (sooner if Watching sees mail)
	Watching bool      // it watches the source for new mail (IMAP IDLE)
	Err      error     // why watching failed, if it did (it is tried again)
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
	// Folder is the source folder of the message delivered ("" for a
	// source without folders).
	Folder string
	Err    error // nil: accepted; see plugin.IsPermanent, plugin.IsInDoubt, plugin.PlaceRefused
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
func (NopObserver) Waiting(WaitEvent)                    {}

// Observers tells each of obs every event, in order.
func Observers(obs ...Observer) Observer { return observers(obs) }

type observers []Observer

func (o observers) MessageFetched(input, folder string, bytes int64) {
	for _, x := range o {
		x.MessageFetched(input, folder, bytes)
	}
}

func (o observers) MessageDone(ev MessageEvent) {
	for _, x := range o {
		x.MessageDone(ev)
	}
}

func (o observers) OutputDone(ev OutputEvent) {
	for _, x := range o {
		x.OutputDone(ev)
	}
}

func (o observers) PollDone(ev PollEvent) {
	for _, x := range o {
		x.PollDone(ev)
	}
}

func (o observers) Reloaded(err error) {
	for _, x := range o {
		x.Reloaded(err)
	}
}

func (o observers) Waiting(ev WaitEvent) {
	for _, x := range o {
		x.Waiting(ev)
	}
}

var (
	_ Observer = NopObserver{}
	_ Observer = observers(nil)
)
