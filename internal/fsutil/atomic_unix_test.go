//go:build unix

package fsutil

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// The mode is the one asked for, whatever the umask.
func TestWriteFileModeIgnoresUmask(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o277)
	defer syscall.Umask(old)
	for _, perm := range []uint32{0o600, 0o644} {
		p := filepath.Join(dir, "atomic")
		if err := WriteFileAtomic(p, []byte("x"), fs.FileMode(perm)); err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, "x", fs.FileMode(perm))
		p = filepath.Join(dir, "new")
		if err := writeExcl(p, []byte("y"), fs.FileMode(perm)); err != nil {
			t.Fatal(err)
		}
		checkFile(t, p, "y", fs.FileMode(perm))
		if err := syscall.Unlink(p); err != nil {
			t.Fatal(err)
		}
	}
}
