package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File is a binary cache in a local directory, as `nix copy --to file://DIR`
// makes and reads.
type File struct {
	Dir string
}

// NewFile returns a file:// target rooted at dir (created if missing).
func NewFile(dir string) (*File, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file:// cache needs an absolute directory, got %q (write file:///abs/path)", dir)
	}
	if i := strings.IndexByte(dir, '?'); i >= 0 {
		return nil, fmt.Errorf("file://%s: query parameters are not supported; use --compression and --secret-key-file", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	return &File{Dir: dir}, nil
}

func (f *File) String() string { return "file://" + f.Dir }

func (f *File) path(key string) (string, error) {
	clean := filepath.Clean(key)
	if key == "" || clean != key || filepath.IsAbs(key) || strings.HasPrefix(clean, "..") {
		return "", fmt.Errorf("invalid object key %q", key)
	}
	return filepath.Join(f.Dir, key), nil
}

func (f *File) Exists(_ context.Context, key string) (bool, error) {
	p, err := f.path(key)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (f *File) Get(_ context.Context, key string) ([]byte, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", p, ErrNotFound)
	}
	return b, err
}

// Put writes to a temporary file, syncs it and renames it into place, so a
// crash never leaves a truncated object under its final name.
func (f *File) Put(_ context.Context, key string, body io.Reader, size int64, _ string) error {
	p, err := f.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	n, err := io.Copy(tmp, body)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("wrote %d bytes, expected %d", n, size)
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
