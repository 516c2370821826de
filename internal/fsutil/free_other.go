//go:build !linux

package fsutil

import "errors"

// FreeSpace is not known off Linux.
func FreeSpace(string) (int64, error) { return 0, errors.ErrUnsupported }
