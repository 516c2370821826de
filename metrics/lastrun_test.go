package metrics

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/lifecycle"
)

func TestLastRunRoundTripAndLastSuccess(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := ReadLastRun(dir, "gc"); ok || err != nil {
		t.Fatalf("never ran: %v %v", ok, err)
	}
	ok1 := GCRun(t0, t0.Add(42*time.Second), &lifecycle.GCResult{DeletedNarInfos: 3, DeletedNARs: 3, DeletedOther: 1, BytesFreed: 9000}, nil)
	if err := WriteLastRun(dir, "gc", ok1); err != nil {
		t.Fatal(err)
	}
	r, ok, err := ReadLastRun(dir, "gc")
	if err != nil || !ok {
		t.Fatalf("read: %v %v", ok, err)
	}
	if !r.Success || r.DeletedObjects != 7 || r.FreedBytes != 9000 || !r.End.Equal(t0.Add(42*time.Second)) || !r.LastSuccess.Equal(r.End) {
		t.Errorf("read back %+v", r)
	}
	st, err := os.Stat(LastRunPath(dir, "gc"))
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v %v, want 0644 (the daemon may be another user)", st.Mode(), err)
	}

	// A failed run replaces the result but keeps when gc last succeeded.
	failStart := t0.Add(24 * time.Hour)
	bad := GCRun(failStart, failStart.Add(time.Second), &lifecycle.GCResult{DeletedNARs: 2}, errors.New("Access Denied"))
	if err := WriteLastRun(dir, "gc", bad); err != nil {
		t.Fatal(err)
	}
	r, _, _ = ReadLastRun(dir, "gc")
	if r.Success || r.Error != "Access Denied" || r.DeletedObjects != 2 || !r.LastSuccess.Equal(t0.Add(42*time.Second)) {
		t.Errorf("after a failure: %+v", r)
	}
	// No temporary files left behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("state dir holds %d entries, want 1", len(ents))
	}
}

func TestLastRunRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "../gc", "gc/x", "GC", strings.Repeat("a", 40)} {
		if err := WriteLastRun(t.TempDir(), name, RunResult{}); err == nil {
			t.Errorf("WriteLastRun(%q) accepted", name)
		}
	}
}

func TestVerifyRun(t *testing.T) {
	for _, c := range []struct {
		name    string
		res     *lifecycle.VerifyResult
		err     error
		success bool
	}{
		{"clean", &lifecycle.VerifyResult{NarInfos: 10}, nil, true},
		{"problems are a result, not a failure", &lifecycle.VerifyResult{NarInfos: 10, Problems: 2}, nil, true},
		{"interrupted", nil, errors.New("connection refused"), false},
	} {
		r := VerifyRun(t0, t0.Add(time.Minute), c.res, c.err)
		if r.Success != c.success {
			t.Errorf("%s: success %v", c.name, r.Success)
		}
		if c.res != nil && (r.Problems != c.res.Problems || r.NarInfos != c.res.NarInfos) {
			t.Errorf("%s: %+v", c.name, r)
		}
	}
}

func TestLastRunMetrics(t *testing.T) {
	dir := t.TempDir()
	m := New(Options{StateDir: dir})
	if s := scrape(t, m); s.has("nixpushd_gc_last_run_timestamp_seconds") || s.has("nixpushd_verify_last_run_timestamp_seconds") {
		t.Fatal("gc/verify metrics before any run")
	}
	gcEnd := t0.Add(30 * time.Second)
	if err := WriteLastRun(dir, "gc", GCRun(t0, gcEnd, &lifecycle.GCResult{DeletedNarInfos: 1, DeletedNARs: 1, BytesFreed: 4096}, nil)); err != nil {
		t.Fatal(err)
	}
	vStart := t0.Add(time.Hour)
	if err := WriteLastRun(dir, "verify", VerifyRun(vStart, vStart.Add(2*time.Minute), &lifecycle.VerifyResult{NarInfos: 50, Problems: 3}, errors.New("interrupted"))); err != nil {
		t.Fatal(err)
	}
	s := scrape(t, m)
	for name, want := range map[string]float64{
		"nixpushd_gc_last_run_timestamp_seconds":     float64(gcEnd.Unix()),
		"nixpushd_gc_last_run_success":               1,
		"nixpushd_gc_last_success_timestamp_seconds": float64(gcEnd.Unix()),
		"nixpushd_gc_last_run_duration_seconds":      30,
		"nixpushd_gc_last_run_deleted_objects":       2,
		"nixpushd_gc_last_run_freed_bytes":           4096,
		"nixpushd_verify_last_run_timestamp_seconds": float64(vStart.Add(2 * time.Minute).Unix()),
		"nixpushd_verify_last_run_success":           0,
		"nixpushd_verify_last_run_duration_seconds":  120,
		"nixpushd_verify_last_run_problems":          3,
		"nixpushd_verify_last_run_narinfos":          50,
	} {
		if got := s.value(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if s.has("nixpushd_verify_last_success_timestamp_seconds") {
		t.Error("verify never succeeded, yet has a last success time")
	}

	// A corrupt file fails its own metrics only.
	if err := os.WriteFile(filepath.Join(dir, "last-verify.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = scrape(t, m)
	if s.has("nixpushd_verify_last_run_problems") || !s.has("nixpushd_gc_last_run_success") || !s.has("nixpushd_up") {
		t.Error("a corrupt verify file should leave out the verify metrics only")
	}
	if _, _, err := ReadLastRun(dir, "verify"); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("corrupt file: %v", err)
	}
}
