// Package status is the operator's view of a running mailflow: is mail
// moving, what is stuck, why, and what to do. A Tracker follows the
// engine's events (it is an engine.Observer); Health judges them, with
// what the engine knows now (an output's back-off, the ledger, the
// quarantine); a Server answers /healthz and /readyz as JSON, and serves a
// status page in the browser (html/template and embedded static files; no
// build step, nothing from a CDN) with the quarantine and a migration's
// progress.
package status

import (
	"sync"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Tracker keeps, from the engine's events, how each input and output has
// fared. Every method is safe to call from many goroutines.
type Tracker struct {
	mu          sync.Mutex
	started     time.Time
	inputs      map[string]*InputState
	outputs     map[string]*OutputState
	reloaded    time.Time
	reloadErr   string
	quarantined []time.Time // when messages went to the quarantine, the last hour's
	now         func() time.Time
}

// InputState is what the events said of one input.
type InputState struct {
	LastPoll    time.Time `json:"last_poll,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Failures counts the polls that failed in a row, up to now.
	Failures int `json:"consecutive_failures"`
	// NextPoll is when the input polls next; Watching, whether it watches
	// the source meanwhile (IMAP IDLE), and WatchError why that failed.
	NextPoll   time.Time `json:"next_poll,omitzero"`
	Watching   bool      `json:"watching"`
	WatchError string    `json:"watch_error,omitempty"`
	// Today counts the day's messages by what became of them.
	Today Today `json:"today"`
}

// Today counts one day's messages of an input.
type Today struct {
	Day         string `json:"day"` // 2006-01-02, local time
	Fetched     int64  `json:"fetched"`
	Delivered   int64  `json:"delivered"`
	Quarantined int64  `json:"quarantined"`
	Deferred    int64  `json:"deferred"`
}

// OutputState is what the events said of one output.
type OutputState struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // the last failure for now
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Failures counts the answers in a row that were failures for now.
	Failures int `json:"consecutive_failures"`
	// LastRefusal is the server's reply to the last message it refused
	// for good (that message went to the quarantine; the output is fine).
	LastRefusal   string    `json:"last_refusal,omitempty"`
	LastRefusalAt time.Time `json:"last_refusal_at,omitzero"`
}

// NewTracker starts a tracker.
func NewTracker() *Tracker {
	return &Tracker{started: time.Now(), inputs: map[string]*InputState{}, outputs: map[string]*OutputState{}, now: time.Now}
}

func (t *Tracker) input(name string) *InputState {
	st := t.inputs[name]
	if st == nil {
		st = &InputState{}
		t.inputs[name] = st
	}
	if day := t.now().Format(time.DateOnly); st.Today.Day != day {
		st.Today = Today{Day: day}
	}
	return st
}

func (t *Tracker) output(name string) *OutputState {
	st := t.outputs[name]
	if st == nil {
		st = &OutputState{}
		t.outputs[name] = st
	}
	return st
}

// MessageFetched implements engine.Observer.
func (t *Tracker) MessageFetched(input, _ string, _ int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.input(input).Today.Fetched++
}

// MessageDone implements engine.Observer.
func (t *Tracker) MessageDone(ev engine.MessageEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	today := &t.input(ev.Input).Today
	switch ev.Outcome {
	case engine.Delivered:
		today.Delivered++
	case engine.Deferred:
		today.Deferred++
	case engine.Quarantined, engine.Held:
		today.Quarantined++
		t.quarantined = append(t.quarantined, t.now())
	}
}

// OutputDone implements engine.Observer.
func (t *Tracker) OutputDone(ev engine.OutputEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.output(ev.Output)
	switch {
	case ev.Err == nil:
		st.LastSuccess, st.Failures = t.now(), 0
	case plugin.IsPermanent(ev.Err):
		// Refused for that message only: the output itself works.
		st.LastRefusal, st.LastRefusalAt, st.Failures = ev.Err.Error(), t.now(), 0
	default:
		st.LastError, st.LastErrorAt = ev.Err.Error(), t.now()
		st.Failures++
	}
}

// PollDone implements engine.Observer.
func (t *Tracker) PollDone(ev engine.PollEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.input(ev.Input)
	st.LastPoll = t.now()
	if ev.Err != nil {
		st.LastError = ev.Err.Error()
		st.Failures++
		return
	}
	st.LastSuccess, st.LastError, st.Failures = st.LastPoll, "", 0
}

// Reloaded implements engine.Observer.
func (t *Tracker) Reloaded(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.reloadErr = err.Error()
		return
	}
	t.reloaded, t.reloadErr = t.now(), ""
}

// Waiting implements engine.Observer.
func (t *Tracker) Waiting(ev engine.WaitEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.input(ev.Input)
	st.NextPoll, st.Watching, st.WatchError = ev.Next, ev.Watching, ""
	if ev.Err != nil {
		st.WatchError = ev.Err.Error()
	}
}

// quarantinedLastHour counts the messages quarantined in the last hour.
func (t *Tracker) quarantinedLastHour() int {
	cut := t.now().Add(-time.Hour)
	i := 0
	for i < len(t.quarantined) && t.quarantined[i].Before(cut) {
		i++
	}
	t.quarantined = t.quarantined[i:]
	return len(t.quarantined)
}

var _ engine.Observer = (*Tracker)(nil)
