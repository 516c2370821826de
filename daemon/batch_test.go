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
	"time"

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

// A batch of valid, wanted roots costs one closure query and no other
// database read; a batch with a root gone falls back to sorting them out.
func TestBatchReadsTheDatabaseOnce(t *testing.T) {
	path := func(i int) string { return fmt.Sprintf("/nix/store/%032d-batch-%d", i, i) }
	st := &countingStore{valid: map[string]*store.PathInfo{}, calls: map[string]int{}}
	for i := range 3 {
		st.valid[path(i)] = &store.PathInfo{Path: path(i), NarSize: 1, Ultimate: true}
	}
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	target, err := upload.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	comp, err := upload.NewCompressor("none", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := &upload.Pusher{Target: target, Compressor: comp, Retry: upload.RetryPolicy{Attempts: 1}, Log: log}
	cfg := &Config{StoreDir: "/nix/store", MaxActive: 8, MaxRetryDelay: time.Minute}
	d := New(cfg, q, st, p, log)

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
