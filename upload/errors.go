package upload

import "errors"

// Sentinel errors for a path that can never be uploaded as it is. They
// come wrapped in a cache.PermanentError (not Config): retrying cannot
// help, and nothing but the path is to blame.
var (
	// ErrCorrupt: the path's contents no longer hash to the NarHash the
	// store registered (it was modified after registration).
	ErrCorrupt = errors.New("NAR hash mismatch")
	// ErrGone: the path disappeared (garbage-collected) before it was read.
	ErrGone = errors.New("store path no longer exists")
)
