package hook

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// spoolCollector is an enqueue function that records what it got.
type spoolCollector struct {
	mu    sync.Mutex
	got   [][]string
	err   error
	calls int
}

func (c *spoolCollector) enqueue(_ context.Context, paths []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.err != nil {
		return c.err
	}
	c.got = append(c.got, slices.Clone(paths))
	return nil
}

func (c *spoolCollector) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, g := range c.got {
		out = append(out, g...)
	}
	return out
}

func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSpoolRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool", "sub") // created by WriteSpool
	first := []string{testPath(1, "a"), testPath(2, "b.drv")}
	second := []string{testPath(3, "c")}
	f1, err := WriteSpool(dir, first)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := WriteSpool(dir, second)
	if err != nil {
		t.Fatal(err)
	}
	if f1 == f2 || filepath.Dir(f1) != dir || !strings.HasSuffix(f1, ".paths") {
		t.Errorf("files %q %q", f1, f2)
	}
	b, err := os.ReadFile(f1)
	if err != nil || string(b) != first[0]+"\n"+first[1]+"\n" {
		t.Errorf("content %q, %v", b, err)
	}
	if st, err := os.Stat(f1); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v", st.Mode(), err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755&^spoolUmask() {
		t.Errorf("dir mode %v, %v", st.Mode(), err)
	}
	if name, err := WriteSpool(dir, nil); name != "" || err != nil {
		t.Errorf("empty write: %q, %v", name, err)
	}
	if _, err := WriteSpool(dir, []string{testPath(4, "ok"), "/tmp/x"}); err == nil {
		t.Error("invalid path spooled")
	}

	var c spoolCollector
	n, err := DrainSpool(context.Background(), dir, c.enqueue, testLog(t))
	if err != nil || n != 3 {
		t.Fatalf("DrainSpool = %d, %v", n, err)
	}
	// Oldest file first.
	if got := c.all(); !slices.Equal(got, append(slices.Clone(first), second...)) {
		t.Errorf("drained %q", got)
	}
	if left := spoolFiles(t, dir); len(left) != 0 {
		t.Errorf("left behind: %q", left)
	}
	// Draining again finds nothing.
	if n, err := DrainSpool(context.Background(), dir, c.enqueue, nil); n != 0 || err != nil {
		t.Errorf("second drain: %d, %v", n, err)
	}
}

func spoolUmask() os.FileMode {
	dir, err := os.MkdirTemp("", "umask")
	if err != nil {
		return 0
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "d")
	if err := os.Mkdir(p, 0o777); err != nil {
		return 0
	}
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return 0o777 &^ st.Mode().Perm()
}

func TestDrainSpoolMissingDir(t *testing.T) {
	var c spoolCollector
	n, err := DrainSpool(context.Background(), filepath.Join(t.TempDir(), "nope"), c.enqueue, nil)
	if n != 0 || err != nil || c.calls != 0 {
		t.Errorf("%d, %v, %d calls", n, err, c.calls)
	}
}

func TestDrainSpoolCorruptLines(t *testing.T) {
	dir := t.TempDir()
	p1, p2, p3 := testPath(1, "a"), testPath(2, "b"), testPath(3, "c")
	content := strings.Join([]string{
		p1,
		"/nix/store/../etc/passwd",
		"",
		"garbage \x00\xff",
		p2 + "\r", // CRLF file
		"/nix/store/" + testHash + "-x/bin/sh",
		strings.Repeat("q", 10000), // overlong
		p1,                         // duplicate
		"  " + p3,                  // no final newline
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000001-1-aa.paths"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file with nothing valid is removed too.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000002-1-aa.paths"), []byte("junk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Other files and directories are not ours.
	os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "dir.paths"), 0o755)

	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	var c spoolCollector
	n, err := DrainSpool(context.Background(), dir, c.enqueue, log)
	if err != nil || n != 3 {
		t.Fatalf("DrainSpool = %d, %v", n, err)
	}
	if got := c.all(); !slices.Equal(got, []string{p1, p2, p3}) {
		t.Errorf("drained %q", got)
	}
	logs := logBuf.String()
	for _, want := range []string{"line=2 ", "line=4 ", "line=6 ", "line=7 ", "00000000000000000001-1-aa.paths", "line=1 "} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if left := spoolFiles(t, dir); !slices.Equal(left, []string{"README", "dir.paths"}) {
		t.Errorf("left %q", left)
	}
}

func TestDrainSpoolEnqueueFailure(t *testing.T) {
	dir := t.TempDir()
	f1, err := WriteSpool(dir, []string{testPath(1, "a")})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond) // distinct, ordered names
	f2, err := WriteSpool(dir, []string{testPath(2, "b")})
	if err != nil {
		t.Fatal(err)
	}
	c := spoolCollector{err: errors.New("queue is closed")}
	n, err := DrainSpool(context.Background(), dir, c.enqueue, nil)
	if n != 0 || err == nil || !strings.Contains(err.Error(), "queue is closed") {
		t.Errorf("DrainSpool = %d, %v", n, err)
	}
	if c.calls != 1 {
		t.Errorf("enqueue called %d times; DrainSpool should stop at the first failure", c.calls)
	}
	for _, f := range []string{f1, f2} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// It recovers.
	c.err = nil
	if n, err := DrainSpool(context.Background(), dir, c.enqueue, nil); n != 2 || err != nil {
		t.Errorf("retry: %d, %v", n, err)
	}
}

func TestDrainSpoolCanceled(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteSpool(dir, []string{testPath(1, "a")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var c spoolCollector
	if n, err := DrainSpool(ctx, dir, c.enqueue, nil); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("%d, %v", n, err)
	}
	if len(spoolFiles(t, dir)) != 1 {
		t.Error("file removed")
	}
}

func TestDrainSpoolTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".tmp-111")
	fresh := filepath.Join(dir, ".tmp-222")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte(testPath(1, "a")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	var c spoolCollector
	n, err := DrainSpool(context.Background(), dir, c.enqueue, testLog(t))
	if n != 0 || err != nil || c.calls != 0 {
		t.Errorf("%d, %v, %d calls", n, err, c.calls)
	}
	if left := spoolFiles(t, dir); !slices.Equal(left, []string{".tmp-222"}) {
		t.Errorf("left %q", left)
	}
}

func TestDrainSpoolBigFile(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i := range 2*spoolBatch + 10 {
		paths = append(paths, testPath(i, "p"))
	}
	if _, err := WriteSpool(dir, paths); err != nil {
		t.Fatal(err)
	}
	var c spoolCollector
	n, err := DrainSpool(context.Background(), dir, c.enqueue, nil)
	if err != nil || n != len(paths) || !slices.Equal(c.all(), paths) {
		t.Errorf("%d, %v; got %d paths", n, err, len(c.all()))
	}
	for _, b := range c.got {
		if len(b) > spoolBatch {
			t.Errorf("batch of %d", len(b))
		}
	}
}

func TestWriteSpoolConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	const writers = 32
	var wg sync.WaitGroup
	names := make([]string, writers)
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			names[i], errs[i] = WriteSpool(dir, []string{testPath(i, "w")})
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if seen[names[i]] {
			t.Errorf("two writers got %s", names[i])
		}
		seen[names[i]] = true
	}
	if got := len(spoolFiles(t, dir)); got != writers {
		t.Errorf("%d files, want %d", got, writers)
	}
	var c spoolCollector
	if n, err := DrainSpool(context.Background(), dir, c.enqueue, nil); n != writers || err != nil {
		t.Errorf("drain: %d, %v", n, err)
	}
	got := c.all()
	slices.Sort(got)
	var want []string
	for i := range writers {
		want = append(want, testPath(i, "w"))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("drained %q", got)
	}
}

func TestSpoolNamesSortByTime(t *testing.T) {
	a, err := spoolName()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	b, _ := spoolName()
	if a >= b || len(strings.SplitN(a, "-", 2)[0]) != 20 {
		t.Errorf("%q !< %q", a, b)
	}
}
