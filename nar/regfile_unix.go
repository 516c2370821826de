//go:build unix

package nar

import (
	"io/fs"
	"syscall"
)

// regFile is a regular file read with plain system calls. os.Open would
// also try to register the descriptor with the network poller and toggle
// O_NONBLOCK: five system calls more per file, for a file that is read
// once. A system closure is mostly small files, so they add up.
type regFile struct{ fd int }

// openRegular opens path for reading and checks that it is still the
// regular file fi (from Lstat) describes. It returns errReplaced if not.
func openRegular(path string, fi fs.FileInfo) (regFile, int64, bool, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return regFile{-1}, 0, false, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := regFile{fd}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		f.Close()
		return regFile{-1}, 0, false, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	old, ok := fi.Sys().(*syscall.Stat_t)
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || !ok || old.Dev != st.Dev || old.Ino != st.Ino {
		f.Close()
		return regFile{-1}, 0, false, errReplaced
	}
	return f, st.Size, st.Mode&0o100 != 0, nil
}

// Read is read(2), retried on EINTR; 0 bytes means end of file.
func (f regFile) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(f.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

func (f regFile) Close() error { return syscall.Close(f.fd) }
