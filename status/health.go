package status

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/metrics"
)

// Health is the answer of /healthz: whether mail is moving, and, per
// input and output, how it stands. Its JSON is documented in README
// ("Seeing what it does").
type Health struct {
	// Status is "ok" when every input's last poll succeeded (or none was
	// due yet) and every output accepts; "degraded" otherwise, and
	// Problems say why, in words.
	Status     string           `json:"status"`
	Problems   []string         `json:"problems,omitempty"`
	Uptime     int64            `json:"uptime_seconds"`
	Inputs     []InputHealth    `json:"inputs"`
	Outputs    []OutputHealth   `json:"outputs"`
	Quarantine QuarantineHealth `json:"quarantine"`
	Ledger     LedgerHealth     `json:"ledger"`
	Config     ConfigHealth     `json:"config"`
	OAuth      []OAuthHealth    `json:"oauth,omitempty"`
}

// InputHealth is one input.
type InputHealth struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Schedule string `json:"schedule"`
	// State is "ok", "waiting" (not polled yet) or "failing" (its last
	// DegradedAfter polls failed; fewer failures are "ok" with an error).
	State string `json:"state"`
	InputState
}

// OutputHealth is one output.
type OutputHealth struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// State is "ok", "idle" (not used yet), "failing" (its last answer was
	// a failure for now) or "backing off" (not tried until BackoffUntil).
	State        string    `json:"state"`
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	OutputState
}

// QuarantineHealth is what the quarantine holds.
type QuarantineHealth struct {
	Entries  int `json:"entries"`
	LastHour int `json:"last_hour"` // messages quarantined in the last hour
}

// LedgerHealth is how much the ledger holds.
type LedgerHealth struct {
	Records int   `json:"records"`
	Bytes   int64 `json:"bytes"`
}

// ConfigHealth is the config in force.
type ConfigHealth struct {
	Path        string    `json:"path"`
	Reloaded    time.Time `json:"reloaded,omitzero"`
	ReloadError string    `json:"reload_error,omitempty"` // the last failed reload's, file:line first
}

// OAuthHealth is one OAuth connector's login.
type OAuthHealth struct {
	Connector string    `json:"connector"`
	Healthy   bool      `json:"healthy"` // it has a token it can use
	Expiry    time.Time `json:"expiry,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// DefaultDegradedAfter is how many failed polls in a row make an input
// degrade the health.
const DefaultDegradedAfter = 3

// Health judges what t saw, with what e knows now. An input degrades the
// health when its last degradedAfter polls failed; an output when it is
// backing off or its last answer was a failure; the quarantine when it
// grew in the last hour; an OAuth login when it has no token it can use.
func (t *Tracker) Health(e *engine.Engine, degradedAfter int, auth []metrics.AuthStatus) Health {
	if degradedAfter <= 0 {
		degradedAfter = DefaultDegradedAfter
	}
	cfg := e.Config()
	t.mu.Lock()
	defer t.mu.Unlock()
	h := Health{Status: "ok", Uptime: int64(time.Since(t.started).Seconds()),
		Config: ConfigHealth{Path: cfg.Path, Reloaded: t.reloaded, ReloadError: t.reloadErr}}
	for _, ic := range cfg.Inputs {
		in := InputHealth{Name: ic.Name, Type: ic.Type, Schedule: ic.Sched.String(), State: "ok", InputState: *t.input(ic.Name)}
		switch {
		case in.LastPoll.IsZero():
			in.State = "waiting"
		case in.Failures >= degradedAfter:
			in.State = "failing"
			h.problem("input %s: %s failed: %s", ic.Name, plural(in.Failures, "its last poll", "its last %d polls"), in.LastError)
		}
		h.Inputs = append(h.Inputs, in)
	}
	for _, oc := range cfg.Outputs {
		out := OutputHealth{Name: oc.Name, Type: oc.Type, State: "ok", OutputState: *t.output(oc.Name)}
		wait := e.OutputWait(oc.Name)
		switch {
		case wait > 0:
			out.State, out.BackoffUntil = "backing off", time.Now().Add(wait).Truncate(time.Second)
			h.problem("output %s: backing off for %s after: %s", oc.Name, wait.Round(time.Second), out.LastError)
		case out.Failures > 0:
			out.State = "failing"
			h.problem("output %s: failing: %s", oc.Name, out.LastError)
		case out.LastSuccess.IsZero() && out.LastRefusal == "":
			out.State = "idle"
		}
		h.Outputs = append(h.Outputs, out)
	}
	if entries, err := e.Quarantine.List(); err == nil {
		h.Quarantine.Entries = len(entries)
	}
	if h.Quarantine.LastHour = t.quarantinedLastHour(); h.Quarantine.LastHour > 0 {
		h.problem("%s to the quarantine in the last hour", plural(h.Quarantine.LastHour, "a message went", "%d messages went"))
	}
	if e.Ledger != nil {
		for _, st := range e.Ledger.Stats() {
			h.Ledger.Records += st.Records
		}
		h.Ledger.Bytes, _ = e.Ledger.Size()
	}
	for _, a := range auth {
		h.OAuth = append(h.OAuth, OAuthHealth{Connector: a.Connector, Healthy: a.Healthy(), Expiry: a.Expiry, Error: a.Error})
		if !a.Healthy() {
			h.problem("OAuth login of %s has no token it can use: %s (mailflow auth login)", a.Connector, a.Error)
		}
	}
	slices.SortFunc(h.Inputs, func(a, b InputHealth) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(h.Outputs, func(a, b OutputHealth) int { return cmp.Compare(a.Name, b.Name) })
	return h
}

func (h *Health) problem(format string, args ...any) {
	h.Status = "degraded"
	h.Problems = append(h.Problems, fmt.Sprintf(format, args...))
}

// plural is one when n is 1, else many (with n for its %d).
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}
