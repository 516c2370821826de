package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/queue"
)

// chainExpr is a fresh closure: n leaves of sizeMB MiB of incompressible
// data each (slow to xz: gives a test time to interrupt), and a top path
// referencing all of them.
func chainExpr(t *testing.T, n, sizeMB int) string {
	seed := fmt.Sprintf("%d-%s", time.Now().UnixNano(), t.Name())
	var b strings.Builder
	fmt.Fprintf(&b, "let\n  mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [\"-c\" script]; seed = %q; PATH = \"/usr/bin:/bin\"; };\n", seed)
	var refs []string
	for i := range n {
		fmt.Fprintf(&b, "  leaf%d = mk \"chain-leaf%d\" \"head -c %d /dev/urandom > $out\";\n", i, i, sizeMB<<20)
		refs = append(refs, fmt.Sprintf("${leaf%d}", i))
	}
	fmt.Fprintf(&b, "in mk \"chain-top\" \"mkdir $out; echo %s > $out/refs\"\n", strings.Join(refs, " "))
	return b.String()
}

func s3Args(cache *testenv.Cache, key string) []string {
	args := []string{"--to", cache.S3URL}
	if key != "" {
		args = append(args, "--secret-key-file", key)
	}
	return args
}

// Watcher on: a real nix-build ends up in the cache, real Nix substitutes
// it. Paths from before the first start are not pushed; paths built while
// the daemon was down are found by reconcile at the next start.
func TestDaemonWatchStore(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "watch")
	secret, public := testenv.GenerateKey(t, t.TempDir(), "watch-1")
	old := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	time.Sleep(1100 * time.Millisecond) // registration times have 1 s resolution

	d := startDaemonProc(t, writerEnv(cache), "", append(s3Args(cache, secret), "--watch-store", "--reconcile-interval", "1h")...)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: 1})
	waitFor(t, 60*time.Second, "the new closure in the cache", func() bool { return cache.Has(t, narinfoKey(t, cl.Top)) })
	if out, err := testenv.CopyFrom(t, cache.HTTPURL, []string{public}, cl.Top); err != nil {
		t.Fatalf("nix copy from the daemon's cache: %v\n%s", err, out)
	}
	if !pushedViaSoon(d.out, cl.Top, "watch") {
		t.Errorf("the upload did not come from the watcher:\n%s", d.out.String())
	}
	if cache.Has(t, narinfoKey(t, old.Top)) {
		t.Error("a path registered before the first start was pushed")
	}

	// Down, build, up: reconcile finds what was registered meanwhile.
	d.stop()
	missed := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	d.start()
	waitFor(t, 60*time.Second, "paths built while the daemon was down", func() bool { return cache.Has(t, narinfoKey(t, missed.Top)) })
	if !pushedViaSoon(d.out, missed.Top, "reconcile") {
		t.Errorf("expected reconcile to find the missed paths:\n%s", d.out.String())
	}
	assertBucketConsistent(t, cache)
	d.stop()
}

// post-build-hook = nixpushd-hook: built paths arrive through the socket.
// With the daemon down, the build still succeeds, the paths are spooled,
// and the daemon uploads them when it starts.
func TestDaemonHookAndSpool(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "hook")
	secret, public := testenv.GenerateKey(t, t.TempDir(), "hook-1")
	state := t.TempDir()
	hookDir := t.TempDir()
	hook := filepath.Join(hookDir, "nixpushd-hook")
	if err := os.Symlink(bin, hook); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NIXPUSHD_SOCKET", filepath.Join(state, "nixpushd.sock"))
	t.Setenv("NIXPUSHD_SPOOL_DIR", filepath.Join(state, "spool"))

	d := startDaemonProc(t, writerEnv(cache), state, append(s3Args(cache, secret), "--watch-store=false", "--reconcile-interval", "1h")...)
	paths := testenv.BuildExpr(t, chainExpr(t, 2, 1), "--option", "post-build-hook", hook)
	top := paths[0]
	waitFor(t, 60*time.Second, "hooked build in the cache", func() bool { return cache.Has(t, narinfoKey(t, top)) })
	if !pushedViaSoon(d.out, top, "socket") {
		t.Errorf("the upload did not come through the socket:\n%s", d.out.String())
	}
	if out, err := testenv.CopyFrom(t, cache.HTTPURL, []string{public}, top); err != nil {
		t.Fatalf("nix copy: %v\n%s", err, out)
	}
	d.stop()

	// Daemon down: the build must still succeed and spool.
	paths = testenv.BuildExpr(t, chainExpr(t, 1, 1), "--option", "post-build-hook", hook)
	top = paths[0]
	spooled, _ := filepath.Glob(filepath.Join(state, "spool", "*.paths"))
	if len(spooled) == 0 {
		t.Fatal("the hook did not spool while the daemon was down")
	}
	d.start()
	waitFor(t, 60*time.Second, "spooled paths in the cache", func() bool { return cache.Has(t, narinfoKey(t, top)) })
	if !pushedViaSoon(d.out, top, "spool") {
		t.Errorf("the upload did not come from the spool:\n%s", d.out.String())
	}
	if left, _ := filepath.Glob(filepath.Join(state, "spool", "*.paths")); len(left) != 0 {
		t.Errorf("spool not drained: %v", left)
	}
	assertBucketConsistent(t, cache)
	d.stop()
}

// kill -9 in the middle of a multi-path upload, then restart: the bucket
// is consistent at the moment of the kill, and complete afterwards.
func TestDaemonKill9(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "kill")
	secret, public := testenv.GenerateKey(t, t.TempDir(), "kill-1")
	paths := testenv.BuildExpr(t, chainExpr(t, 5, 4))
	top := paths[0]
	d := startDaemonProc(t, writerEnv(cache), "", append(s3Args(cache, secret), "--watch-store=false", "--jobs", "1")...)
	out, err := nixpushd(t, nil, "push", "--via-daemon", "--socket", d.socket, top)
	if err != nil {
		t.Fatalf("push --via-daemon: %v\n%s", err, out)
	}
	// Kill once some, not all, narinfos are up.
	waitFor(t, 120*time.Second, "the first narinfo", func() bool { return assertBucketConsistent(t, cache) >= 1 })
	d.kill9()
	n := assertBucketConsistent(t, cache)
	if cache.Has(t, narinfoKey(t, top)) {
		t.Logf("upload finished before the kill (%d narinfos); the test proves less", n)
	}
	d.start()
	waitFor(t, 180*time.Second, "the whole closure after restart", func() bool { return cache.Has(t, narinfoKey(t, top)) })
	assertBucketConsistent(t, cache)
	closure := strings.Fields(string(testenv.Nix(t, "nix-store", "-qR", top)))
	if len(closure) != 6 {
		t.Fatalf("closure of %s has %d paths, want 6", top, len(closure))
	}
	for _, p := range closure {
		if !cache.Has(t, narinfoKey(t, p)) {
			t.Errorf("%s missing from the cache after restart", p)
		}
	}
	if out, err := testenv.CopyFrom(t, cache.HTTPURL, []string{public}, top); err != nil {
		t.Fatalf("nix copy after restart: %v\n%s", err, out)
	}
	d.stop()
}

// MinIO down while paths are queued: uploads retry with backoff, and the
// backlog drains when it is back.
func TestDaemonS3Outage(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "outage")
	secret, public := testenv.GenerateKey(t, t.TempDir(), "outage-1")
	d := startDaemonProc(t, writerEnv(cache), "", append(s3Args(cache, secret), "--watch-store=false")...)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 3})
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			m.Restart()
		}
	})
	if reply := d.request("PUSH " + cl.Top); !strings.HasPrefix(reply, "OK") {
		t.Fatalf("PUSH while S3 is down: %q", reply)
	}
	waitFor(t, 30*time.Second, "a retry to be scheduled", func() bool { return strings.Contains(d.out.String(), "will retry") })
	st := d.status()
	if st["pending"].(float64)+st["in_flight"].(float64) < 1 {
		t.Errorf("the path left the queue while S3 was down: %v", st)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitFor(t, 60*time.Second, "the backlog to drain", func() bool { return cache.Has(t, narinfoKey(t, cl.Top)) })
	if out, err := testenv.CopyFrom(t, cache.HTTPURL, []string{public}, cl.Top); err != nil {
		t.Fatalf("nix copy: %v\n%s", err, out)
	}
	d.stop()
}

// A path altered after registration is refused and reported with its
// reason; the others continue.
func TestDaemonCorruptPath(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "corrupt")
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 2})
	victim, healthy := cl.Extra[0], cl.Extra[1]
	tamper(t, victim)
	time.Sleep(1100 * time.Millisecond) // keep these builds out of the first start's reconcile

	d := startDaemonProc(t, writerEnv(cache), "", append(s3Args(cache, ""), "--watch-store=false")...)
	if reply := d.request("PUSH " + victim + " " + healthy); reply != "OK 2" {
		t.Fatalf("PUSH: %q", reply)
	}
	waitFor(t, 60*time.Second, "both outcomes", func() bool {
		st := d.status()
		return st["failed"].(float64) == 1 && st["done"].(float64) == 1
	})
	if !cache.Has(t, narinfoKey(t, healthy)) || cache.Has(t, narinfoKey(t, victim)) {
		t.Error("want the healthy path uploaded and the corrupt one not")
	}
	out, _ := nixpushd(t, nil, "status", "--socket", d.socket)
	if !strings.Contains(out, victim+": ") || !strings.Contains(out, "NAR hash mismatch") {
		t.Errorf("status does not report the corrupt path with its reason:\n%s", out)
	}
	d.stop()
}

// Garbage on the socket gets error replies; the daemon keeps serving.
func TestDaemonSocketGarbage(t *testing.T) {
	d := startDaemonProc(t, nil, "", "--to", "file://"+t.TempDir(), "--watch-store=false")
	for _, line := range []string{
		"HELLO", "PING", "PUSH", "PUSH relative/path", "PUSH /tmp/x", "PUSH /nix/store/../etc/passwd",
		"PUSH /nix/store/00000000000000000000000000000000-x/bin/sh", "push /nix/store/00000000000000000000000000000000-x",
		"\x00\x01\x02", strings.Repeat("A", 5000), strings.Repeat("B", 2<<20),
	} {
		if reply := d.request(line); !strings.HasPrefix(reply, "ERR bad request: ") {
			t.Errorf("%.40q: reply %q, want ERR bad request", line, reply)
		}
	}
	if reply := d.request("STATUS"); !strings.HasPrefix(reply, "OK {") {
		t.Errorf("STATUS after garbage: %q", reply)
	}
	if !d.running() {
		t.Fatal("daemon died")
	}
	d.stop()
}

// A queue written before the queue's schema version 2 (queue/testdata has
// one) is migrated when first opened, here by `nixpushd status`, and the
// daemon then carries on with it.
func TestDaemonOldQueue(t *testing.T) {
	state := t.TempDir()
	old, err := os.ReadFile(filepath.Join("..", "..", "queue", "testdata", "queue-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "queue.db"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := nixpushd(t, nil, "status", "--json", "--socket", filepath.Join(state, "none.sock"), "--state-dir", state)
	if err != nil {
		t.Fatalf("status of an old queue: %v\n%s", err, out)
	}
	var st struct {
		Pending  int `json:"pending"`
		InFlight int `json:"in_flight"`
		Done     int `json:"done"`
		Failed   int `json:"failed"`
		Items    []struct{ Path, State string }
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if st.Pending != 4 || st.InFlight != 1 || st.Done != 2 || st.Failed != 1 || len(st.Items) != 8 {
		t.Fatalf("status of the old queue: %s", out)
	}
	// Its reconcile checkpoint is kept; move it to now, so that the
	// daemon does not reconcile this machine's store since then.
	q, err := queue.Open(filepath.Join(state, "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := q.Meta("reconcile-checkpoint"); v != "1740830400" || !ok || err != nil {
		t.Errorf("checkpoint %q %v %v", v, ok, err)
	}
	if err := q.SetMeta("reconcile-checkpoint", strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	// Its paths are not in this store: the daemon takes the unfinished
	// ones up again (the one in flight too) and marks them failed.
	d := startDaemonProc(t, nil, state, "--to", "file://"+t.TempDir(), "--watch-store=false")
	waitFor(t, 30*time.Second, "old items processed", func() bool {
		m := d.status()
		// Reconcile may push paths other tests registered within the
		// checkpoint's second: more may be done.
		done, _ := m["done"].(float64)
		return m["failed"] == float64(6) && done >= 2 && m["pending"] == float64(0) && m["in_flight"] == float64(0)
	})
	d.stop()
}
