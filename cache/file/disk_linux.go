package file

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the filesystem holding dir to disk.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// rawFile is a file written with plain system calls. os.OpenFile would
// also try to register it with the network poller and toggle O_NONBLOCK,
// five system calls more per object: a closure of small paths writes two
// objects per path.
type rawFile struct{ fd int }

// createExcl creates name, which must not exist, for writing, mode 0644
// (before the umask).
func createExcl(name string) (rawFile, error) {
	for {
		fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return rawFile{-1}, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return rawFile{fd}, nil
	}
}

func (f rawFile) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(f.fd, p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (f rawFile) Close() error { return unix.Close(f.fd) }

// renameFile is rename(2). os.Rename first stats the destination to
// refuse replacing a directory, which rename(2) refuses on its own.
func renameFile(from, to string) error {
	if err := unix.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
