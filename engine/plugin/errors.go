package plugin

import (
	"errors"
	"time"
)

// An error is permanent when retrying the same thing cannot succeed (a 5xx
// SMTP reply, a message over a size limit). Everything else is treated as
// temporary: the message stays at its source and is tried again, so that an
// unclassified failure never loses mail.

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// Permanent marks err as permanent.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, has a Permanent()
// method that returns true. Temporary() is deliberately not consulted: net
// errors answer false there for failures (connection refused) that are worth
// retrying.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// An error is in doubt when the destination may have taken the message
// although the output could not learn it: SMTP's reply after the final dot
// never came. The message is kept at its source and tried again (losing it
// would be worse than a second copy); the engine counts and logs each one.
type inDoubtError struct{ err error }

func (e *inDoubtError) Error() string { return e.err.Error() }
func (e *inDoubtError) Unwrap() error { return e.err }

// InDoubt marks err as in doubt (see above). It is temporary.
func InDoubt(err error) error {
	if err == nil {
		return nil
	}
	return &inDoubtError{err}
}

// IsInDoubt reports whether err, or an error it wraps, was marked InDoubt.
func IsInDoubt(err error) bool {
	var d *inDoubtError
	return errors.As(err, &d)
}

// A server may say how long to wait before it takes more (IMAP
// [THROTTLED] and [OVERQUOTA], Microsoft 365's "Suggested Backoff Time",
// an HTTP 429's Retry-After): the error is temporary, and the engine does
// not try that output (or poll that input) again before the time is up.
type throttledError struct {
	err  error
	wait time.Duration
}

func (e *throttledError) Error() string { return e.err.Error() }
func (e *throttledError) Unwrap() error { return e.err }

// Throttled marks err as the server asking to wait d before trying again.
// It is temporary.
func Throttled(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &throttledError{err, d}
}

// ThrottledFor reports the wait the server asked for, if err or an error
// it wraps was marked Throttled.
func ThrottledFor(err error) (time.Duration, bool) {
	var t *throttledError
	if errors.As(err, &t) {
		return t.wait, true
	}
	return 0, false
}

// A destination may refuse the place a message is to go to rather than the
// message: an IMAP server that will not CREATE its folder ("NO [NOPERM]
// Permission denied", a name it does not allow). No try of any message for
// that place can succeed while the config sends it there, so the error is
// permanent; but the message is not at fault, so the engine neither
// quarantines it nor backs the output off: the message stays at its
// source (counted deferred), and the output's other messages go on. A
// migration stops that folder for the run and says what to change.
type RefusedPlaceError struct {
	// Place is the destination's name for the place ("INBOX.Archive").
	Place string
	// Err is the refusal, with the destination's answer.
	Err error
}

func (e *RefusedPlaceError) Error() string   { return e.Err.Error() }
func (e *RefusedPlaceError) Unwrap() error   { return e.Err }
func (e *RefusedPlaceError) Permanent() bool { return true }

// RefusedPlace marks err as the destination refusing place (see above).
func RefusedPlace(place string, err error) error {
	if err == nil {
		return nil
	}
	return &RefusedPlaceError{Place: place, Err: err}
}

// PlaceRefused returns the refusal err is, or wraps, if it is one.
func PlaceRefused(err error) (*RefusedPlaceError, bool) {
	var r *RefusedPlaceError
	ok := errors.As(err, &r)
	return r, ok
}
