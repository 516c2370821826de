package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// The hook's derivations are queued for their build logs, which go to
// log/<drv>; the watcher's are not; a derivation without a log completes
// with nothing uploaded; without --build-logs nothing of this happens.
func TestBuildLogsFromHook(t *testing.T) {
	const (
		logged   = "/nix/store/00000000000000000000000000000001-logged.drv"
		unlogged = "/nix/store/00000000000000000000000000000002-unlogged.drv"
		watched  = "/nix/store/00000000000000000000000000000003-watched.drv"
	)
	logDir := t.TempDir()
	text := []byte("the build said this\n")
	plain, _, err := store.BuildLogFile(logDir, logged)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(plain), 0o755)
	if err := os.WriteFile(plain, text, 0o644); err != nil {
		t.Fatal(err)
	}
	newDaemon := func(t *testing.T, logDir string) (*Daemon, *queue.Queue, string) {
		cacheDir := t.TempDir()
		target, err := file.New(cacheDir)
		if err != nil {
			t.Fatal(err)
		}
		comp, err := compression.New(compression.Options{Method: "none", Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		st := &countingStore{valid: map[string]*store.PathInfo{}, calls: map[string]int{}}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		d, q := newTestDaemon(t, st, &upload.Pusher{Target: target, Compressor: comp, Retry: retry.Policy{Attempts: 1}, Log: log, BuildLogDir: logDir})
		return d, q, cacheDir
	}

	t.Run("on", func(t *testing.T) {
		d, q, cacheDir := newDaemon(t, logDir)
		if _, err := d.Enqueue(t.Context(), []string{logged, unlogged}, "socket"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Enqueue(t.Context(), []string{watched}, "watch"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := q.Get(watched); ok {
			t.Error("a derivation from the watcher was queued for its log")
		}
		items, err := q.Claim(time.Now(), 10)
		if err != nil || len(items) != 2 {
			t.Fatalf("claimed %d items (%v), want the hook's 2 derivations", len(items), err)
		}
		d.processBatch(t.Context(), items)
		got, err := os.ReadFile(filepath.Join(cacheDir, upload.BuildLogKey(logged)))
		if err != nil || !bytes.Equal(got, text) {
			t.Errorf("log/<drv>: %q, %v; want %q", got, err, text)
		}
		if _, err := os.Stat(filepath.Join(cacheDir, upload.BuildLogKey(unlogged))); err == nil {
			t.Error("a log was written for a derivation Nix kept none of")
		}
		for _, p := range []string{logged, unlogged} {
			if it, ok, err := q.Get(p); err != nil || !ok || it.State != queue.Done {
				t.Errorf("%s: %+v (ok %v, err %v), want done", p, it, ok, err)
			}
		}
		if narinfos, _ := filepath.Glob(filepath.Join(cacheDir, "*.narinfo")); len(narinfos) != 0 {
			t.Errorf("derivations pushed without --push-derivations: %v", narinfos)
		}
		st, err := d.Snapshot()
		if err != nil || st.BuildLogs != 1 {
			t.Errorf("status build_logs_since_start = %d (%v), want 1", st.BuildLogs, err)
		}
	})
	t.Run("off", func(t *testing.T) {
		d, q, _ := newDaemon(t, "")
		if _, err := d.Enqueue(t.Context(), []string{logged}, "socket"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := q.Get(logged); ok {
			t.Error("without --build-logs a derivation was queued")
		}
	})
}
