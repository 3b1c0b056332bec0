package ledger

import "time"

// Outcome is how a message was settled.
type Outcome string

const (
	// Delivered: every output it was routed to accepted it.
	Delivered Outcome = "delivered"
	// Dropped: a filter dropped it on purpose.
	Dropped Outcome = "dropped"
	// Quarantined: it is in the quarantine; the source may delete it.
	Quarantined Outcome = "quarantined"
	// Rejected: refused for good, and taken back by its source (an SMTP
	// client that was still waiting was told 5xx): it was not kept.
	Rejected Outcome = "rejected"
	// Held: what was fetched did not match what the source announced, again
	// and again; the fetched bytes are in the quarantine for a person to
	// look at, and the source keeps its copy (it is not committed).
	Held Outcome = "held"
)

// Record is what the ledger holds for one message of one input, under the
// id the source gave it.
type Record struct {
	// Settled is set once the message needs nothing more but its commit at
	// the source.
	Settled Outcome `json:"settled,omitempty"`
	// Accepted holds, per output, the recipients that accepted the message
	// ("*" for an output without recipients, such as a Maildir).
	Accepted map[string][]string `json:"accepted,omitempty"`
	// Refused holds, per output, the recipients that refused the message for
	// good, and Reasons their replies; they are not tried again.
	Refused map[string][]string `json:"refused,omitempty"`
	Reasons []string            `json:"reasons,omitempty"`
	// Sending lists the outputs a delivery is under way to. It is journaled
	// before an output is handed the message and cleared when the output
	// answers (accepted, refused or failed), so after a hard kill it names
	// exactly the messages whose fate at that output is unknown: SMTP
	// cannot say whether a server kept a message whose reply never came.
	Sending []string `json:"sending,omitempty"`
	// InDoubt lists the outputs that may hold the message although they
	// never said so (SMTP's reply after the data was lost, or a hard kill
	// while Sending): the message is delivered to them again, and that
	// delivery is reported.
	InDoubt []string `json:"in_doubt,omitempty"`
	// Digest is the SHA-256 of the message's bytes as fetched, and Size
	// their length: the identity that the source id is checked against
	// before anything is committed on the strength of this record.
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// Listed is the size the source announced for the id when the record
	// was made: a later listing of the id with another size is another
	// message, whatever the id says.
	Listed int64 `json:"listed,omitempty"`
	// Attempts counts fetches whose bytes did not match what the source
	// announced (a size that differs by more than line-end conversion).
	Attempts int `json:"attempts,omitempty"`
	// Flags are the source's flags (IMAP \Seen, keywords) as the outputs
	// were last given them: at delivery, or at a later change of them
	// (FlagMirror). nil means not known (a source without flags, or a
	// record from before flags were kept); an empty list means none.
	Flags []string `json:"flags"`
	// Where holds, per output that said so, where it put the message
	// (Delivery.Placed): a later change of flags, or a deletion, goes to
	// that copy.
	Where map[string]string `json:"where,omitempty"`
	// Removed is set once the source was told to remove the message (a
	// settle action that deletes it): when it is then gone from the
	// listing, it went because mailflow took it, not because someone
	// deleted it there, and no output mirrors that as a deletion.
	Removed bool      `json:"removed,omitempty"`
	At      time.Time `json:"at"`
}

// Meta is what the ledger keeps about one input as a whole.
type Meta struct {
	// Scheme is how the source made its ids on the last complete listing
	// ("uidl", "maildir", "pop3-header"): records are only comparable with
	// ids made the same way.
	Scheme string `json:"scheme,omitempty"`
	// LastListed is when the input last gave a complete listing.
	LastListed time.Time `json:"last_listed"`
	// Orphaned is when the input was first seen missing from the config;
	// zero while it is configured.
	Orphaned time.Time `json:"orphaned,omitzero"`
	// Checkpoint is where the last delta listing stood whose every message
	// was dealt with (plugin.Delta): the next listing starts from it.
	Checkpoint []byte `json:"checkpoint,omitempty"`
}
