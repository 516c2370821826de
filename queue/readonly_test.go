package queue

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// OpenReadOnly never creates or changes a queue: a missing file stays
// missing, an old one is reported (not migrated), a current one reads.
func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "sub", "queue.db")
	if _, err := OpenReadOnly(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing queue: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); err == nil {
		t.Error("OpenReadOnly created the directory")
	}

	old, err := os.ReadFile(filepath.Join("testdata", "queue-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	v1 := filepath.Join(dir, "v1.db")
	os.WriteFile(v1, old, 0o600)
	if _, err := OpenReadOnly(v1); !errors.Is(err, ErrOldSchema) {
		t.Errorf("v1 queue: %v, want ErrOldSchema", err)
	}
	if b, _ := os.ReadFile(v1); string(b) != string(old) {
		t.Error("OpenReadOnly changed an old queue")
	}

	cur := filepath.Join(dir, "queue.db")
	q, err := Open(cur)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue([]string{"/nix/store/00000000000000000000000000000000-a"}, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	q.Close()
	r, err := OpenReadOnly(cur)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if st, err := r.Stats(); err != nil || st.Pending != 1 {
		t.Errorf("read-only stats: %+v %v", st, err)
	}
}
