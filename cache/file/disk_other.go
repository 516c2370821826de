//go:build !linux

package file

import (
	"os"
	"syscall"
)

func syncFS(string) error { syscall.Sync(); return nil }

// rawFile is an object being written (see disk_linux.go).
type rawFile struct{ *os.File }

func createExcl(name string) (rawFile, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	return rawFile{f}, err
}

func renameFile(from, to string) error { return os.Rename(from, to) }
