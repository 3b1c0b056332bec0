package engine

import "fmt"

// Outcome is how one message's turn in a poll ended.
type Outcome string

const (
	// Settled: recorded in the ledger, and committed at the source.
	Delivered   Outcome = "delivered"   // accepted by every output it was routed to
	Dropped     Outcome = "dropped"     // dropped by a filter
	Quarantined Outcome = "quarantined" // written to the quarantine
	Rejected    Outcome = "rejected"    // refused for good back to the client that handed it over (SMTP 5xx)
	Skipped     Outcome = "skipped"     // settled on an earlier poll; only committed now
	Updated     Outcome = "updated"     // settled earlier; its flags changed at the source, and the outputs were told
	Deleted     Outcome = "deleted"     // settled earlier, then deleted at the source; the outputs that mirror that deleted it
	// Not settled: the source keeps the message.
	Deferred Outcome = "deferred" // to be tried again (an output failed for now, a fetch broke)
	Left     Outcome = "left"     // left on purpose by a filter
	Held     Outcome = "held"     // its fetched bytes never matched the source's size; a copy is quarantined
)

// Stats counts what happened to the messages of one input.
type Stats struct {
	Fetched     int64 // read from the source
	Delivered   int64 // accepted by every output it was routed to
	Dropped     int64 // dropped by a filter
	Quarantined int64 // written to the quarantine
	Rejected    int64 // refused for good back to the client that handed it over (SMTP 5xx)
	Deferred    int64 // left at the source to be tried again
	Skipped     int64 // settled on an earlier poll; only committed at the source
	Left        int64 // left at the source on purpose by a filter
	Held        int64 // fetched bytes never matched the source's size; kept there, copy quarantined
	InDoubt     int64 // were being delivered when mailflow was killed; delivered again
	Updated     int64 // settled earlier; flags changed at the source carried to the outputs
	Deleted     int64 // settled earlier; deleted at the source, and at the outputs that mirror deletions
}

// count adds one message with outcome o.
func (s *Stats) count(o Outcome) {
	switch o {
	case Delivered:
		s.Delivered++
	case Dropped:
		s.Dropped++
	case Quarantined:
		s.Quarantined++
	case Rejected:
		s.Rejected++
	case Skipped:
		s.Skipped++
	case Deferred:
		s.Deferred++
	case Left:
		s.Left++
	case Held:
		s.Held++
	case Updated:
		s.Updated++
	case Deleted:
		s.Deleted++
	}
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.Fetched += o.Fetched
	s.Delivered += o.Delivered
	s.Dropped += o.Dropped
	s.Quarantined += o.Quarantined
	s.Rejected += o.Rejected
	s.Deferred += o.Deferred
	s.Skipped += o.Skipped
	s.Left += o.Left
	s.Held += o.Held
	s.InDoubt += o.InDoubt
	s.Updated += o.Updated
	s.Deleted += o.Deleted
}

func (s Stats) String() string {
	str := fmt.Sprintf("fetched=%d delivered=%d dropped=%d quarantined=%d deferred=%d skipped=%d",
		s.Fetched, s.Delivered, s.Dropped, s.Quarantined, s.Deferred, s.Skipped)
	if s.Rejected > 0 {
		str += fmt.Sprintf(" rejected=%d", s.Rejected)
	}
	if s.Left > 0 {
		str += fmt.Sprintf(" left=%d", s.Left)
	}
	if s.Held > 0 {
		str += fmt.Sprintf(" held=%d", s.Held)
	}
	if s.InDoubt > 0 {
		str += fmt.Sprintf(" in_doubt=%d", s.InDoubt)
	}
	if s.Updated > 0 {
		str += fmt.Sprintf(" updated=%d", s.Updated)
	}
	if s.Deleted > 0 {
		str += fmt.Sprintf(" deleted=%d", s.Deleted)
	}
	return str
}
