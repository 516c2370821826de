package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// t0 is an arbitrary fixed instant; tests use offsets from it.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func sp(name string) string { return "/nix/store/" + name }

func openTemp(t testing.TB) (*Queue, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "queue.db")
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, path
}

func mustEnqueue(t testing.TB, q *Queue, now time.Time, paths ...string) int {
	t.Helper()
	n, err := q.Enqueue(paths, "watch", now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustGet(t testing.TB, q *Queue, path string) Item {
	t.Helper()
	it, ok, err := q.Get(path)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("%s not in queue", path)
	}
	return it
}

func paths(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Path
	}
	return out
}

// checkInvariants verifies that every index and counter agrees exactly with
// the item records.
func checkInvariants(t testing.TB, q *Queue) {
	t.Helper()
	if err := q.verify(); err != nil {
		t.Fatal(err)
	}
}

func (q *Queue) verify() error {
	return q.db.View(func(tx *bolt.Tx) error {
		want := map[string]map[string]string{} // bucket -> key -> value
		for _, b := range [][]byte{bStates, bDue, bWait, bReady} {
			want[string(b)] = map[string]string{}
		}
		counts := map[State]int{}
		err := tx.Bucket(bItems).ForEach(func(k, v []byte) error {
			it, err := decode(v)
			if err != nil {
				return err
			}
			if it.Path != string(k) {
				return fmt.Errorf("item key %q holds path %q", k, it.Path)
			}
			sk, err := stateKey(it)
			if err != nil {
				return err
			}
			want["states"][string(sk)] = ""
			counts[it.State]++
			if it.State != Pending {
				return nil
			}
			want["due"][string(indexKey(it.NextAttempt, it.Path))] = ""
			// In exactly one of wait and ready; which one depends on
			// history, so take whichever exists and check its value.
			wk := indexKey(it.NextAttempt, it.Path)
			rk := indexKey(it.Enqueued, it.Path)
			inWait := tx.Bucket(bWait).Get(wk) != nil
			inReady := tx.Bucket(bReady).Get(rk) != nil
			if inWait == inReady {
				return fmt.Errorf("%s: inWait=%v inReady=%v", it.Path, inWait, inReady)
			}
			if inWait {
				want["wait"][string(wk)] = string(be64(timeKey(it.Enqueued)))
			} else {
				want["ready"][string(rk)] = string(be64(timeKey(it.NextAttempt)))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for name, keys := range want {
			got := map[string]string{}
			tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				got[string(k)] = string(v)
				return nil
			})
			if len(got) != len(keys) {
				return fmt.Errorf("index %s has %d entries, want %d", name, len(got), len(keys))
			}
			for k, v := range keys {
				gv, ok := got[k]
				if !ok {
					return fmt.Errorf("index %s lacks %x", name, k)
				}
				if gv != v {
					return fmt.Errorf("index %s entry %x = %x, want %x", name, k, gv, v)
				}
			}
		}
		for _, s := range States {
			n, err := readCount(tx.Bucket(bCounts), s)
			if err != nil {
				return err
			}
			if n != counts[s] {
				return fmt.Errorf("counter %s = %d, records say %d", s, n, counts[s])
			}
		}
		// Exactly the buckets of the current schema.
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if !slices.ContainsFunc(allBuckets, func(b []byte) bool { return bytes.Equal(b, name) }) {
				return fmt.Errorf("unexpected bucket %q", name)
			}
			return nil
		})
	})
}

// TestVerifyCatchesDamage makes sure the checker itself can fail.
func TestVerifyCatchesDamage(t *testing.T) {
	q, _ := openTemp(t)
	mustEnqueue(t, q, at(0), sp("a"), sp("b"))
	checkInvariants(t, q)
	err := q.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bCounts).Put([]byte(Pending), be64(3))
	})
	if err != nil {
		t.Fatal(err)
	}
	if q.verify() == nil {
		t.Fatal("verify missed a wrong counter")
	}
	q.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bCounts).Put([]byte(Pending), be64(2))
		return tx.Bucket(bDue).Delete(indexKey(time.Time{}, sp("a")))
	})
	if q.verify() == nil {
		t.Fatal("verify missed a missing due entry")
	}
}

func TestIndexKeyOrder(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 1),
		t0,
		t0.Add(time.Nanosecond),
		time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	var keys [][]byte
	for _, tm := range times {
		keys = append(keys, indexKey(tm, "p"))
	}
	if !slices.IsSortedFunc(keys, bytes.Compare) {
		t.Fatalf("index keys not in time order: %x", keys)
	}
	if binary.BigEndian.Uint64(keys[0]) != 0 || binary.BigEndian.Uint64(keys[1]) != 0 {
		t.Fatal("zero and pre-1970 times should map to 0")
	}
	if !keyTime(timeKey(t0)).Equal(t0) {
		t.Fatal("timeKey/keyTime round trip")
	}
}
