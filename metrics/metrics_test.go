package metrics

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/upload"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

func TestObserveCountsEveryEventOnce(t *testing.T) {
	events := []upload.Event{
		{Kind: upload.EventUploaded, NarSize: 1000, FileSize: 400, Duration: 20 * time.Millisecond},
		{Kind: upload.EventPresent, NarSize: 5000},
		{Kind: upload.EventUploaded, NarSize: 3 << 30, FileSize: 1 << 30, Duration: 15 * time.Minute},
		{Kind: upload.EventFailed, Duration: time.Second, Err: errors.New("boom")},
		{Kind: upload.EventPresent},
		// The NAR file was already there (an upload interrupted after
		// it): nothing stored this time.
		{Kind: upload.EventUploaded, NarSize: 200, FileSize: 0, Duration: 3 * time.Millisecond},
		{Kind: upload.EventFailed},
	}
	m := New(Options{Now: fixedNow})
	for _, e := range events {
		m.Observe(e)
	}
	s := scrape(t, m)
	uploaded := s.value(t, "nixpushd_paths_uploaded_total")
	cached := s.value(t, "nixpushd_paths_skipped_total", "reason=already_cached")
	failed := s.value(t, "nixpushd_paths_failed_total")
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"uploaded", uploaded, 3},
		{"already_cached", cached, 2},
		{"failed", failed, 2},
		{"uploaded + already_cached + failed", uploaded + cached + failed, float64(len(events))},
		{"NAR bytes", s.value(t, "nixpushd_nar_bytes_total"), 1000 + 3<<30 + 200},
		{"stored bytes", s.value(t, "nixpushd_stored_bytes_total"), 400 + 1<<30},
		{"last success", s.value(t, "nixpushd_last_upload_success_timestamp_seconds"), float64(t0.Unix())},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	h := s.histogram(t, "nixpushd_upload_duration_seconds")
	if h.GetSampleCount() != 3 {
		t.Errorf("duration samples %d, want 3 (uploads only)", h.GetSampleCount())
	}
	if want := 0.02 + 900 + 0.003; math.Abs(h.GetSampleSum()-want) > 1e-9 {
		t.Errorf("duration sum %v, want %v", h.GetSampleSum(), want)
	}
	// Bucket counts are cumulative: 2 uploads ≤ 25ms, the 15-minute one
	// only in the 1200s bucket and above.
	for _, b := range h.Bucket {
		want := uint64(0)
		switch ub := b.GetUpperBound(); {
		case ub >= 1200:
			want = 3
		case ub >= 0.025:
			want = 2
		case ub >= 0.01:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

func TestSkipReasons(t *testing.T) {
	m := New(Options{})
	s := scrape(t, m)
	for _, r := range knownReasons {
		if v := s.value(t, "nixpushd_paths_skipped_total", "reason="+r); v != 0 {
			t.Errorf("reason %s starts at %v", r, v)
		}
	}
	for _, c := range []struct{ in, label string }{
		{"signed-by-upstream", "signed_by_upstream"},
		{"not-built-here", "not_built_here"},
		{"derivation", "derivation"},
		{"excluded", "excluded"},
		{"not-included", "not_included"},
		{"Some Reason", "some_reason"},
		{"", "unknown"},
	} {
		before := scrape(t, m)
		old, _ := before.lookup("nixpushd_paths_skipped_total", "reason="+c.label)
		m.Skip(c.in)
		if got := scrape(t, m).value(t, "nixpushd_paths_skipped_total", "reason="+c.label); got != old+1 {
			t.Errorf("Skip(%q): reason %s = %v, want %v", c.in, c.label, got, old+1)
		}
	}
}

func TestRetriesCounted(t *testing.T) {
	m := New(Options{})
	var asked []int
	policy := retry.Policy{Attempts: 4, Delay: m.CountRetries(func(n int) time.Duration {
		asked = append(asked, n)
		return 0
	})}
	tries := 0
	err := policy.Do(context.Background(), func() error {
		if tries++; tries < 3 {
			return errors.New("transient")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("Do: %v after %d tries", err, tries)
	}
	if len(asked) != 2 || asked[0] != 1 || asked[1] != 2 {
		t.Errorf("wrapped delay called with %v, want [1 2]", asked)
	}
	// A nil delay stays "no wait", and still counts.
	if d := m.CountRetries(nil)(1); d != 0 {
		t.Errorf("nil delay wrapped gives %v", d)
	}
	m.Retry()
	m.QueueRetry()
	s := scrape(t, m)
	if got := s.value(t, "nixpushd_request_retries_total"); got != 4 {
		t.Errorf("request retries %v, want 4", got)
	}
	if got := s.value(t, "nixpushd_queue_retries_total"); got != 1 {
		t.Errorf("queue retries %v, want 1", got)
	}
}

func TestNilMetricsDoNothing(t *testing.T) {
	var m *Metrics
	m.Observe(upload.Event{Kind: upload.EventUploaded})
	m.Skip("derivation")
	m.Retry()
	m.QueueRetry()
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	calls := 0
	d := m.CountRetries(func(int) time.Duration { calls++; return time.Second })
	if d(1) != time.Second || calls != 1 {
		t.Error("nil Metrics changed the delay")
	}
	if m.CountRetries(nil) != nil {
		t.Error("nil Metrics made a nil delay non-nil")
	}
}

func TestScrapeTimeSources(t *testing.T) {
	depth := map[string]int{"pending": 3, "inflight": 1, "done": 10, "failed": 0}
	oldest, haveOldest := t0.Add(-90*time.Second), true
	stats := upload.PresenceStats{Checks: 10, Hits: 6, Shared: 1, Requests: 4, Listings: 1}
	degraded := false
	m := New(Options{
		Version:       "1.2.3",
		Now:           fixedNow,
		Queue:         func() (map[string]int, error) { return depth, nil },
		OldestPending: func() (time.Time, bool, error) { return oldest, haveOldest, nil },
		Presence:      func() upload.PresenceStats { return stats },
		Degraded:      func() bool { return degraded },
	})
	check := func(want map[string]float64) {
		t.Helper()
		s := scrape(t, m)
		for k, v := range want {
			name, label, _ := cutLabel(k)
			var got float64
			if label != "" {
				got = s.value(t, name, label)
			} else {
				got = s.value(t, name)
			}
			if got != v {
				t.Errorf("%s = %v, want %v", k, got, v)
			}
		}
	}
	check(map[string]float64{
		"nixpushd_up": 1, "nixpushd_degraded": 0,
		"nixpushd_build_info{version=1.2.3}":             1,
		"nixpushd_queue_items{state=pending}":            3,
		"nixpushd_queue_items{state=inflight}":           1,
		"nixpushd_queue_items{state=done}":               10,
		"nixpushd_queue_items{state=failed}":             0,
		"nixpushd_queue_oldest_pending_age_seconds":      90,
		"nixpushd_existence_checks_total":                10,
		"nixpushd_existence_check_cache_hits_total":      6,
		"nixpushd_existence_check_shared_total":          1,
		"nixpushd_existence_requests_total":              4,
		"nixpushd_cache_listings_total":                  1,
		"nixpushd_last_upload_success_timestamp_seconds": 0,
	})
	// Read again at the next scrape.
	depth = map[string]int{"pending": 0, "inflight": 0, "done": 14, "failed": 1}
	haveOldest = false
	stats.Checks, stats.Hits = 20, 15
	degraded = true
	check(map[string]float64{
		"nixpushd_degraded":                         1,
		"nixpushd_queue_items{state=pending}":       0,
		"nixpushd_queue_items{state=failed}":        1,
		"nixpushd_queue_oldest_pending_age_seconds": 0,
		"nixpushd_existence_checks_total":           20,
		"nixpushd_existence_check_cache_hits_total": 15,
	})
}

// cutLabel splits `name{k=v}`.
func cutLabel(s string) (name, label string, ok bool) {
	for i := range len(s) {
		if s[i] == '{' && s[len(s)-1] == '}' {
			return s[:i], s[i+1 : len(s)-1], true
		}
	}
	return s, "", false
}

func TestUnsetSourcesAreLeftOut(t *testing.T) {
	s := scrape(t, New(Options{}))
	for _, name := range []string{"nixpushd_degraded", "nixpushd_queue_items", "nixpushd_queue_oldest_pending_age_seconds", "nixpushd_existence_checks_total", "nixpushd_gc_last_run_timestamp_seconds"} {
		if s.has(name) {
			t.Errorf("%s exported without its source", name)
		}
	}
	if !s.has("nixpushd_up") || !s.has("go_goroutines") || !s.has("nixpushd_build_info", "version=unknown") {
		t.Error("always-present metrics missing")
	}
}

// A source that fails leaves out its metrics and is counted; the rest of
// the scrape is served.
func TestFailingSourceKeepsTheRest(t *testing.T) {
	m := New(Options{
		Queue:    func() (map[string]int, error) { return nil, errors.New("database is locked") },
		Presence: func() upload.PresenceStats { return upload.PresenceStats{Checks: 7} },
	})
	m.Observe(upload.Event{Kind: upload.EventUploaded})
	s := scrape(t, m)
	if s.has("nixpushd_queue_items") {
		t.Error("queue metrics exported although the queue could not be read")
	}
	if s.value(t, "nixpushd_paths_uploaded_total") != 1 || s.value(t, "nixpushd_existence_checks_total") != 7 {
		t.Error("other metrics missing from a partly failed scrape")
	}
	// promhttp counts the error on the next scrape.
	if got := scrape(t, m).value(t, "promhttp_metric_handler_errors_total", "cause=gathering"); got < 1 {
		t.Errorf("handler errors %v, want ≥ 1", got)
	}
}

func TestQueueSources(t *testing.T) {
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	depth, oldest := QueueDepth(q), OldestPending(q)
	if _, ok, err := oldest(); ok || err != nil {
		t.Fatalf("empty queue: oldest %v %v", ok, err)
	}
	p := func(n string) string { return "/nix/store/" + n + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x" }
	if _, err := q.Enqueue([]string{p("a")}, "test", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue([]string{p("b"), p("c"), p("d")}, "test", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// a (the oldest) goes in flight: it is still not uploaded.
	if items, err := q.Claim(t0.Add(time.Minute), 1); err != nil || len(items) != 1 || items[0].Path != p("a") {
		t.Fatalf("claim: %v %v", items, err)
	}
	if err := q.Fail(p("b"), "corrupt", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := depth()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"pending": 2, "inflight": 1, "done": 0, "failed": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("depth[%s] = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	at, ok, err := oldest()
	if err != nil || !ok || !at.Equal(t0) {
		t.Errorf("oldest = %v %v %v, want %v (the item in flight)", at, ok, err, t0)
	}
	if err := q.Complete(p("a"), t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if at, ok, err := oldest(); err != nil || !ok || !at.Equal(t0.Add(time.Minute)) {
		t.Errorf("after a is done: oldest = %v %v %v, want %v", at, ok, err, t0.Add(time.Minute))
	}
}

// The files besides narinfos and NARs count what the daemon reports, zero
// and negative counts included (they add nothing), and nil Metrics (off)
// take every call.
func TestSidecarCounters(t *testing.T) {
	m := New(Options{Now: fixedNow})
	for _, n := range []int{2, 0, -1, 3} {
		m.BuildLogs(n)
		m.NarListings(n + 1)
		m.DebugInfoLinks(n * 2)
		m.Realisations(n)
	}
	s := scrape(t, m)
	for name, want := range map[string]float64{
		"nixpushd_build_logs_uploaded_total":      5,
		"nixpushd_nar_listings_written_total":     3 + 1 + 4,
		"nixpushd_debug_info_links_written_total": 4 + 6,
		"nixpushd_realisations_written_total":     5,
	} {
		if got := s.value(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	var off *Metrics
	off.BuildLogs(1)
	off.NarListings(1)
	off.DebugInfoLinks(1)
	off.Realisations(1)
}
