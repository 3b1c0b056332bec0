package engine

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
