package plugin

import (
	"context"
	"time"

	"github.com/mailflow/mailflow/engine/message"
)

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
	// ActionReject ends the chain and refuses the message for good: a
	// source still waiting for its fate (an SMTP client, see Answerer)
	// is told 5xx with the reason; any other keeps it in the quarantine.
	ActionReject
)

func (a Action) String() string {
	return [...]string{"keep", "route", "redirect", "drop", "quarantine", "leave", "reject"}[a]
}

// Verdict is a filter's decision about one message.
type Verdict struct {
	Action     Action
	Outputs    []string // with ActionRoute
	Recipients []string // with ActionRedirect
	Reason     string   // with ActionDrop, ActionQuarantine, ActionLeave and ActionReject
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

// ScriptLimits bound what a filter script may use.
type ScriptLimits struct {
	Timeout   time.Duration // per message
	MaxMemory int64         // bytes of strings a script may build per message
	// StoreDir is where scripts keep their durable store (store.*,
	// duplicate): state_dir. Empty: in memory, for this process only
	// ("mailflow test", which must change nothing).
	StoreDir      string
	StoreMaxKeys  int   // keys per script; over it the oldest go first
	StoreMaxBytes int64 // bytes of keys and values per script, likewise
	// Separator splits a local part into user and detail (RFC 5233:
	// "user+detail"); default "+".
	Separator string
	// LibDir is where require("name") finds name.lua (script_lib); empty:
	// require is refused.
	LibDir string
	// Instance is the config's instance (msg:looped()).
	Instance string
	// SRSSecrets and SRSMaxAge are for srs.reverse (srs_secret_file,
	// srs_max_age); TrustedAuthServIDs the authserv-ids whose
	// Authentication-Results msg:auth_results() reads.
	SRSSecrets         []string
	SRSMaxAge          time.Duration
	TrustedAuthServIDs []string
}
