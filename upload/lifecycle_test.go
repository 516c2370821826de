package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/nixpushd/nixpushd/cache/sema"
	"github.com/nixpushd/nixpushd/cachelock"
	"github.com/nixpushd/nixpushd/internal/cachetest"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// Concurrent questions about one key share one request.
func TestPresenceSingleFlight(t *testing.T) {
	m := cachetest.NewMem()
	m.Objects["k"] = []byte("x")
	release := make(chan struct{})
	m.ExistsHook = func(string) { <-release }
	p := NewPresence(sema.Wrap(m, semaphore.NewWeighted(4)), time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	start := time.Now()
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := p.Check(context.Background(), "k", start.Add(-time.Second))
			if err != nil || !ok {
				errs <- fmt.Errorf("ok %v err %v", ok, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them pile up on the first request
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.Requests.Load(); n > 2 {
		t.Errorf("%d requests for 50 concurrent questions, want 1 (2 at most if one asked before the first was sent)", n)
	}
}

// An answer older than the asker's bound is never used: the check before
// publishing always reaches the cache; the TTL-bounded one does not.
func TestPresenceFreshness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		m.Objects["k"] = []byte("x")
		p := NewPresence(sema.Wrap(m, semaphore.NewWeighted(4)), 10*time.Minute)
		ctx := context.Background()
		if ok, _ := p.Recent(ctx, "k"); !ok {
			t.Fatal("k not found")
		}
		time.Sleep(time.Second)
		p.Recent(ctx, "k")
		if n := p.Requests.Load(); n != 1 {
			t.Errorf("Recent within the TTL sent %d requests, want 1", n)
		}
		m.Remove("k")
		if ok, _ := p.Recent(ctx, "k"); !ok {
			t.Error("Recent within the TTL should answer from memory")
		}
		if ok, _ := p.Check(ctx, "k", time.Now()); ok {
			t.Error("a fresh Check trusted a remembered answer")
		}
		if n := p.Requests.Load(); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
		// The TTL expires: Recent asks again.
		m.Objects["k"] = []byte("x")
		p.Mark("k", false)
		time.Sleep(11 * time.Minute)
		if ok, _ := p.Recent(ctx, "k"); !ok {
			t.Error("Recent after the TTL used an expired answer")
		}
		// Reset forgets everything.
		p.Reset()
		p.Recent(ctx, "k")
		if n := p.Requests.Load(); n != 4 {
			t.Errorf("%d requests, want 4 (Reset forgets)", n)
		}
	})
}

// A key found missing after it was seen present is Lost once, even when
// a new lock session (Reset) came between; one never seen is not.
func TestPresenceLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		m.Objects["seen"] = []byte("x")
		p := NewPresence(sema.Wrap(m, semaphore.NewWeighted(4)), 10*time.Minute)
		ctx := context.Background()
		p.Recent(ctx, "seen")
		p.Mark("written", true)
		p.Recent(ctx, "never")
		time.Sleep(time.Second)
		m.Remove("seen")
		if ok, _ := p.Check(ctx, "seen", time.Now()); ok {
			t.Fatal("a fresh Check found the removed key")
		}
		p.Reset()
		time.Sleep(time.Second)
		if ok, _ := p.Recent(ctx, "written"); ok {
			t.Fatal("Recent after Reset found a key that is not in the cache")
		}
		for key, want := range map[string]bool{"seen": true, "written": true, "never": false} {
			if got := p.Lost(key); got != want {
				t.Errorf("Lost(%q) = %v, want %v", key, got, want)
			}
			if p.Lost(key) {
				t.Errorf("Lost(%q) is true twice", key)
			}
		}
	})
}

// Written vouches for a key this process wrote only while pushes go on
// without a break, within the TTL and the lock session; seeing the key
// present since keeps it ours.
func TestPresenceWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		p := NewPresence(sema.Wrap(m, semaphore.NewWeighted(4)), 10*time.Minute)
		p.Busy()
		p.Busy()
		p.MarkWritten("a")
		p.Mark("a", true) // seen since
		p.Mark("b", true) // seen, not written
		if !p.Written("a") || p.Written("b") {
			t.Fatalf("Written(a) %v, Written(b) %v; want true, false", p.Written("a"), p.Written("b"))
		}
		p.Done() // one push ends; the other goes on
		if !p.Written("a") {
			t.Error("Written(a) false while a push goes on")
		}
		p.Done()
		p.Busy()
		if p.Written("a") {
			t.Error("Written(a) true after a moment with no push going on")
		}
		p.MarkWritten("c")
		time.Sleep(11 * time.Minute)
		if p.Written("c") {
			t.Error("Written(c) true past the TTL")
		}
		p.MarkWritten("d")
		p.Reset()
		if p.Written("d") {
			t.Error("Written(d) true in a new lock session")
		}
		p.Done()
	})
}

// The scenario, in memory: a dependency deleted behind the
// Pusher's back (as an expiry rule would) is uploaded again before the
// new dependent's narinfo, although the Pusher remembers it as present.
func TestPushReuploadsDeletedReference(t *testing.T) {
	m := cachetest.NewMem()
	p := newTestPusher(t, m, nil)
	a := info("a")
	b := info("b", a)
	if res, err := p.Push(context.Background(), []*store.PathInfo{a, b}); err != nil || res.Uploaded != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	aKey := narinfoKeyOf(t, a.Path)
	ni, _ := nar.ParseNarInfo(m.Objects[aKey])
	m.Remove(aKey, ni.URL)
	m.Order = nil

	c := info("c", a, b)
	res, err := p.Push(context.Background(), []*store.PathInfo{a, b, c})
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("%v %v", err, res.Failed)
	}
	if res.Uploaded != 2 || res.Present != 1 {
		t.Errorf("uploaded %d present %d, want 2 (a again, c) and 1 (b)", res.Uploaded, res.Present)
	}
	if _, ok := m.Objects[aKey]; !ok {
		t.Fatal("a's narinfo was not uploaded again")
	}
	if _, ok := m.Objects[ni.URL]; !ok {
		t.Fatal("a's NAR was not uploaded again")
	}
	cKey := narinfoKeyOf(t, c.Path)
	if !(m.Index(ni.URL) < m.Index(aKey) && m.Index(aKey) < m.Index(cKey)) {
		t.Errorf("want a's NAR, then a's narinfo, then c's narinfo; got %v", m.Order)
	}
}

// A missing reference that is no longer in the local store fails the
// dependent with an error naming it, and the cache gets no narinfo that
// points at nothing.
func TestPushMissingReferenceNotLocal(t *testing.T) {
	m := cachetest.NewMem()
	p := newTestPusher(t, m, nil)
	a := info("a")
	if _, err := p.Push(context.Background(), []*store.PathInfo{a}); err != nil {
		t.Fatal(err)
	}
	aKey := narinfoKeyOf(t, a.Path)
	m.Remove(aKey)
	p.dump = func(w io.Writer, path string) error {
		if path == a.Path {
			return &fs.PathError{Op: "lstat", Path: path, Err: fs.ErrNotExist}
		}
		return fakeDump(nil)(w, path)
	}
	c := info("c", a)
	res, err := p.Push(context.Background(), []*store.PathInfo{a, c})
	if err != nil {
		t.Fatal(err)
	}
	cerr := res.Failed[c.Path]
	if cerr == nil || !strings.Contains(cerr.Error(), a.Path) {
		t.Errorf("c: %v, want an error naming %s", cerr, a.Path)
	}
	if !errors.Is(res.Failed[a.Path], ErrGone) {
		t.Errorf("a: %v, want ErrGone", res.Failed[a.Path])
	}
	if _, ok := m.Objects[narinfoKeyOf(t, c.Path)]; ok {
		t.Error("c's narinfo was written although its reference is missing")
	}
}

// An all-present closure costs one existence request per path, as before
// the fresh checks, and a second push within the TTL costs none.
func TestPushAllPresentRequests(t *testing.T) {
	m := cachetest.NewMem()
	var closure []*store.PathInfo
	leaves := []*store.PathInfo{}
	for i := range 50 {
		leaves = append(leaves, info(fmt.Sprintf("leaf%d", i)))
	}
	closure = append(closure, leaves...)
	closure = append(closure, info("top", leaves...))
	if _, err := newTestPusher(t, m, nil).Push(context.Background(), closure); err != nil {
		t.Fatal(err)
	}
	p := newTestPusher(t, m, nil)
	res, err := p.Push(context.Background(), closure)
	if err != nil || res.Present != len(closure) {
		t.Fatalf("%+v %v", res, err)
	}
	if n := p.Requests(); n != int64(len(closure)) {
		t.Errorf("%d existence requests for an all-present closure of %d, want %d", n, len(closure), len(closure))
	}
	p.Push(context.Background(), closure)
	if n := p.Requests(); n != int64(len(closure)) {
		t.Errorf("a second push within the TTL sent %d more requests", n-int64(len(closure)))
	}
}

// The fresh checks before publishing are shared: 50 cached leaves and 5
// mids referring to all of them cost one check per leaf, not one per
// edge; leaves the push uploaded itself cost none.
func TestPushFreshChecksPerReference(t *testing.T) {
	m := cachetest.NewMem()
	p := newTestPusher(t, m, nil)
	var leaves []*store.PathInfo
	for i := range 50 {
		leaves = append(leaves, info(fmt.Sprintf("leaf%d", i)))
	}
	mids := []*store.PathInfo{}
	for i := range 5 {
		mids = append(mids, info(fmt.Sprintf("mid%d", i), leaves...))
	}
	closure := append(append([]*store.PathInfo{}, leaves...), mids...)
	res, err := p.Push(context.Background(), closure)
	if err != nil || res.Uploaded != len(closure) {
		t.Fatalf("%+v %v", res, err)
	}
	// Missing: 55 narinfo checks (or, past 99 requests, a listing that
	// answers the rest); small NARs are sent unasked; no fresh
	// reference checks: this push wrote the leaves.
	if n := p.Requests(); n < 1 || n > 55 {
		t.Errorf("%d requests, want 1-55 (what is missing; no fresh checks of the leaves this push wrote)", n)
	}

	m2 := cachetest.NewMem()
	if _, err := newTestPusher(t, m2, nil).Push(context.Background(), leaves); err != nil {
		t.Fatal(err)
	}
	p2 := newTestPusher(t, m2, nil)
	if res, err := p2.Push(context.Background(), closure); err != nil || res.Uploaded != len(mids) {
		t.Fatalf("%+v %v", res, err)
	}
	// Missing: 55 checks; fresh checks of the cached leaves: at most
	// 5 × 50, at least 50 (fewer than the 55 + 50 requests a listing
	// would replace).
	if n := p2.Requests(); n < 55+50-listPage/listPerCheck+1 || n > 55+250 {
		t.Errorf("cached leaves: %d requests", n)
	}
}

// Publishing pauses while gc holds the cache, and what was seen present
// before gc counts for nothing after it: a dependency gc deleted is
// uploaded again.
func TestPushAfterGCRechecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		p := newLockingTestPusher(t, m)
		a := info("a")
		ctx := context.Background()
		if _, err := p.Push(ctx, []*store.PathInfo{a}); err != nil {
			t.Fatal(err)
		}
		// gc takes the cache and deletes a.
		excl, err := p.Locker.Acquire(ctx, cachelock.Exclusive)
		if err != nil {
			t.Fatal(err)
		}
		aKey := narinfoKeyOf(t, a.Path)
		ni, _ := nar.ParseNarInfo(m.Objects[aKey])
		m.Remove(aKey, ni.URL)
		done := make(chan *Result)
		b := info("b", a)
		go func() {
			res, err := p.Push(ctx, []*store.PathInfo{a, b})
			if err != nil {
				t.Error(err)
			}
			done <- res
		}()
		time.Sleep(30 * time.Second)
		if m.Has(narinfoKeyOf(t, b.Path)) {
			t.Fatal("a narinfo was published while gc held the cache")
		}
		excl.Release(ctx)
		res := <-done
		if len(res.Failed) > 0 || res.Uploaded != 2 {
			t.Errorf("%+v", res)
		}
		if _, ok := m.Objects[aKey]; !ok {
			t.Error("a was not uploaded again after gc deleted it")
		}
		synctest.Wait()
	})
}

// A reference the push wrote itself counts as present only within the
// lock session it was written in: when gc takes the cache between the
// reference's narinfo and its dependent's, and deletes the reference,
// the dependent waits for it to be uploaded again.
func TestPushOwnWriteRecheckedAfterGC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		p := newLockingTestPusher(t, m)
		ctx := context.Background()
		a := info("a")
		b := info("b", a)
		aKey := narinfoKeyOf(t, a.Path)
		gcDone := make(chan struct{})
		var once sync.Once
		p.dump = func(w io.Writer, path string) error {
			if path == b.Path {
				once.Do(func() {
					for !m.Has(aKey) {
						time.Sleep(10 * time.Millisecond)
					}
					// gc: waits for the pusher to yield, deletes a.
					go func() {
						defer close(gcDone)
						excl, err := p.Locker.Acquire(ctx, cachelock.Exclusive)
						if err != nil {
							t.Error(err)
							return
						}
						ni, _ := nar.ParseNarInfo(m.Objects[aKey])
						m.Remove(aKey, ni.URL)
						excl.Release(ctx)
					}()
					time.Sleep(10 * time.Second) // gc waits; the pusher sees it at a refresh
				})
			}
			return fakeDump(nil)(w, path)
		}
		res, err := p.Push(ctx, []*store.PathInfo{a, b})
		if err != nil || len(res.Failed) > 0 {
			t.Fatalf("%+v %v", res, err)
		}
		<-gcDone
		if !m.Has(aKey) {
			t.Fatalf("b was published after gc deleted its reference a, which the push had written before gc: %v", m.Order)
		}
		if res.Uploaded != 3 {
			t.Errorf("uploaded %d, want 3 (a, a again, b)", res.Uploaded)
		}
		synctest.Wait()
	})
}

// newLockingTestPusher is newTestPusher that takes the cache lock, as a
// real push does, polling often enough for a test.
func newLockingTestPusher(t *testing.T, m *cachetest.Mem) *Pusher {
	p := newTestPusher(t, m, nil)
	lk, err := cachelock.New(m, 10*time.Second, newTestLog())
	if err != nil {
		t.Fatal(err)
	}
	lk.Poll = 500 * time.Millisecond
	p.Locker = lk
	return p
}

func newTestLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The temp budget: a NAR bigger than the whole budget goes through, and
// alone.
func TestPushTempBudget(t *testing.T) {
	m := cachetest.NewMem()
	p := newTestPusher(t, m, nil)
	p.MaxTempSize = 100 // smaller than any NAR's reservation
	p.smallNAR = -1     // every NAR goes through a temp file
	var mu sync.Mutex
	cur, peak := 0, 0
	p.dump = func(w io.Writer, path string) error {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		cur--
		mu.Unlock()
		return fakeDump(nil)(w, path)
	}
	var closure []*store.PathInfo
	for i := range 12 {
		closure = append(closure, info(fmt.Sprintf("p%d", i)))
	}
	res, err := p.Push(context.Background(), closure)
	if err != nil || res.Uploaded != 12 {
		t.Fatalf("%+v %v", res, err)
	}
	if peak != 1 {
		t.Errorf("%d NARs in the temp dir at once, want 1 with a budget smaller than each", peak)
	}
}

// A large closure is answered by one listing of the cache, not one
// existence check per path: a no-op re-push of 500 paths costs one
// request, and so does finding them all missing.
func TestPushPrimesWithListing(t *testing.T) {
	m := cachetest.NewMem()
	var closure []*store.PathInfo
	for i := range 500 {
		closure = append(closure, info(fmt.Sprintf("p%d", i)))
	}
	p := newTestPusher(t, m, nil)
	res, err := p.Push(context.Background(), closure)
	if err != nil || res.Uploaded != 500 {
		t.Fatalf("%+v %v", res, err)
	}
	narinfoHeads := 0
	for k, n := range m.Checks {
		if strings.HasSuffix(k, ".narinfo") {
			narinfoHeads += n
		}
	}
	if m.Lists != 1 || narinfoHeads != 0 {
		t.Errorf("fresh push: %d listings and %d narinfo checks, want 1 and 0", m.Lists, narinfoHeads)
	}
	m.Checks = map[string]int{}
	p2 := newTestPusher(t, m, nil)
	res, err = p2.Push(context.Background(), closure)
	if err != nil || res.Present != 500 {
		t.Fatalf("%+v %v", res, err)
	}
	delete(m.Checks, "nix-cache-info") // each new Pusher looks once
	if n := p2.Requests(); n != 1 || len(m.Checks) != 0 {
		t.Errorf("no-op re-push of 500 paths: %d requests (%d keys checked one by one), want 1 listing", n, len(m.Checks))
	}
	// A listing far longer than the checks it saves is abandoned.
	for i := range 200_000 {
		m.Objects[fmt.Sprintf("junk%07d", i)] = nil
	}
	p3 := newTestPusher(t, m, nil)
	if _, err := p3.Push(context.Background(), closure[:100]); err != nil {
		t.Fatal(err)
	}
	delete(m.Checks, "nix-cache-info")
	if len(m.Checks) != 100 {
		t.Errorf("with a huge bucket: %d keys checked one by one, want all 100", len(m.Checks))
	}
}

// References the push wrote itself, in the same lock session, cost no
// fresh check. References found cached are checked afresh before
// publishing: with many, by one listing of the cache (sent after the
// narinfo became ready), shared by the dependents waiting at the same
// time, not a check per reference.
func TestPushFreshChecksByListing(t *testing.T) {
	m := cachetest.NewMem()
	p := newTestPusher(t, m, nil)
	var leaves []*store.PathInfo
	for i := range 200 {
		leaves = append(leaves, info(fmt.Sprintf("leaf%d", i)))
	}
	closure := append([]*store.PathInfo{}, leaves...)
	for i := range 5 {
		closure = append(closure, info(fmt.Sprintf("mid%d", i), leaves...))
	}
	res, err := p.Push(context.Background(), closure)
	if err != nil || res.Uploaded != len(closure) {
		t.Fatalf("%+v %v", res, err)
	}
	heads := 0
	for k, n := range m.Checks {
		if strings.HasSuffix(k, ".narinfo") {
			heads += n
		}
	}
	if heads != 0 || m.Lists != 1 {
		t.Errorf("%d narinfo checks and %d listings; want 0 and 1 (to find what is missing; the mids' references were written by this push)", heads, m.Lists)
	}
	// A reference deleted meanwhile is still caught by the listing.
	m.Remove(narinfoKeyOf(t, leaves[7].Path))
	p2 := newTestPusher(t, m, nil)
	top := info("top", append(leaves, closure[200:]...)...)
	res, err = p2.Push(context.Background(), append(closure, top))
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if _, ok := m.Objects[narinfoKeyOf(t, leaves[7].Path)]; !ok {
		t.Error("a reference deleted before the push was not uploaded again")
	}

	// A push that finds the leaves cached checks them afresh for its
	// dependents, by listing: 200 leaves, 5 mids referring to all.
	m2 := cachetest.NewMem()
	if _, err := newTestPusher(t, m2, nil).Push(context.Background(), leaves); err != nil {
		t.Fatal(err)
	}
	m2.Checks, m2.Lists = map[string]int{}, 0
	p3 := newTestPusher(t, m2, nil)
	if res, err := p3.Push(context.Background(), closure); err != nil || res.Uploaded != 5 {
		t.Fatalf("%+v %v", res, err)
	}
	heads = 0
	for k, n := range m2.Checks {
		if strings.HasSuffix(k, ".narinfo") {
			heads += n
		}
	}
	if heads != 0 || m2.Lists < 2 || m2.Lists > 6 {
		t.Errorf("cached leaves: %d narinfo checks and %d listings; want 0 and 2-6 (one to find what is missing, one or more for the mids' references)", heads, m2.Lists)
	}
}
