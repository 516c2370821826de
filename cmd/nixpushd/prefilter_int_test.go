package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// The store watcher pushes what was built or added here, and drops before
// the queue what was copied in from another (signed) cache.
func TestDaemonSkipsCopiedIn(t *testing.T) {
	testenv.RequireNix(t)
	secret, public := testenv.GenerateKey(t, t.TempDir(), "other-1")
	// A path "from another cache": built, pushed signed into a file://
	// cache, deleted locally, then copied back in (ultimate unset, signed).
	other := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	elsewhere := t.TempDir()
	if out, err := nixpushd(t, nil, "push", "--to", "file://"+elsewhere, "--secret-key-file", secret, other.Top); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if out, err := testenv.RunNix(t, "nix-store", "--delete", other.Top); err != nil {
		t.Fatalf("cannot delete the test path to copy it back in: %v\n%s", err, out)
	}

	cacheDir := t.TempDir()
	state := t.TempDir()
	d := startDaemonProc(t, nil, state, "--to", "file://"+cacheDir, "--watch-store", "--reconcile-interval", "1h", "--log-level", "debug")
	if out, err := testenv.RunNix(t, "nix", "copy", "--from", "file://"+elsewhere, "--option", "trusted-public-keys", public, other.Top); err != nil {
		t.Fatalf("nix copy --from: %v\n%s", err, out)
	}
	// And one added here: pushed.
	file := filepath.Join(t.TempDir(), "added-here")
	os.WriteFile(file, []byte(time.Now().String()), 0o644)
	added := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", file)))
	waitFor(t, 60*time.Second, "the locally added path in the cache", func() bool {
		_, err := os.Stat(filepath.Join(cacheDir, narinfoKey(t, added)))
		return err == nil
	})
	waitFor(t, 30*time.Second, "the copied-in path to be skipped", func() bool {
		return strings.Contains(d.out.String(), "STORE_PATH="+other.Top+" reason=not-built-here")
	})
	if _, err := os.Stat(filepath.Join(cacheDir, narinfoKey(t, other.Top))); err == nil {
		t.Errorf("the daemon pushed %s, which was copied in from another cache", other.Top)
	}
	d.stop()
}
