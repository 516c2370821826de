package cachelock

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// Locks coordinate pushers with gc through objects in the cache itself, so
// that they work across machines with nothing but the bucket in common
// (the pattern restic uses for prune):
//
//   - A pusher holds a shared lock (locks/shared-*.json) from before its
//     first existence check that leads to a publish until its last narinfo
//     is written. Any number of pushers hold shared locks at once.
//   - gc holds an exclusive lock (locks/exclusive-*.json) for its whole
//     mark and sweep, and starts sweeping only when no live shared lock
//     exists.
//   - Both write their own lock first and list the others second. So if
//     neither saw the other, each listing happened before the other's
//     write, which is impossible for both at once (S3 lists are strongly
//     consistent): at least one of them sees the other and backs off. A
//     pusher that sees an exclusive lock releases its shared lock and
//     waits; gc that sees shared locks waits for them to go.
//   - A lock is live while it is not released and its object was rewritten
//     (refreshed) within StaleAfter, judged by the server's Last-Modified,
//     so a holder killed with -9 blocks the other side for StaleAfter at
//     most. A holder stops acting on its lock (Valid is false) once its
//     last successful refresh is StaleAfter/2 old, before anyone else may
//     call it stale.
//   - The writer's policy has no s3:DeleteObject, so a pusher releases its
//     lock by overwriting it with "released"; gc, which may delete, removes
//     released and stale locks. That is safe because a key is never held
//     again once released (every attempt to take a lock writes a new key),
//     and a lock that went invalid (not refreshed in time, or its object
//     missing from a listing) stays invalid: its holder takes a new one.
//
// The consequence pushers rely on: everything a pusher saw present while
// its lock was valid stays present, as far as gc is concerned, until it
// releases the lock. Presence seen before the lock was taken counts for
// nothing (upload.Presence.Reset).

// Prefix is where lock objects live in the cache.
const Prefix = "locks/"

// DefaultStale is how long an unrefreshed lock stays live.
const DefaultStale = 5 * time.Minute

// Kind is "shared" (pushers) or "exclusive" (gc).
type Kind string

const (
	Shared    Kind = "shared"
	Exclusive Kind = "exclusive"
)

// lockBody is the JSON content of a lock object.
type lockBody struct {
	Kind      Kind      `json:"kind"`
	Owner     string    `json:"owner"` // host and pid, for humans
	State     string    `json:"state"` // "held" or "released"
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"` // the holder's clock; informative only
}

// Locker takes and releases locks in one cache.
type Locker struct {
	Target     cache.Target
	StaleAfter time.Duration
	Log        *slog.Logger
	// Poll is how long to wait between looks at the other side's locks.
	Poll time.Duration

	list cache.Lister
}

// New returns a Locker for t, whose locks go stale after staleAfter (0 =
// DefaultStale). It fails for a target that cannot list: locks are found
// by listing.
func New(t cache.Target, staleAfter time.Duration, log *slog.Logger) (*Locker, error) {
	l, ok := t.(cache.Lister)
	if !ok {
		return nil, fmt.Errorf("%s cannot be listed, so it cannot hold locks", t)
	}
	if staleAfter <= 0 {
		staleAfter = DefaultStale
	}
	return &Locker{Target: t, StaleAfter: staleAfter, Log: log, list: l}, nil
}

func (l *Locker) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.Default()
}

func (l *Locker) poll() time.Duration {
	if l.Poll > 0 {
		return l.Poll
	}
	return min(max(l.StaleAfter/20, 200*time.Millisecond), 5*time.Second)
}

// Info is one lock object as listed.
type Info struct {
	Key          string
	Kind         Kind
	Owner        string
	Released     bool
	LastModified time.Time
	Live         bool // held and refreshed within StaleAfter of the newest lock's time
}

// Lock is a held lock.
type Lock struct {
	l    *Locker
	key  string
	body lockBody

	mu        sync.Mutex
	refreshed time.Time // local clock: start of the last successful write
	yield     bool      // gc asked for the cache (shared locks only)
	lost      bool      // invalid for good: take a new lock
	stop      chan struct{}
	stopped   chan struct{}
}

func newLockKey(kind Kind) (string, lockBody) {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	crand.Read(b)
	owner := fmt.Sprintf("%s pid %d", host, os.Getpid())
	safeHost := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, host)
	key := fmt.Sprintf("%s%s-%s-%d-%s.json", Prefix, kind, safeHost, os.Getpid(), hex.EncodeToString(b))
	now := time.Now().UTC()
	return key, lockBody{Kind: kind, Owner: owner, State: "held", Created: now, Refreshed: now}
}

func (l *Locker) write(ctx context.Context, key string, body lockBody) error {
	b, _ := json.Marshal(body)
	return l.Target.Put(ctx, key, bytes.NewReader(b), int64(len(b)), "application/json")
}

// List returns every lock object, with liveness judged against the
// newest Last-Modified among them (the server's "now", as near as a
// listing tells it; the caller has just written its own lock).
func (l *Locker) List(ctx context.Context) ([]Info, error) {
	var locks []Info
	err := l.list.List(ctx, Prefix, func(o cache.ObjectInfo) error {
		name := strings.TrimPrefix(o.Key, Prefix)
		var kind Kind
		switch {
		case strings.HasPrefix(name, string(Shared)+"-"):
			kind = Shared
		case strings.HasPrefix(name, string(Exclusive)+"-"):
			kind = Exclusive
		default:
			return nil
		}
		locks = append(locks, Info{Key: o.Key, Kind: kind, LastModified: o.LastModified})
		return nil
	})
	if err != nil {
		return nil, err
	}
	var now time.Time
	for _, li := range locks {
		if li.LastModified.After(now) {
			now = li.LastModified
		}
	}
	for i := range locks {
		li := &locks[i]
		if now.Sub(li.LastModified) >= l.StaleAfter {
			continue // stale: no need to read it
		}
		b, err := l.Target.Get(ctx, li.Key)
		if errors.Is(err, cache.ErrNotFound) {
			li.Released = true // deleted since the listing
			continue
		}
		if err != nil {
			return nil, err
		}
		var body lockBody
		if json.Unmarshal(b, &body) != nil {
			continue // unreadable: treat as stale
		}
		li.Owner, li.Released = body.Owner, body.State == "released"
		li.Live = !li.Released
	}
	return locks, nil
}

// Acquire takes a lock of kind. A shared lock waits while gc holds the
// cache; an exclusive one waits for shared locks to go, and fails at once
// if another gc holds the cache. The lock is refreshed in the background
// until Release.
func (l *Locker) Acquire(ctx context.Context, kind Kind) (*Lock, error) {
	key, body := newLockKey(kind)
	lk := &Lock{l: l, key: key, body: body}
	waitingSaid := false
	for {
		if kind == Shared && lk.body.State == "released" {
			// A released key is never held again: gc may delete it.
			key, body = newLockKey(kind)
			lk = &Lock{l: l, key: key, body: body}
		}
		start := time.Now()
		lk.body.State = "held"
		if err := l.write(ctx, key, lk.body); err != nil {
			return nil, fmt.Errorf("take %s lock %s: %w", kind, key, err)
		}
		locks, err := l.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("take %s lock: %w", kind, err)
		}
		var blockers []Info
		mine := false
		for _, li := range locks {
			if li.Key == key {
				mine = true
			}
			if !li.Live || li.Key == key {
				continue
			}
			if kind == Shared && li.Kind == Exclusive {
				blockers = append(blockers, li)
			}
			if kind == Exclusive {
				if li.Kind == Exclusive {
					lk.release(context.WithoutCancel(ctx))
					return nil, &cache.PermanentError{Err: fmt.Errorf("another gc holds the cache (%s, lock %s); run one gc at a time", li.Owner, li.Key)}
				}
				blockers = append(blockers, li)
			}
		}
		if !mine {
			// Deleted between our write and our listing: start again.
			continue
		}
		if len(blockers) == 0 {
			lk.refreshed = start
			lk.stop, lk.stopped = make(chan struct{}), make(chan struct{})
			go lk.refreshLoop()
			return lk, nil
		}
		if kind == Shared {
			// Step aside while gc runs: our lock would hold it up.
			if err := lk.release(ctx); err != nil {
				return nil, err
			}
			if !waitingSaid {
				l.log().Info("gc holds the cache; waiting before publishing", "target", l.Target.String(), "gc", blockers[0].Owner)
				waitingSaid = true
			}
		} else {
			if !waitingSaid {
				l.log().Info("waiting for pushers to finish publishing", "target", l.Target.String(), "pushers", len(blockers), "first", blockers[0].Owner)
				waitingSaid = true
			}
			// Keep ours fresh while we wait; no new pusher starts now.
			lk.refreshed = start
		}
		d := l.poll()
		d += time.Duration(rand.Int64N(int64(d)/2 + 1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			lk.release(context.WithoutCancel(ctx))
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (lk *Lock) refreshLoop() {
	defer close(lk.stopped)
	every := lk.l.StaleAfter / 5
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-lk.stop:
			return
		case <-t.C:
		}
		if !lk.Valid() {
			// Too late: someone may have judged it stale and deleted it.
			// Refreshing now could revive a key gc already removed.
			lk.mu.Lock()
			lk.lost = true
			lk.mu.Unlock()
			lk.l.log().Warn("the cache lock lapsed (not refreshed in time); taking a new one before publishing", "lock", lk.key)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), lk.l.StaleAfter/2)
		start := time.Now()
		lk.body.Refreshed = start.UTC()
		err := lk.l.write(ctx, lk.key, lk.body)
		if err == nil {
			locks, lerr := lk.l.List(ctx)
			lk.mu.Lock()
			if lerr == nil {
				mine := false
				for _, li := range locks {
					if li.Key == lk.key {
						mine = true
					}
					// gc waiting for us? Then finish what is being
					// published and step aside (the Pusher asks Yielding).
					if li.Live && li.Kind == Exclusive && li.Key != lk.key && lk.body.Kind == Shared {
						lk.yield = true
					}
				}
				if mine {
					lk.refreshed = start
				} else {
					lk.lost = true
				}
			}
			lost := lk.lost
			lk.mu.Unlock()
			if lost {
				cancel()
				lk.l.log().Warn("the cache lock was deleted under us; taking a new one before publishing", "lock", lk.key)
				return
			}
		} else {
			lk.l.log().Warn("cannot refresh the cache lock", "lock", lk.key, "err", err)
		}
		cancel()
	}
}

// Valid reports whether the lock may still be acted on: its last refresh
// is recent enough that nobody can have judged it stale.
func (lk *Lock) Valid() bool {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return !lk.lost && time.Since(lk.refreshed) < lk.l.StaleAfter/2
}

// Yielding reports whether gc is waiting for this shared lock.
func (lk *Lock) Yielding() bool {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.yield
}

// Key is the lock's object key.
func (lk *Lock) Key() string { return lk.key }

// Release stops refreshing and releases the lock: deleted when the
// credentials allow it, else overwritten as released.
func (lk *Lock) Release(ctx context.Context) error {
	if lk.stop != nil {
		close(lk.stop)
		<-lk.stopped
		lk.stop = nil
	}
	return lk.release(ctx)
}

func (lk *Lock) release(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if lk.body.Kind == Exclusive {
		if d, ok := lk.l.Target.(cache.Deleter); ok {
			if err := d.Delete(ctx, []string{lk.key}); err == nil {
				return nil
			}
		}
	}
	lk.body.State = "released"
	if err := lk.l.write(ctx, lk.key, lk.body); err != nil {
		return fmt.Errorf("release lock %s: %w", lk.key, err)
	}
	return nil
}
