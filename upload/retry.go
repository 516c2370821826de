package upload

import (
	"context"
	"errors"
	"time"
)

// PermanentError is a failure that retrying cannot fix. Config marks
// failures of the target itself (wrong credentials, missing bucket) as
// opposed to failures of one path (corrupt, garbage-collected).
type PermanentError struct {
	Err    error
	Config bool
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Sentinel errors for a path that can never be uploaded as it is.
var (
	// ErrCorrupt: the path's contents no longer hash to the NarHash the
	// store registered (it was modified after registration).
	ErrCorrupt = errors.New("NAR hash mismatch")
	// ErrGone: the path disappeared (garbage-collected) before it was read.
	ErrGone = errors.New("store path no longer exists")
)

// IsPermanent reports whether err will not go away by retrying.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrGone)
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
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrGone) || (errors.As(err, &pe) && !pe.Config)
}

// RetryPolicy retries transient failures of a single operation.
type RetryPolicy struct {
	Attempts int                             // total tries, ≥ 1
	Delay    func(attempt int) time.Duration // wait after failed try number attempt (1-based)
}

// Do calls op until it succeeds, fails permanently, the context ends or
// the attempts run out. A cancelled context is never retried.
func (p RetryPolicy) Do(ctx context.Context, op func() error) error {
	attempts := max(p.Attempts, 1)
	var err error
	for i := 1; ; i++ {
		err = op()
		if err == nil || IsPermanent(err) || ctx.Err() != nil ||
			errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || i >= attempts {
			return err
		}
		var d time.Duration
		if p.Delay != nil {
			d = p.Delay(i)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
