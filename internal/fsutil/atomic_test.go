package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// onlyEntries fails t unless dir holds exactly names (no temporary files).
func onlyEntries(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

func checkFile(t *testing.T, path, want string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != want {
		t.Errorf("%s: %q, %v; want %q", path, b, err, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != perm {
		t.Errorf("%s: mode %v, %v; want %v", path, st.Mode().Perm(), err, perm)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(p, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, "one\n", 0o644)
	// Replaces, and takes the new mode.
	if err := WriteFileAtomic(p, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, "two\n", 0o600)
	onlyEntries(t, dir, "f")

	// A failed rename (a directory is in the way) leaves no temporary file.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(sub, []byte("three"), 0o644); err == nil {
		t.Fatal("replaced a directory")
	}
	onlyEntries(t, dir, "f", "sub")
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("in a missing directory: %v", err)
	}
}

func TestWriteFileNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	if err := WriteFileNew(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, "first", 0o600)
	err := WriteFileNew(p, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("over an existing file: %v, want fs.ErrExist", err)
	}
	checkFile(t, p, "first", 0o600)
	onlyEntries(t, dir, "secret")
}

// Concurrent writers: a reader always sees one whole version, and of the
// writers of a new file exactly one succeeds.
func TestWriteFileAtomicConcurrent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	const writers = 8
	version := func(i int) []byte { return bytes.Repeat([]byte{'a' + byte(i)}, 64<<10) }
	if err := WriteFileAtomic(p, version(0), 0o644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			if len(b) != 64<<10 || !bytes.Equal(b, bytes.Repeat(b[:1], len(b))) {
				t.Errorf("read a torn file: %d bytes", len(b))
				return
			}
		}
	}()
	news := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			for range 20 {
				if err := WriteFileAtomic(p, version(i), 0o644); err != nil {
					t.Error(err)
				}
			}
			news <- WriteFileNew(filepath.Join(dir, "new"), version(i), 0o600)
		})
	}
	wg.Wait()
	close(stop)
	<-readerDone
	close(news)
	won := 0
	for err := range news {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("WriteFileNew: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d writers made the new file, want 1", won)
	}
	onlyEntries(t, dir, "f", "new")
}
