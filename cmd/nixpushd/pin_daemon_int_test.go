package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// The daemon's --pin follows a link as it changes (like
// /run/current-system after a switch), pushing the closure first; an
// aggressive gc keeps exactly the pinned closure, and Nix substitutes it.
func TestDaemonPinFollowsLink(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "")
	secret, public := testenv.GenerateKey(t, t.TempDir(), "pin-1")
	first := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	second := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	link := filepath.Join(t.TempDir(), "current-system")
	if err := os.Symlink(first.Top, link); err != nil {
		t.Fatal(err)
	}
	d := startDaemonProc(t, writerEnv(cache), "", append(s3Args(cache, secret),
		"--watch-store=false", "--reconcile-interval", "1s", "--pin", "system="+link)...)
	pinIs := func(want string) func() bool {
		return func() bool {
			return cache.Has(t, "pins/system") && strings.TrimSpace(string(cache.Get(t, "pins/system"))) == want
		}
	}
	waitFor(t, 60*time.Second, "the pin on the first closure", pinIs(first.Top))
	for _, p := range first.All {
		if !cache.Has(t, narinfoKey(t, p)) {
			t.Errorf("pinned closure member %s was not pushed before the pin", p)
		}
	}
	// A "switch": the link moves.
	tmp := link + ".new"
	os.Symlink(second.Top, tmp)
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the pin to follow the link", pinIs(second.Top))
	d.stop()

	gcKey, gcSecret := cache.NewGCUser(t)
	out, err := nixpushd(t, []string{"AWS_ACCESS_KEY_ID=" + gcKey, "AWS_SECRET_ACCESS_KEY=" + gcSecret},
		"gc", "--to", cache.S3URL, "--keep", "0s", "--grace", "0s")
	if err != nil {
		t.Fatalf("gc: %v\n%s", err, out)
	}
	for _, p := range second.All {
		if !cache.Has(t, narinfoKey(t, p)) {
			t.Errorf("gc deleted %s of the pinned closure\n%s", p, out)
		}
	}
	if cache.Has(t, narinfoKey(t, first.Top)) {
		t.Errorf("gc kept the unpinned old closure\n%s", out)
	}
	if out, err := testenv.CopyFrom(t, cache.HTTPURL, []string{public}, second.Top); err != nil {
		t.Fatalf("nix copy of the pinned closure after gc: %v\n%s", err, out)
	}
}
