package cache

import "errors"

// PermanentError is a failure that retrying cannot fix. Config marks
// failures of the target itself (wrong credentials, missing bucket) as
// opposed to failures of one object or path (missing, corrupt,
// garbage-collected).
type PermanentError struct {
	Err    error
	Config bool
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as one that retrying cannot fix, for one object or
// path only. A nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err will not go away by retrying.
// Everything else is transient: retried with backoff.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// IsConfig reports whether err is a problem with the target's
// configuration: every path will fail the same way until a human fixes it.
func IsConfig(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe) && pe.Config
}

// IsPathPermanent reports whether err condemns one path only: retrying
// it can never succeed, and nothing but the path is to blame.
func IsPathPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe) && !pe.Config
}
