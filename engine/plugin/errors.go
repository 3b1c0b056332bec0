package plugin

import "errors"

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
