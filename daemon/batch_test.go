package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// countingStore is a store of made-up valid paths that counts the
// database reads the daemon makes.
type countingStore struct {
	mu    sync.Mutex
	valid map[string]*store.PathInfo
	calls map[string]int
}

func (s *countingStore) count(name string) {
	s.mu.Lock()
	s.calls[name]++
	s.mu.Unlock()
}

func (s *countingStore) PathInfos(_ context.Context, paths []string) ([]*store.PathInfo, error) {
	s.count("PathInfos")
	var out []*store.PathInfo
	for _, p := range paths {
		pi, ok := s.valid[p]
		if !ok {
			return nil, fmt.Errorf("%s: %w", p, store.ErrNotValid)
		}
		out = append(out, pi)
	}
	return out, nil
}

func (s *countingStore) Closure(ctx context.Context, paths []string) ([]*store.PathInfo, error) {
	s.count("Closure")
	return s.PathInfos(ctx, paths) // the made-up paths have no references
}

func (s *countingStore) ValidPaths(_ context.Context, paths []string) ([]string, error) {
	s.count("ValidPaths")
	var out []string
	for _, p := range paths {
		if _, ok := s.valid[p]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *countingStore) Close() error { return nil }

func (s *countingStore) DerivationOutputs(context.Context, string) ([]string, error) { return nil, nil }
func (s *countingStore) RegisteredSince(context.Context, int64) ([]store.Registered, error) {
	return nil, nil
}
func (s *countingStore) RegisteredAfter(context.Context, int64) ([]store.Registered, error) {
	return nil, nil
}
func (s *countingStore) LastSeq(context.Context) (int64, error) { return 0, nil }

// newTestDaemon is a daemon over st with a fresh queue; p nil means a
// Pusher that pushes nothing.
func newTestDaemon(t *testing.T, st store.Store, p *upload.Pusher) (*Daemon, *queue.Queue) {
	t.Helper()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if p == nil {
		p = &upload.Pusher{Log: log}
	}
	return New(&Config{StoreDir: "/nix/store", MaxActive: 8, MaxRetryDelay: time.Minute}, q, st, p, log), q
}

// A batch of valid, wanted roots costs one closure query and no other
// database read; a batch with a root gone falls back to sorting them out.
func TestBatchReadsTheDatabaseOnce(t *testing.T) {
	path := func(i int) string { return fmt.Sprintf("/nix/store/%032d-batch-%d", i, i) }
	st := &countingStore{valid: map[string]*store.PathInfo{}, calls: map[string]int{}}
	for i := range 3 {
		st.valid[path(i)] = &store.PathInfo{Path: path(i), NarSize: 1, Ultimate: true}
	}
	target, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	comp, err := compression.New(compression.Options{Method: "none", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	d, q := newTestDaemon(t, st, &upload.Pusher{Target: target, Compressor: comp, Retry: retry.Policy{Attempts: 1}, Log: log})

	claim := func(paths ...string) []queue.Item {
		t.Helper()
		if _, err := q.Enqueue(paths, "hook", time.Now()); err != nil {
			t.Fatal(err)
		}
		items, err := q.Claim(time.Now(), 100)
		if err != nil || len(items) != len(paths) {
			t.Fatalf("claimed %d items (%v), want %d", len(items), err, len(paths))
		}
		return items
	}
	d.processBatch(t.Context(), claim(path(0), path(1), path(2)))
	if want := map[string]int{"Closure": 1, "PathInfos": 1}; !sameCounts(st.calls, want) {
		t.Errorf("valid batch: database reads %v, want %v (the closure query only)", st.calls, want)
	}

	clear(st.calls)
	gone := path(9)
	d.processBatch(t.Context(), claim(path(0), gone))
	if st.calls["ValidPaths"] != 1 {
		t.Errorf("batch with a root gone: database reads %v, want a ValidPaths to find it", st.calls)
	}
	it, ok, err := q.Get(gone)
	if err != nil || !ok || it.State != queue.Failed || it.LastError == "" {
		t.Errorf("the root that is gone: %+v (ok %v, err %v), want failed with a reason", it, ok, err)
	}
}

func sameCounts(got, want map[string]int) bool {
	keys := func(m map[string]int) []string {
		var k []string
		for n, c := range m {
			if c > 0 {
				k = append(k, fmt.Sprintf("%s=%d", n, c))
			}
		}
		slices.Sort(k)
		return k
	}
	return slices.Equal(keys(got), keys(want))
}

// regStore adds registrations to countingStore.
type regStore struct {
	*countingStore
	regs []store.Registered
}

func (s *regStore) RegisteredSince(_ context.Context, t int64) ([]store.Registered, error) {
	s.count("RegisteredSince")
	var out []store.Registered
	for _, r := range s.regs {
		if r.Time >= t {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *regStore) RegisteredAfter(_ context.Context, seq int64) ([]store.Registered, error) {
	s.count("RegisteredAfter")
	var out []store.Registered
	for _, r := range s.regs {
		if r.Seq > seq {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *regStore) LastSeq(context.Context) (int64, error) {
	if len(s.regs) == 0 {
		return 0, nil
	}
	return s.regs[len(s.regs)-1].Seq, nil
}

// Reconcile reads only the registrations after the last one it saw,
// whatever registration time Nix recorded. A state from an older
// nixpushd, with only a time checkpoint, is reconciled from that time
// once, with the whole scan.
func TestReconcileReadsOnlyNewRegistrations(t *testing.T) {
	path := func(i int) string { return fmt.Sprintf("/nix/store/%032d-reg-%d", i, i) }
	st := &regStore{countingStore: &countingStore{valid: map[string]*store.PathInfo{}, calls: map[string]int{}}}
	register := func(seq, time int64) {
		p := path(int(seq))
		st.valid[p] = &store.PathInfo{Path: p, NarSize: 1, Ultimate: true}
		st.regs = append(st.regs, store.Registered{Path: p, Time: time, Seq: seq})
	}
	for seq, tm := range []int64{990, 995, 1000, 1001, 999} { // 5: registered with an older time
		register(int64(seq+1), tm)
	}
	d, q := newTestDaemon(t, st, nil)
	queued := func() (out []int) {
		for i := 1; i <= 10; i++ {
			if _, ok, _ := q.Get(path(i)); ok {
				out = append(out, i)
			}
		}
		return out
	}
	seqMeta := func() string { v, _, _ := q.Meta(metaSeq); return v }

	q.SetMeta(metaCheckpoint, "1000") // what an older nixpushd left
	if err := d.src.reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := queued(); !slices.Equal(got, []int{3, 4}) || seqMeta() != "5" || st.calls["RegisteredSince"] != 1 {
		t.Fatalf("from a time checkpoint: queued %v, seq %q, reads %v; want [3 4], 5, one scan", got, seqMeta(), st.calls)
	}
	register(6, 500) // e.g. nix-store --register-validity with an old time
	register(7, 1010)
	for range 2 {
		if err := d.src.reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if got := queued(); !slices.Equal(got, []int{3, 4, 6, 7}) || seqMeta() != "7" || st.calls["RegisteredSince"] != 1 || st.calls["RegisteredAfter"] != 2 {
		t.Fatalf("by seq: queued %v, seq %q, reads %v; want [3 4 6 7], 7, no more scans", got, seqMeta(), st.calls)
	}

	// A first start begins after the newest registration.
	d2, q2 := newTestDaemon(t, st, nil)
	if err := d2.src.initCheckpoint(); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := q2.Meta(metaSeq); v != "7" {
		t.Errorf("first start: seq checkpoint %q, want 7", v)
	}
}

// The watcher's candidates cost one database read when all are valid;
// one that is not (a failed build removes its lock too) costs a validity
// query, and is not queued.
func TestPrefilterReadsOnce(t *testing.T) {
	path := func(i int) string { return fmt.Sprintf("/nix/store/%032d-watch-%d", i, i) }
	st := &countingStore{valid: map[string]*store.PathInfo{}, calls: map[string]int{}}
	for i := range 3 {
		st.valid[path(i)] = &store.PathInfo{Path: path(i), NarSize: 1, Ultimate: true}
	}
	d, q := newTestDaemon(t, st, nil)

	if n, err := d.Enqueue(t.Context(), []string{path(0), path(1)}, "watch"); err != nil || n != 2 {
		t.Fatalf("enqueued %d, %v", n, err)
	}
	if want := map[string]int{"PathInfos": 1}; !sameCounts(st.calls, want) {
		t.Errorf("all valid: database reads %v, want %v", st.calls, want)
	}
	clear(st.calls)
	failed := path(7)
	if n, err := d.Enqueue(t.Context(), []string{path(2), failed}, "watch"); err != nil || n != 1 {
		t.Fatalf("enqueued %d, %v; want 1", n, err)
	}
	if st.calls["ValidPaths"] != 1 {
		t.Errorf("with a path not valid: database reads %v, want a ValidPaths", st.calls)
	}
	if _, ok, _ := q.Get(failed); ok {
		t.Error("a watcher candidate that is not valid was queued")
	}
}

// The watcher hands over a build's lock removals after settle; in a
// stream of them (a burst) it gathers for burstSettle, so that the
// stream costs a queue write and a database read per burstSettle.
func TestWatcherGathersLongerInABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := func(i int) string { return fmt.Sprintf("/nix/store/%032d-w-%d", i, i) }
		st := &countingStore{valid: map[string]*store.PathInfo{}, calls: map[string]int{}}
		for i := range 200 {
			st.valid[path(i)] = &store.PathInfo{Path: path(i), NarSize: 1, Ultimate: true}
		}
		d, q := newTestDaemon(t, st, nil)
		events := make(chan fsnotify.Event)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			d.src.watchEvents(ctx, events, make(chan error), make(chan struct{}, 1))
			close(done)
		}()
		remove := func(i int) {
			events <- fsnotify.Event{Name: path(i) + ".lock", Op: fsnotify.Remove}
		}
		flushes := func() int {
			synctest.Wait()
			st.mu.Lock()
			defer st.mu.Unlock()
			return st.calls["PathInfos"]
		}
		remove(0)
		time.Sleep(settle)
		if n := flushes(); n != 1 {
			t.Fatalf("one build: %d flushes after %v, want 1", n, settle)
		}
		// A path every 10 ms for 2 s, starting within burstWindow.
		for i := 1; i <= 200; i++ {
			time.Sleep(10 * time.Millisecond)
			remove(i % 200)
		}
		time.Sleep(burstSettle)
		if n := flushes() - 1; n < 2000/int(burstSettle/time.Millisecond) || n > 2000/int(burstSettle/time.Millisecond)+1 {
			t.Fatalf("a 2 s stream: %d flushes, want one per %v", n, burstSettle)
		}
		if s, err := q.Stats(); err != nil || s.Pending != 200 {
			t.Fatalf("queue %+v %v, want all 200 paths pending", s, err)
		}
		// Quiet for a while: a build is handed over after settle again.
		time.Sleep(2 * burstWindow)
		before := flushes()
		remove(5)
		time.Sleep(settle)
		if n := flushes(); n != before+1 {
			t.Fatalf("after a quiet spell: %d flushes, want %d", n, before+1)
		}
		cancel()
		<-done
	})
}
