package plugin

// Answerer is implemented by sessions whose source waits for each
// message's fate: a client that handed a message over SMTP or LMTP and is
// held until the pipeline delivered or refused it (the smtp input's
// answer = "after_delivery"), so that a refusal goes back to the sending
// server as a 5xx instead of becoming a bounce.
//
// The engine calls Answer from the goroutine that settled the message,
// once per message it took through its pipeline in the session, when that
// try ended; a message refused for good is first offered (Outcome
// Rejected) and, if the source does not take it back, goes to the
// quarantine and is answered again as Quarantined. A message the engine
// never took that far (a fetch that failed, a message over
// max_message_size) is not answered: the source answers it itself when it
// stops waiting.
type Answerer interface {
	// Answer tells the fate of the message of it. For Outcome Rejected it
	// reports whether the source took the message back (a client still
	// waiting was told 5xx): the message is then settled as rejected and
	// not quarantined. Its result is ignored for every other outcome.
	Answer(it Item, a Answer) bool
}

// Outcome is a message's fate as an Answerer is told it.
type Outcome string

const (
	Delivered   Outcome = "delivered"   // every output it was routed to accepted it
	Dropped     Outcome = "dropped"     // a filter dropped it
	Quarantined Outcome = "quarantined" // it is in the quarantine
	Rejected    Outcome = "rejected"    // refused for good: offered back to the source
	Deferred    Outcome = "deferred"    // stays at the source, to be tried again
	Left        Outcome = "left"        // a filter left it at the source
)

// Answer is one message's fate.
type Answer struct {
	Outcome Outcome
	// Reason is why, in words: the filter's own (Filter is set) for a
	// reject, drop, quarantine or leave; the outputs' replies for a
	// refusal or a deferral.
	Reason string
	Filter string
	// Recipients holds, when a refusal named some recipients only (an
	// output refused them and took the others), each one's error; empty
	// when the whole message was refused.
	Recipients map[string]error
	// Accepted is set when some output holds the message already: a
	// deferred delivery is finished from the source later.
	Accepted bool
}
