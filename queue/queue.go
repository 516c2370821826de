package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/nixpushd/nixpushd/internal/fsutil"
)

// State is the upload state of one store path.
type State string

// The four states. Pending -> InFlight -> Done is the normal life; InFlight ->
// Pending on a retry; anything but Done -> Failed on a permanent error; Done or
// Failed -> Pending when the path is enqueued again.
const (
	Pending  State = "pending"
	InFlight State = "inflight"
	Done     State = "done"
	Failed   State = "failed"
)

// States lists every State in life-cycle order.
var States = []State{Pending, InFlight, Done, Failed}

// Valid reports whether s is one of the four states.
func (s State) Valid() bool {
	switch s {
	case Pending, InFlight, Done, Failed:
		return true
	}
	return false
}

// Item is the queue's record of one store path.
type Item struct {
	Path        string    `json:"path"` // full store path, the key
	State       State     `json:"state"`
	Source      string    `json:"source"` // "watch", "hook", "spool", "reconcile", "push"
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"` // zero = now
	LastError   string    `json:"last_error,omitempty"`
	Enqueued    time.Time `json:"enqueued"`
	Updated     time.Time `json:"updated"`
}

// Stats counts the items in each state.
type Stats struct {
	Pending, InFlight, Done, Failed int
}

// Errors returned by Queue methods; test with errors.Is.
var (
	// ErrLocked: another process (or another Open in this one) holds the file.
	ErrLocked = errors.New("queue is locked by another process")
	// ErrOldSchema: OpenReadOnly found a queue an older nixpushd wrote;
	// Open migrates it in place.
	ErrOldSchema = errors.New("queue written by an older nixpushd")
	// ErrNotFound: the path is not in the queue.
	ErrNotFound = errors.New("path not in queue")
	// ErrWrongState: the transition is not allowed from the item's state.
	ErrWrongState = errors.New("item is in the wrong state")
	// ErrCorrupt: the database's records and indexes disagree.
	ErrCorrupt = errors.New("queue database is inconsistent")
)

// MaxPathLen bounds a path's length; bbolt keys must stay well under 32 KiB
// and index keys add 8 bytes. Real store paths are far shorter.
const MaxPathLen = 4096

// lockTimeout is how long Open waits for the file lock before reporting that
// another process holds it. Long enough to ride out a restart's overlap,
// short enough that a second daemon fails at once.
const lockTimeout = 300 * time.Millisecond

const schemaVersion = "2"

var (
	bItems  = []byte("items")
	bStates = []byte("states")
	bDue    = []byte("due")
	bWait   = []byte("wait")
	bReady  = []byte("ready")
	bCounts = []byte("counts")
	bKV     = []byte("kv")
	bSchema = []byte("schema")

	allBuckets = [][]byte{bItems, bStates, bDue, bWait, bReady, bCounts, bKV, bSchema}

	// v1Buckets are the per-state indexes of schema version 1.
	v1Buckets = [][]byte{[]byte("pending"), []byte("inflight"), []byte("done"), []byte("failed")}
)

// Queue is an open queue database.
type Queue struct {
	db   *bolt.DB
	path string
}

// Open opens or creates the queue database at path, creating the parent
// directory and all buckets as needed. It fails after a short wait, with an
// error wrapping ErrLocked, if another process has the file open.
func Open(path string) (*Queue, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("queue %s is locked by another nixpushd process: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("queue %s: open: %w", path, err)
	}
	q := &Queue{db: db, path: path}
	if err := q.init(); err != nil {
		db.Close()
		return nil, err
	}
	if created {
		// bbolt syncs the file but not the directory entry; without this a
		// power cut right after first start could lose the whole file.
		if err := fsutil.SyncDir(dir); err != nil {
			db.Close()
			return nil, fmt.Errorf("queue %s: %w", path, err)
		}
	}
	return q, nil
}

// OpenReadOnly opens an existing queue for reading (nixpushd status
// with no daemon running). It never creates or changes the file; a
// missing file is an error wrapping os.ErrNotExist, one a daemon holds
// wraps ErrLocked.
func OpenReadOnly(path string) (*Queue, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("queue %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("queue %s is locked by another nixpushd process: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("queue %s: open: %w", path, err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bSchema)
		if sb == nil {
			return fmt.Errorf("queue %s: no schema version: %w", path, ErrOldSchema)
		}
		switch v := string(sb.Get([]byte("version"))); v {
		case schemaVersion:
		case "1":
			return fmt.Errorf("queue %s: schema version 1: %w", path, ErrOldSchema)
		default:
			return fmt.Errorf("queue %s: unsupported schema version %q (want %q)", path, v, schemaVersion)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("queue %s: not a complete queue (bucket %s missing)", path, name)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Queue{db: db, path: path}, nil
}

func (q *Queue) init() error {
	err := q.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		sb := tx.Bucket(bSchema)
		switch v := string(sb.Get([]byte("version"))); v {
		case schemaVersion:
			return nil
		case "": // a new file
		case "1":
			if err := migrateV1(tx); err != nil {
				return fmt.Errorf("migrate from schema version 1: %w", err)
			}
		default:
			return fmt.Errorf("unsupported schema version %q (want %q)", v, schemaVersion)
		}
		return sb.Put([]byte("version"), []byte(schemaVersion))
	})
	if err != nil {
		return fmt.Errorf("queue %s: init: %w", q.path, err)
	}
	return nil
}

// migrateV1 replaces the per-state buckets of schema version 1 with states.
func migrateV1(tx *bolt.Tx) error {
	states := tx.Bucket(bStates)
	err := tx.Bucket(bItems).ForEach(func(_, v []byte) error {
		it, err := decode(v)
		if err != nil {
			return err
		}
		k, err := stateKey(it)
		if err != nil {
			return err
		}
		return states.Put(k, nil)
	})
	if err != nil {
		return err
	}
	for _, name := range v1Buckets {
		if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
	}
	return nil
}

// Close closes the database and releases its lock.
func (q *Queue) Close() error { return q.db.Close() }

// Enqueue durably records paths (one fsynced transaction for the whole batch)
// and returns how many were new. A path already Pending or InFlight is left
// as it is and not counted; a Done or Failed path goes back to Pending with
// Attempts, NextAttempt and LastError reset and Enqueued set to now, and is
// counted. Duplicates inside the batch count once. An invalid path rejects
// the whole batch before anything is written.
func (q *Queue) Enqueue(paths []string, source string, now time.Time) (added int, err error) {
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return 0, err
		}
	}
	if len(paths) == 0 {
		return 0, nil
	}
	now = norm(now)
	err = q.update(func(t *txn) error {
		added = 0
		for _, p := range paths {
			old, ok, err := t.get(p)
			if err != nil {
				return err
			}
			if ok && (old.State == Pending || old.State == InFlight) {
				continue
			}
			it := Item{Path: p, State: Pending, Source: source, Enqueued: now, Updated: now}
			if ok {
				err = t.replace(old, it)
			} else {
				err = t.insert(it)
			}
			if err != nil {
				return err
			}
			added++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// Claim moves up to max Pending items whose NextAttempt <= now to InFlight,
// oldest Enqueued first (then by path), and returns them as they now are.
func (q *Queue) Claim(now time.Time, max int) ([]Item, error) {
	if max <= 0 {
		return nil, nil
	}
	now = norm(now)
	nowKey := timeKey(now)
	var out []Item
	err := q.update(func(t *txn) error {
		out = nil
		if err := t.promote(nowKey); err != nil {
			return err
		}
		// Collect first: bbolt cursors must not be moved across writes to
		// their own bucket.
		var paths []string
		c := t.b(bReady).Cursor()
		for k, v := c.First(); k != nil && len(paths) < max; k, v = c.Next() {
			if len(v) != 8 || len(k) <= 8 {
				return fmt.Errorf("%w: bad ready entry %q", ErrCorrupt, k)
			}
			// Normally everything in ready is due; this only skips items
			// when the caller's clock reads earlier than it did when they
			// were moved to ready.
			if binary.BigEndian.Uint64(v) > nowKey {
				continue
			}
			paths = append(paths, string(k[8:]))
		}
		for _, p := range paths {
			old, err := t.mustGet(p)
			if err != nil {
				return err
			}
			if old.State != Pending {
				return fmt.Errorf("%w: %s is in ready index but %s", ErrCorrupt, p, old.State)
			}
			it := old
			it.State = InFlight
			it.Updated = now
			if err := t.replace(old, it); err != nil {
				return err
			}
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Complete marks an InFlight item Done.
func (q *Queue) Complete(path string, now time.Time) error {
	now = norm(now)
	return q.transition(path, func(it *Item) error {
		if it.State != InFlight {
			return wrongState("complete", it)
		}
		it.State = Done
		it.LastError = ""
		it.NextAttempt = time.Time{}
		it.Updated = now
		return nil
	})
}

// CompleteAll marks InFlight items Done in one durable transaction: a
// batch of a thousand small paths costs one fsync, not a thousand.
func (q *Queue) CompleteAll(paths []string, now time.Time) error {
	if len(paths) == 0 {
		return nil
	}
	now = norm(now)
	return q.update(func(t *txn) error {
		for _, path := range paths {
			old, err := t.mustGet(path)
			if err != nil {
				return err
			}
			if old.State != InFlight {
				return wrongState("complete", &old)
			}
			it := old
			it.State = Done
			it.LastError = ""
			it.NextAttempt = time.Time{}
			it.Updated = now
			if err := t.replace(old, it); err != nil {
				return err
			}
		}
		return nil
	})
}

// Retry puts an InFlight item back to Pending after a transient failure:
// Attempts++, LastError = cause, NextAttempt = next (zero means at once).
func (q *Queue) Retry(path string, cause string, next time.Time, now time.Time) error {
	now = norm(now)
	next = norm(next)
	return q.transition(path, func(it *Item) error {
		if it.State != InFlight {
			return wrongState("retry", it)
		}
		it.State = Pending
		it.Attempts++
		it.LastError = cause
		it.NextAttempt = next
		it.Updated = now
		return nil
	})
}

// Fail marks an item permanently Failed with reason. It is allowed from
// Pending, InFlight and Failed (which updates the reason), not from Done:
// an upload that succeeded cannot fail afterwards. Attempts counts the
// failed attempt only when the item was InFlight.
func (q *Queue) Fail(path string, reason string, now time.Time) error {
	now = norm(now)
	return q.transition(path, func(it *Item) error {
		if it.State == Done {
			return wrongState("fail", it)
		}
		if it.State == InFlight {
			it.Attempts++
		}
		it.State = Failed
		it.LastError = reason
		it.NextAttempt = time.Time{}
		it.Updated = now
		return nil
	})
}

// Requeue moves every InFlight item back to Pending, for start-up after a
// crash: no upload can be running before the daemon has claimed anything.
// Attempts is unchanged, since the interrupted attempt did not fail.
// It returns how many items were moved.
func (q *Queue) Requeue(now time.Time) (int, error) {
	now = norm(now)
	var n int
	err := q.update(func(t *txn) error {
		paths, err := t.list(InFlight, 0)
		if err != nil {
			return err
		}
		for _, p := range paths {
			old, err := t.mustGet(p)
			if err != nil {
				return err
			}
			it := old
			it.State = Pending
			it.Updated = now
			if err := t.replace(old, it); err != nil {
				return err
			}
		}
		n = len(paths)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Stats returns the number of items in each state. It reads four counters
// kept up to date by every transaction, so it costs the same at any size.
func (q *Queue) Stats() (Stats, error) {
	var s Stats
	err := q.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCounts)
		var err error
		if s.Pending, err = readCount(b, Pending); err != nil {
			return err
		}
		if s.InFlight, err = readCount(b, InFlight); err != nil {
			return err
		}
		if s.Done, err = readCount(b, Done); err != nil {
			return err
		}
		s.Failed, err = readCount(b, Failed)
		return err
	})
	return s, err
}

// List returns up to limit items in state (all of them if limit <= 0).
// Pending and InFlight come oldest Enqueued first; Done and Failed most
// recently Updated first. Ties are broken by path (descending for the
// newest-first orders).
func (q *Queue) List(state State, limit int) ([]Item, error) {
	if !state.Valid() {
		return nil, fmt.Errorf("queue: unknown state %q", state)
	}
	var out []Item
	err := q.db.View(func(tx *bolt.Tx) error {
		t := &txn{tx: tx}
		paths, err := t.list(state, limit)
		if err != nil {
			return err
		}
		for _, p := range paths {
			it, ok, err := t.get(p)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: states index names missing item %q", ErrCorrupt, p)
			}
			out = append(out, it)
		}
		return nil
	})
	return out, err
}

// NextDue returns the earliest NextAttempt among Pending items, and false if
// there are none. A zero time means an item is due at once. It reads one key.
func (q *Queue) NextDue() (time.Time, bool, error) {
	var (
		at time.Time
		ok bool
	)
	err := q.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bDue).Cursor().First()
		if k == nil {
			return nil
		}
		if len(k) <= 8 {
			return fmt.Errorf("%w: bad due entry %q", ErrCorrupt, k)
		}
		at, ok = keyTime(binary.BigEndian.Uint64(k)), true
		return nil
	})
	return at, ok, err
}

// Get returns the item for path, and false if it is not in the queue.
func (q *Queue) Get(path string) (Item, bool, error) {
	var (
		it Item
		ok bool
	)
	err := q.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bItems).Get([]byte(path))
		if v == nil {
			return nil
		}
		var err error
		it, err = decode(v)
		ok = err == nil
		return err
	})
	return it, ok, err
}

// PruneDone deletes all but the keep most recently Updated Done items, so the
// history stays bounded. Failed items are kept: they need a person's eyes.
func (q *Queue) PruneDone(keep int) error {
	if keep < 0 {
		keep = 0
	}
	return q.update(func(t *txn) error {
		n, err := t.count(Done)
		if err != nil {
			return err
		}
		excess := n - keep
		if excess <= 0 {
			return nil // the counter spares the scan
		}
		paths, err := t.list(Done, 0)
		if err != nil {
			return err
		}
		// Oldest first: list gives Done newest first.
		for _, p := range paths[max(len(paths)-excess, 0):] {
			old, err := t.mustGet(p)
			if err != nil {
				return err
			}
			if err := t.remove(old); err != nil {
				return err
			}
		}
		return nil
	})
}

// Meta returns a value stored with SetMeta, and false if key was never set.
func (q *Queue) Meta(key string) (string, bool, error) {
	var (
		val string
		ok  bool
	)
	err := q.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bKV).Get([]byte(key)); v != nil {
			val, ok = string(v), true
		}
		return nil
	})
	return val, ok, err
}

// SetMeta durably stores value under key (which must not be empty).
func (q *Queue) SetMeta(key, value string) error {
	if key == "" {
		return errors.New("queue: empty meta key")
	}
	return q.update(func(t *txn) error {
		t.changed = true
		return t.b(bKV).Put([]byte(key), []byte(value))
	})
}

// --- transactions -------------------------------------------------------

// txn wraps a write transaction, collecting counter changes so they are
// written once at the end, and noting whether anything changed at all so an
// idle Claim or a fully coalesced Enqueue costs no fsync.
type txn struct {
	tx      *bolt.Tx
	delta   map[State]int
	changed bool
}

func (q *Queue) update(fn func(t *txn) error) error {
	tx, err := q.db.Begin(true)
	if err != nil {
		return err
	}
	t := &txn{tx: tx, delta: map[State]int{}}
	if err := fn(t); err != nil {
		tx.Rollback()
		return err
	}
	if !t.changed {
		return tx.Rollback()
	}
	if err := t.flushCounts(); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// transition loads path, lets fn change it in place, and stores the result
// with all its index entries moved.
func (q *Queue) transition(path string, fn func(it *Item) error) error {
	return q.update(func(t *txn) error {
		old, err := t.mustGet(path)
		if err != nil {
			return err
		}
		it := old
		if err := fn(&it); err != nil {
			return err
		}
		return t.replace(old, it)
	})
}

func (t *txn) b(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

func (t *txn) get(path string) (Item, bool, error) {
	v := t.b(bItems).Get([]byte(path))
	if v == nil {
		return Item{}, false, nil
	}
	it, err := decode(v)
	return it, err == nil, err
}

func (t *txn) mustGet(path string) (Item, error) {
	it, ok, err := t.get(path)
	if err != nil {
		return Item{}, err
	}
	if !ok {
		return Item{}, fmt.Errorf("queue: %s: %w", path, ErrNotFound)
	}
	return it, nil
}

func (t *txn) insert(it Item) error {
	if err := t.put(it); err != nil {
		return err
	}
	if err := t.addIndexes(it); err != nil {
		return err
	}
	t.delta[it.State]++
	return nil
}

// replace swaps old for it (same path): every index entry derived from old
// is removed and those for it are added.
func (t *txn) replace(old, it Item) error {
	if err := t.delIndexes(old); err != nil {
		return err
	}
	if err := t.put(it); err != nil {
		return err
	}
	if err := t.addIndexes(it); err != nil {
		return err
	}
	t.delta[old.State]--
	t.delta[it.State]++
	return nil
}

func (t *txn) remove(old Item) error {
	if err := t.delIndexes(old); err != nil {
		return err
	}
	t.changed = true
	t.delta[old.State]--
	return t.b(bItems).Delete([]byte(old.Path))
}

func (t *txn) put(it Item) error {
	v, err := json.Marshal(it)
	if err != nil {
		return err
	}
	t.changed = true
	return t.b(bItems).Put([]byte(it.Path), v)
}

// addIndexes adds the index entries of it.
func (t *txn) addIndexes(it Item) error {
	k, err := stateKey(it)
	if err != nil {
		return err
	}
	if err := t.b(bStates).Put(k, nil); err != nil {
		return err
	}
	if it.State != Pending {
		return nil
	}
	if err := t.b(bDue).Put(indexKey(it.NextAttempt, it.Path), nil); err != nil {
		return err
	}
	// A zero NextAttempt is due at any clock reading, so it goes straight
	// to ready: a fresh backlog needs no promotion pass. Anything else
	// waits for a Claim whose clock has reached it.
	if timeKey(it.NextAttempt) == 0 {
		return t.b(bReady).Put(indexKey(it.Enqueued, it.Path), be64(0))
	}
	return t.b(bWait).Put(indexKey(it.NextAttempt, it.Path), be64(timeKey(it.Enqueued)))
}

// delIndexes removes the index entries of it (of a Pending item, from
// whichever of wait and ready holds it).
func (t *txn) delIndexes(it Item) error {
	k, err := stateKey(it)
	if err != nil {
		return err
	}
	if err := t.b(bStates).Delete(k); err != nil {
		return err
	}
	if it.State != Pending {
		return nil
	}
	if err := t.b(bDue).Delete(indexKey(it.NextAttempt, it.Path)); err != nil {
		return err
	}
	if err := t.b(bWait).Delete(indexKey(it.NextAttempt, it.Path)); err != nil {
		return err
	}
	return t.b(bReady).Delete(indexKey(it.Enqueued, it.Path))
}

// list returns the paths of up to limit items in state s (all if limit <=
// 0) in List's order.
func (t *txn) list(s State, limit int) ([]string, error) {
	code := stateCode(s)
	c := t.b(bStates).Cursor()
	k, _ := c.Seek([]byte{code})
	next := c.Next
	if s == Done || s == Failed { // newest first: from the end of the range
		next = c.Prev
		if k, _ = c.Seek([]byte{code + 1}); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	var out []string
	for ; k != nil && k[0] == code && (limit <= 0 || len(out) < limit); k, _ = next() {
		if len(k) <= 9 {
			return nil, fmt.Errorf("%w: bad states entry %q", ErrCorrupt, k)
		}
		out = append(out, string(k[9:]))
	}
	return out, nil
}

// promote moves every wait entry whose NextAttempt <= nowKey to ready.
func (t *txn) promote(nowKey uint64) error {
	wait, ready := t.b(bWait), t.b(bReady)
	type entry struct{ k, v []byte }
	var moved []entry
	c := wait.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) <= 8 || len(v) != 8 {
			return fmt.Errorf("%w: bad wait entry %q", ErrCorrupt, k)
		}
		if binary.BigEndian.Uint64(k) > nowKey {
			break
		}
		// Copy: bbolt's slices are only valid until the next write.
		moved = append(moved, entry{bytes.Clone(k), bytes.Clone(v)})
	}
	for _, e := range moved {
		if err := wait.Delete(e.k); err != nil {
			return err
		}
		rk := make([]byte, 0, len(e.k))
		rk = append(append(rk, e.v...), e.k[8:]...) // enqueued|path
		if err := ready.Put(rk, e.k[:8]); err != nil {
			return err
		}
	}
	if len(moved) > 0 {
		t.changed = true
	}
	return nil
}

func (t *txn) count(s State) (int, error) {
	n, err := readCount(t.b(bCounts), s)
	return n + t.delta[s], err
}

func (t *txn) flushCounts() error {
	b := t.b(bCounts)
	for _, s := range States {
		d := t.delta[s]
		if d == 0 {
			continue
		}
		n, err := readCount(b, s)
		if err != nil {
			return err
		}
		if n+d < 0 {
			return fmt.Errorf("%w: %s count would go negative (%d%+d)", ErrCorrupt, s, n, d)
		}
		if err := b.Put([]byte(s), be64(uint64(n+d))); err != nil {
			return err
		}
	}
	return nil
}

func readCount(b *bolt.Bucket, s State) (int, error) {
	v := b.Get([]byte(s))
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: bad %s counter", ErrCorrupt, s)
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

// --- encoding -----------------------------------------------------------

// stateCode is the first byte of a states key.
func stateCode(s State) byte {
	switch s {
	case Pending:
		return 'p'
	case InFlight:
		return 'i'
	case Done:
		return 'd'
	case Failed:
		return 'f'
	}
	return 0
}

// stateKey is its key in states: state, list time, path.
func stateKey(it Item) ([]byte, error) {
	at := it.Enqueued
	switch it.State {
	case Pending, InFlight:
	case Done, Failed:
		at = it.Updated
	default:
		return nil, fmt.Errorf("%w: %s has unknown state %q", ErrCorrupt, it.Path, it.State)
	}
	return append([]byte{stateCode(it.State)}, indexKey(at, it.Path)...), nil
}

func checkPath(p string) error {
	if p == "" {
		return errors.New("queue: empty path")
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("queue: path longer than %d bytes: %.80q", MaxPathLen, p)
	}
	return nil
}

func wrongState(op string, it *Item) error {
	return fmt.Errorf("queue: cannot %s %s: it is %s: %w", op, it.Path, it.State, ErrWrongState)
}

// norm drops the monotonic clock reading and location so that what is
// stored, indexed and returned is the same instant in the same form.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

// timeKey maps t to an order-preserving uint64; the zero time and anything
// before 1970 become 0, anything past 2262 saturates.
func timeKey(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	if t.Unix() >= math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

func keyTime(k uint64) time.Time {
	if k == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(k)).UTC()
}

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func indexKey(t time.Time, path string) []byte {
	k := make([]byte, 8, 8+len(path))
	binary.BigEndian.PutUint64(k, timeKey(t))
	return append(k, path...)
}

func decode(v []byte) (Item, error) {
	var it Item
	if err := json.Unmarshal(v, &it); err != nil {
		return Item{}, fmt.Errorf("%w: bad item record: %v", ErrCorrupt, err)
	}
	return it, nil
}
