package metrics

import (
	"context"
	"testing"

	"github.com/nixpushd/nixpushd/cache/cacheurl"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// With a real Pusher on real store paths, the metrics agree with what
// the pushes report: every path of every closure counts once, as
// uploaded, already cached or failed, and the byte counts match.
func TestMetricsAgreeWithRealPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: builds store paths with Nix")
	}
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	ctx := context.Background()
	st, err := store.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	target, err := cacheurl.Open(ctx, "file://"+t.TempDir(), cacheurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	comp, err := compression.New(compression.Options{Method: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	p := &upload.Pusher{Target: target, Compressor: comp, TempDir: t.TempDir(), Retry: retry.Policy{Attempts: 2}}
	m := New(Options{Presence: p.PresenceStats})
	p.OnEvent = m.Observe
	p.Retry.Delay = m.CountRetries(p.Retry.Delay)

	var uploaded, present, failed, paths int
	var narBytes, fileBytes int64
	// The leaf alone, then its closure (leaf already there), then the
	// closure again (all there).
	for _, roots := range [][]string{{cl.Leaf}, {cl.Top}, {cl.Top}} {
		closure, err := st.Closure(ctx, roots)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Push(ctx, closure)
		if err != nil {
			t.Fatal(err)
		}
		paths += len(closure)
		uploaded += res.Uploaded
		present += res.Present
		failed += len(res.Failed)
		narBytes += res.NarBytes
		fileBytes += res.FileBytes
	}
	if uploaded != 3 || present != 4 || failed != 0 {
		t.Fatalf("pushes report uploaded=%d already_cached=%d failed=%d, want 3, 4, 0", uploaded, present, failed)
	}
	s := scrape(t, m)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"uploaded", s.value(t, "nixpushd_paths_uploaded_total"), float64(uploaded)},
		{"already_cached", s.value(t, "nixpushd_paths_skipped_total", "reason=already_cached"), float64(present)},
		{"failed", s.value(t, "nixpushd_paths_failed_total"), 0},
		{"all paths", s.value(t, "nixpushd_paths_uploaded_total") + s.value(t, "nixpushd_paths_skipped_total", "reason=already_cached") + s.value(t, "nixpushd_paths_failed_total"), float64(paths)},
		{"NAR bytes", s.value(t, "nixpushd_nar_bytes_total"), float64(narBytes)},
		{"stored bytes", s.value(t, "nixpushd_stored_bytes_total"), float64(fileBytes)},
		{"durations", float64(s.histogram(t, "nixpushd_upload_duration_seconds").GetSampleCount()), float64(uploaded)},
		{"retries", s.value(t, "nixpushd_request_retries_total"), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: metric %v, pushes say %v", c.name, c.got, c.want)
		}
	}
	if s.value(t, "nixpushd_existence_checks_total") < float64(paths) || s.value(t, "nixpushd_existence_requests_total") < 1 {
		t.Errorf("existence checks %v (requests %v) for %d paths pushed", s.value(t, "nixpushd_existence_checks_total"), s.value(t, "nixpushd_existence_requests_total"), paths)
	}
	if narBytes <= 0 || fileBytes <= 0 {
		t.Errorf("nothing measured: NAR %d, stored %d bytes", narBytes, fileBytes)
	}
}
