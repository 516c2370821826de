package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/metrics"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// syncBuffer is a log destination the Pusher's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A batch with NAR listings, debug-info links and realisations on counts
// what it wrote in status, in the metrics and on its journal line: one
// listing per path uploaded, the formats path's one debug-info link, the
// realisations of a content-addressed build.
func TestBatchCountsFilesWritten(t *testing.T) {
	testenv.RequireNix(t)
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + t.Name()
	formats, _ := testenv.BuildFormatsPath(t, nonce)
	caExpr := fmt.Sprintf(`let mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" script]; seed = %q; PATH = "/usr/bin:/bin"; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; };
  dep = mk "ca-dep" "echo dep > $out";
in mk "ca-top" "mkdir $out; echo ${dep} > $out/ref"
`, nonce)
	caTop := testenv.BuildExpr(t, caExpr, "--option", "extra-experimental-features", "ca-derivations")[0]

	st, err := store.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cacheDir := t.TempDir()
	target, err := file.New(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := compression.New(compression.Options{Method: "none", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	var journal syncBuffer
	log := slog.New(slog.NewTextHandler(&journal, nil))
	p := &upload.Pusher{Target: target, Compressor: comp, Retry: retry.Policy{Attempts: 1}, Log: log,
		NarListings: true, DebugInfo: true, Realisations: true}
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	d := New(&Config{StoreDir: "/nix/store", MaxActive: 8, MaxRetryDelay: time.Minute}, q, st, p, log)
	m := metrics.New(metrics.Options{})
	d.SetMetrics(m)

	if _, err := q.Enqueue([]string{formats, caTop}, "socket", time.Now()); err != nil {
		t.Fatal(err)
	}
	items, err := q.Claim(time.Now(), 10)
	if err != nil || len(items) != 2 {
		t.Fatalf("claimed %d items (%v), want 2", len(items), err)
	}
	d.processBatch(t.Context(), items)

	s, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := filepath.Glob(filepath.Join(cacheDir, "*.ls"))
	if s.Uploaded < 3 || s.NarListings != s.Uploaded || s.NarListings != len(ls) {
		t.Errorf("status: %d uploaded, %d NAR listings; the cache has %d .ls; want a listing per path uploaded (at least 3)", s.Uploaded, s.NarListings, len(ls))
	}
	// Every realisation of the closure's outputs, from earlier builds too
	// (ca-dep's output is the same for every seed): at least ca-top's and
	// ca-dep's.
	doi, _ := filepath.Glob(filepath.Join(cacheDir, "realisations", "*.doi"))
	if s.DebugInfoLinks != 1 || s.Realisations < 2 || s.Realisations != len(doi) {
		t.Errorf("status: %d debug-info links, %d realisations; the cache has %d .doi; want 1 link and every realisation (at least 2)", s.DebugInfoLinks, s.Realisations, len(doi))
	}

	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if len(f.GetMetric()) == 1 && f.GetMetric()[0].GetCounter() != nil {
			got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"nixpushd_nar_listings_written_total":     float64(s.NarListings),
		"nixpushd_debug_info_links_written_total": 1,
		"nixpushd_realisations_written_total":     float64(s.Realisations),
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}

	for _, root := range []string{formats, caTop} {
		var line string
		for l := range strings.Lines(journal.String()) {
			if strings.Contains(l, "msg=pushed ") && strings.Contains(l, "STORE_PATH="+root+" ") {
				line = l
			}
		}
		want := fmt.Sprintf("batch_nar_listings=%d batch_debug_info_links=1 batch_realisations=%d ", s.NarListings, s.Realisations)
		if !strings.Contains(line, want) {
			t.Errorf("journal line for %s: %q, want it to hold %q", root, line, want)
		}
	}

	// A later batch over the same, cached closure uploads nothing, so it
	// neither looks up nor writes realisations again.
	if _, err := q.Enqueue([]string{caTop}, "socket", time.Now()); err != nil {
		t.Fatal(err)
	}
	if items, err = q.Claim(time.Now(), 10); err != nil || len(items) != 1 {
		t.Fatalf("claimed %d items (%v), want 1", len(items), err)
	}
	os.Remove(doi[0])
	d.processBatch(t.Context(), items)
	if again, err := d.Snapshot(); err != nil || again.Realisations != s.Realisations || again.Uploaded != s.Uploaded {
		t.Errorf("second batch: %+v, %v; want nothing more uploaded or written", again, err)
	}
	if _, err := os.Stat(doi[0]); err == nil {
		t.Errorf("%s written again by a batch that uploaded nothing", doi[0])
	}
}
