//go:build !unix

package nar

import (
	"errors"
	"io"
	"io/fs"
	"os"
)

// regFile is an open regular file (see regfile_unix.go for why).
type regFile struct{ f *os.File }

// openRegular opens path for reading and checks that it is still the
// regular file fi (from Lstat) describes. It returns errReplaced if not.
func openRegular(path string, fi fs.FileInfo) (regFile, int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return regFile{}, 0, false, err
	}
	ofi, err := f.Stat()
	if err != nil {
		f.Close()
		return regFile{}, 0, false, err
	}
	if !ofi.Mode().IsRegular() || !os.SameFile(fi, ofi) {
		f.Close()
		return regFile{}, 0, false, errReplaced
	}
	return regFile{f}, ofi.Size(), ofi.Mode()&0o100 != 0, nil
}

// Read returns 0 bytes and no error at end of file, like read(2).
func (r regFile) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (r regFile) Close() error { return r.f.Close() }
