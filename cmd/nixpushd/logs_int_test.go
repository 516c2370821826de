package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// pushedLines are the daemon's "pushed" lines for path.
func pushedLines(out, path string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "msg=pushed") && strings.Contains(l, "STORE_PATH="+path+" ") {
			lines = append(lines, l)
		}
	}
	return lines
}

func logField(t *testing.T, line, k string) int {
	t.Helper()
	m := regexp.MustCompile(` ` + k + `=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no %s= in %q", k, line)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// Two roots pushed in one batch: each root's line counts its own closure,
// not the batch's.
func TestDaemonPushedLineCountsTheRootsClosure(t *testing.T) {
	testenv.RequireNix(t)
	a := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	b := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 2})
	time.Sleep(1100 * time.Millisecond) // registered before the first start: not reconcile's
	cache := filepath.Join(t.TempDir(), "cache")
	d := startDaemonProc(t, nil, "", "--to", "file://"+cache, "--watch-store=false", "--reconcile-interval", "1h")
	if r := d.request("PUSH " + a.Top + " " + b.Top); !strings.HasPrefix(r, "OK") {
		t.Fatalf("PUSH: %s", r)
	}
	waitFor(t, 60*time.Second, "both pushed lines", func() bool {
		return len(pushedLines(d.out.String(), a.Top)) == 1 && len(pushedLines(d.out.String(), b.Top)) == 1
	})
	for _, c := range []testenv.Closure{a, b} {
		line := pushedLines(d.out.String(), c.Top)[0]
		if logField(t, line, "batch") != 2 {
			t.Fatalf("the two roots were not pushed as one batch: %s", line)
		}
		if got := logField(t, line, "closure"); got != len(c.All) {
			t.Errorf("closure=%d, want %d: %s", got, len(c.All), line)
		}
		if u, p := logField(t, line, "uploaded"), logField(t, line, "already_cached"); u != len(c.All) || p != 0 {
			t.Errorf("uploaded=%d already_cached=%d, want %d and 0 (the root's closure, not the batch's %d): %s", u, p, len(c.All), len(a.All)+len(b.All), line)
		}
		if logField(t, line, "batch_paths") != len(a.All)+len(b.All) {
			t.Errorf("batch_paths is not the batch's: %s", line)
		}
	}
}

// A build with the hook and the watcher both on: the hook's PUSH pushes
// the path, and the watcher's later sight of it adds no second line.
func TestDaemonOneLinePerPush(t *testing.T) {
	testenv.RequireNix(t)
	state := t.TempDir()
	hook := filepath.Join(t.TempDir(), "nixpushd-hook")
	if err := os.Symlink(bin, hook); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NIXPUSHD_SOCKET", filepath.Join(state, "nixpushd.sock"))
	t.Setenv("NIXPUSHD_SPOOL_DIR", filepath.Join(state, "spool"))
	cache := filepath.Join(t.TempDir(), "cache")
	d := startDaemonProc(t, nil, state, "--to", "file://"+cache, "--watch-store", "--reconcile-interval", "1s")
	paths := testenv.BuildExpr(t, chainExpr(t, 2, 0), "--option", "post-build-hook", hook)
	top := paths[0]
	waitFor(t, 60*time.Second, "the pushed line", func() bool { return len(pushedLines(d.out.String(), top)) > 0 })
	// Give the watcher and two reconcile rounds the time to see it.
	time.Sleep(3 * time.Second)
	if lines := pushedLines(d.out.String(), top); len(lines) != 1 {
		t.Errorf("%d pushed lines for %s, want 1:\n%s", len(lines), top, strings.Join(lines, "\n"))
	}
}

// The daemon started on another cache with the same state directory:
// status lists no push to the old cache as recently done.
func TestStatusHistoryIsTheCurrentTargets(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	state := t.TempDir()
	first, second := filepath.Join(t.TempDir(), "first"), filepath.Join(t.TempDir(), "second")
	status := func(d *daemonProc) string {
		t.Helper()
		out, err := nixpushd(t, nil, "status", "--socket", d.socket, "--state-dir", d.state)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		return out
	}
	d := startDaemonProc(t, nil, state, "--to", "file://"+first, "--watch-store=false", "--reconcile-interval", "1h")
	if r := d.request("PUSH " + cl.Top); !strings.HasPrefix(r, "OK") {
		t.Fatalf("PUSH: %s", r)
	}
	waitFor(t, 60*time.Second, "the pushed line", func() bool { return len(pushedLines(d.out.String(), cl.Top)) == 1 })
	if out := status(d); !strings.Contains(out, "recently done:\n  "+cl.Top+" at ") {
		t.Fatalf("status does not list the push to the first cache:\n%s", out)
	}
	d.stop()
	d = startDaemonProc(t, nil, state, "--to", "file://"+second, "--watch-store=false", "--reconcile-interval", "1h")
	out := status(d)
	if !strings.Contains(out, "pushing to file://"+second) || strings.Contains(out, cl.Top) {
		t.Errorf("status on the second cache lists the push to the first:\n%s", out)
	}
	if !strings.Contains(d.out.String(), "the history of pushes to the old one is cleared") {
		t.Errorf("the start does not say the history was cleared:\n%s", d.out.String())
	}
}
