package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFileAtomic puts data at path with mode perm, replacing any file
// there: readers see the old content or the new, never a part, and after
// a crash the file is whole. It writes a temporary file with a name of
// its own in the same directory (two writers never share one), syncs it,
// renames it into place and syncs the directory. The mode is perm
// whatever the umask: 0600 for a secret, 0644 for what other users read.
// On error no temporary file is left.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// WriteFileNew is WriteFileAtomic for a file that must not exist yet: it
// never replaces one (the error is then fs.ErrExist), so that two
// writers cannot both think they made it. The file appears whole, with
// mode perm, or not at all.
func WriteFileNew(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	// A hard link, unlike a rename, fails when path exists.
	lerr := os.Link(tmp, path)
	os.Remove(tmp)
	if lerr != nil {
		var le *os.LinkError
		if errors.As(lerr, &le) {
			lerr = le.Err
		}
		if errors.Is(lerr, fs.ErrExist) {
			return &fs.PathError{Op: "create", Path: path, Err: lerr}
		}
		// A file system without hard links (FAT, some network ones):
		// exclusive creation still never replaces a file, though a crash
		// mid-write may then leave a short one.
		if err := writeExcl(path, data, perm); err != nil {
			return err
		}
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes data, synced and with mode perm, to a new file beside
// path, and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (name string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	return f.Name(), f.Sync()
}

// writeExcl creates path, which must not exist, and writes data to it;
// on error it leaves no file.
func writeExcl(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}
