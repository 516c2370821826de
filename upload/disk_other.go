//go:build !linux

package upload

import (
	"errors"
	"syscall"
)

func freeSpace(string) (int64, error) { return 0, errors.ErrUnsupported }

func syncFS(string) error { syscall.Sync(); return nil }
