package queue

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// testdata/queue-v1.db was written by the queue of schema version 1 (with
// an index bucket per state): a and b done, c failed, d pending and waiting
// until at(500), e in flight (the daemon was killed), f pending and already
// promoted to ready (NextAttempt at(100)), g and h pending and fresh, and
// the meta key reconcile-checkpoint.
func v1Path(i int, name string) string {
	return "/nix/store/0000000000000000000000000000000" + string(rune('0'+i)) + "-" + name
}

// openV1Copy copies the version 1 database into a temporary directory and
// opens it.
func openV1Copy(t *testing.T) (*Queue, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "queue-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "queue.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := Open(path)
	if err != nil {
		t.Fatalf("open a version 1 queue: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q, path
}

func TestMigrateV1(t *testing.T) {
	q, path := openV1Copy(t)
	checkInvariants(t, q) // also: no bucket of version 1 is left
	if v := schemaOf(t, q); v != schemaVersion {
		t.Fatalf("schema version %q after migration", v)
	}
	if st, _ := q.Stats(); st != (Stats{Pending: 4, InFlight: 1, Done: 2, Failed: 1}) {
		t.Fatalf("stats %+v", st)
	}
	for state, want := range map[State][]string{
		Pending:  {v1Path(3, "d"), v1Path(5, "f"), v1Path(6, "g"), v1Path(7, "h")},
		InFlight: {v1Path(4, "e")},
		Done:     {v1Path(1, "b"), v1Path(0, "a")},
		Failed:   {v1Path(2, "c")},
	} {
		l, err := q.List(state, 0)
		if err != nil || !slices.Equal(paths(l), want) {
			t.Errorf("List(%s) = %v, %v; want %v", state, paths(l), err, want)
		}
	}
	if it := mustGet(t, q, v1Path(2, "c")); it.LastError != "NAR hash mismatch" || it.Attempts != 1 {
		t.Errorf("failed item %+v", it)
	}
	if v, ok, _ := q.Meta("reconcile-checkpoint"); !ok || v != "1740830400" {
		t.Errorf("meta %q %v", v, ok)
	}
	if d, ok, _ := q.NextDue(); !ok || !d.IsZero() {
		t.Errorf("NextDue %v %v", d, ok)
	}

	// The daemon's start: the interrupted e goes back, then everything
	// due comes out oldest first; d only once its time has come.
	if n, err := q.Requeue(at(1000)); err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	got, err := q.Claim(at(400), 10)
	if err != nil || !slices.Equal(paths(got), []string{v1Path(4, "e"), v1Path(5, "f"), v1Path(6, "g"), v1Path(7, "h")}) {
		t.Fatalf("Claim at 400: %v, %v", paths(got), err)
	}
	got, _ = q.Claim(at(500), 10)
	if !slices.Equal(paths(got), []string{v1Path(3, "d")}) {
		t.Fatalf("Claim at 500: %v", paths(got))
	}
	checkInvariants(t, q)

	// Migrated once: reopening finds version 2 and changes nothing.
	q.Close()
	q2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	checkInvariants(t, q2)
	if st, _ := q2.Stats(); st != (Stats{InFlight: 5, Done: 2, Failed: 1}) {
		t.Fatalf("stats after reopen %+v", st)
	}
}

func TestOpenRefusesUnknownSchema(t *testing.T) {
	q, path := openTemp(t)
	err := q.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bSchema).Put([]byte("version"), []byte("3"))
	})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if q2, err := Open(path); err == nil || !strings.Contains(err.Error(), `unsupported schema version "3"`) {
		if err == nil {
			q2.Close()
		}
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func schemaOf(t *testing.T, q *Queue) string {
	t.Helper()
	var v string
	q.db.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bSchema).Get([]byte("version")))
		return nil
	})
	return v
}
