package main

// Issue 11 (first run) and issue 10 §4, §6 end to end: the real binary,
// real Nix, real MinIO, and an unprivileged user where it matters.

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// makeRun runs the repository's Makefile `run` target (its recipe, not
// the build: the test binary stands in for ./nixpushd) with ARGS=args,
// in the foreground, and returns the process (its own process group).
func makeRun(t *testing.T, env []string, args string, out *syncBuffer) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "Makefile"), mk, 0o644)
	os.WriteFile(filepath.Join(dir, "nixpushd"), b, 0o755)
	cmd := exec.Command("make", "--no-print-directory", "-o", "build", "run", "ARGS="+args)
	cmd.Dir = dir
	cmd.Env = append(append(cleanEnv(), testenv.NixEnv()...), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// #1: `make run ARGS="--to s3://…&scheme=http"` hands the URL to the
// daemon whole, and runs it in the foreground (make's exit is the
// daemon's).
func TestFirstRunMakeArgs(t *testing.T) {
	dir := t.TempDir()
	url := "s3://nix-cache?endpoint=127.0.0.1:9000&scheme=http&region=x"
	out := &syncBuffer{}
	cmd := makeRun(t, []string{"AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b"},
		"--to "+url+" --state-dir "+dir+"/state --socket "+dir+"/s.sock --check-config", out)
	if err := cmd.Run(); err != nil {
		t.Fatalf("make run: %v\n%s", err, out.String())
	}
	line := regexp.MustCompile(`(?m)^\{.*\}$`).FindString(out.String())
	var m map[string]string
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("no JSON from the daemon (%v):\n%s", err, out.String())
	}
	if m["to"] != url {
		t.Errorf("the daemon got --to %q, want %q", m["to"], url)
	}
	// A failing daemon fails make: it ran in the foreground.
	out = &syncBuffer{}
	if err := makeRun(t, nil, "--to "+url+" --state-dir "+dir+"/state --check-config", out).Run(); err == nil {
		t.Errorf("make run succeeded without S3 credentials:\n%s", out.String())
	}
}

// #4 and the quick start: `make run` as root with a fresh state directory
// while a path is built; the daemon makes a signing key and prints its
// public key; an unprivileged user then copies the path out of the
// default cache with signature checks on.
func TestFirstRunQuickStart(t *testing.T) {
	testenv.RequireNix(t)
	nobody := asNobody(t)
	dir := worldDir(t)
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700) // as older versions left it
	out := &syncBuffer{}
	cmd := makeRun(t, nil, "--state-dir "+state+" --socket "+dir+"/nixpushd.sock --reconcile-interval 1h", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("make run output:\n%s", out.String())
		}
	})
	waitFor(t, 30*time.Second, "daemon ready", func() bool { return strings.Contains(out.String(), "nixpushd ready") })
	pk := regexp.MustCompile(`public_key="?([^" ]+)"?`).FindStringSubmatch(out.String())
	if pk == nil || !strings.Contains(out.String(), "created a signing key") {
		t.Fatalf("the daemon printed no public key at start:\n%s", out.String())
	}
	public := pk[1]
	if b, _ := os.ReadFile(filepath.Join(state, "public-key")); strings.TrimSpace(string(b)) != public {
		t.Errorf("STATE-DIR/public-key = %q, want %q", b, public)
	}

	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	cache := filepath.Join(state, "cache")
	waitFor(t, 60*time.Second, "the build in the default cache", func() bool {
		_, err := os.Stat(filepath.Join(cache, narinfoKey(t, cl.Top)))
		return err == nil
	})
	st, _ := exec.Command(bin, "status", "--state-dir", state, "--socket", dir+"/nixpushd.sock").CombinedOutput()
	if !strings.Contains(string(st), "public key: "+public) {
		t.Errorf("status does not show the public key:\n%s", st)
	}

	// Private things stay private; the cache is readable by all.
	for f, want := range map[string]os.FileMode{"secret-key": 0o600, "queue.db": 0o600, "public-key": 0o644, ".": 0o755, "cache": 0o755} {
		if fi, err := os.Stat(filepath.Join(state, f)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", f, fi.Mode().Perm(), err, want)
		}
	}

	// As nobody, with signature checks on.
	home := filepath.Join(dir, "nobody")
	os.Mkdir(home, 0o755)
	os.Chown(home, 65534, 65534)
	copyAs := func(name, key string) (string, error) {
		c := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "nix", "copy",
			"--from", "file://"+cache, "--to", filepath.Join(home, "store-"+name),
			"--option", "require-sigs", "true", "--option", "trusted-public-keys", key, "--option", "substituters", "", cl.Top)
		c.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CACHE_HOME=" + home + "/cache"}, testenv.NixEnv()...)
		b, err := c.CombinedOutput()
		return string(b), err
	}
	if o, err := copyAs("wrong", "other-1:"+strings.Repeat("A", 43)+"="); err == nil || !strings.Contains(o, "signature") {
		t.Errorf("nix copy with a wrong key: %v (want a signature error)\n%s", err, o)
	}
	if o, err := copyAs("right", public); err != nil {
		t.Errorf("nix copy as nobody with the printed key: %v\n%s", err, o)
	}
	// And nobody may not read the queue.
	if so, se, code := nobody(nil, "status", "--state-dir", state, "--socket", filepath.Join(dir, "none.sock")); code == 0 || !strings.Contains(se, "permission denied") {
		t.Errorf("status as nobody read the private queue: exit %d\n%s%s", code, so, se)
	}

	// Ctrl-C reaches make and the daemon (one process group): the
	// daemon stops cleanly, make reports the interrupt.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("make run did not stop on Ctrl-C")
	}
	if !strings.Contains(out.String(), "stopping: no new work") || strings.Contains(out.String(), "shutdown deadline reached") {
		t.Errorf("the daemon did not stop cleanly:\n%s", out.String())
	}
}

// Issue 10 §4: status never creates a queue, names permission problems,
// and a --status-group may read status while PUSH stays root's.
func TestFirstRunStatus(t *testing.T) {
	nobody := asNobody(t)
	dir := worldDir(t)
	state := filepath.Join(dir, "state")

	_, se, code := runBin(t, nil, "status", "--state-dir", state, "--socket", filepath.Join(dir, "none.sock"))
	if code != 1 || !strings.Contains(se, "no queue at "+filepath.Join(state, "queue.db")) {
		t.Errorf("status without a daemon or queue: exit %d\n%s", code, se)
	}
	if _, err := os.Stat(state); err == nil {
		t.Error("status created the state directory (or a queue)")
	}

	d := startDaemonProc(t, nil, state, "--watch-store=false", "--status-group", "nogroup")
	fi, err := os.Stat(d.socket)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Errorf("socket with --status-group nogroup: %v %v, want 0660 group nogroup", fi.Mode(), err)
	}
	so, se, code := nobody(nil, "status", "--socket", d.socket, "--state-dir", state)
	if code != 0 || !strings.Contains(so, "nixpushd: running") {
		t.Errorf("status as a member of the status group: exit %d\n%s%s", code, so, se)
	}
	// A status-group member may not queue paths.
	conn, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	paths, _ := filepath.Glob("/nix/store/*-*")
	var some string
	for _, p := range paths {
		if !strings.HasSuffix(p, ".lock") {
			some = p
			break
		}
	}
	if some != "" {
		_, se, code = nobody(nil, "push", "--via-daemon", "--socket", d.socket, some)
		if code == 0 || !strings.Contains(se, "permission denied: only root or the daemon's user may queue paths") {
			t.Errorf("push --via-daemon by a status-group member: exit %d\n%s", code, se)
		}
	}
	// Without the group: "permission denied", not "daemon not running".
	os.Chmod(d.socket, 0o600)
	_, se, code = nobody(nil, "status", "--socket", d.socket, "--state-dir", state)
	if code != 1 || !strings.Contains(se, "permission denied on "+d.socket) || !strings.Contains(se, "run as root") || strings.Contains(se, "not running") {
		t.Errorf("status without permission: exit %d\n%s", code, se)
	}
	d.stop()
}

// #7, #12: a push that cannot reach the cache does not say "pushed", and
// its counts add up; one path is "1 path".
func TestFirstRunPushSummary(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	dir := t.TempDir()
	out, err := nixpushd(t, []string{"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y"}, "push", "--state-dir", dir,
		"--to", "s3://nix-cache?endpoint=127.0.0.1:1&scheme=http", cl.Top)
	if err == nil {
		t.Fatalf("push to an unreachable cache succeeded:\n%s", out)
	}
	if strings.Contains(out, "pushed ") || !strings.Contains(out, "push of 3 paths to s3://nix-cache?endpoint=127.0.0.1:1&scheme=http incomplete: 0 uploaded, 0 already cached, 0 failed, 3 not attempted") {
		t.Errorf("summary of a push that could not run:\n%s", out)
	}
	out, err = nixpushd(t, nil, "push", "--state-dir", dir, "--to", "file://"+dir+"/cache", cl.Leaf)
	if err != nil || !strings.Contains(out, "pushed 1 path to") {
		t.Errorf("push of one path: %v\n%s", err, out)
	}
}

// Issue 10 §6: after an interrupted upload left a NAR without its
// narinfo (what kill -9 leaves), the next push says that only the
// narinfo was written, and its counts add up — push's summary and the
// daemon's journal line alike.
func TestFirstRunAccounting(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: 1})
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	if out, err := nixpushd(t, nil, "push", "--state-dir", dir, "--to", "file://"+cache, cl.Top); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	// The NAR stays, the narinfo is gone: as if killed in between.
	os.Remove(filepath.Join(cache, narinfoKey(t, cl.Leaf)))
	out, err := nixpushd(t, nil, "push", "--state-dir", dir, "--to", "file://"+cache, cl.Top)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if !strings.Contains(out, "pushed 3 paths to file://"+cache+": 1 uploaded, 2 already cached;") || !strings.Contains(out, "(1 NAR file already stored)") {
		t.Errorf("summary after an interrupted upload:\n%s", out)
	}
	if !strings.Contains(out, "uploaded narinfo; its NAR file was already in the cache") || strings.Contains(out, "file_size=0") {
		t.Errorf("the reused NAR is not reported as such:\n%s", out)
	}

	// The daemon's line for the same situation.
	os.Remove(filepath.Join(cache, narinfoKey(t, cl.Leaf)))
	// A first start pushes what was registered from its own second on
	// (Nix records whole seconds): let that second be after the closure's,
	// or reconcile would push the leaves in a batch of their own.
	time.Sleep(1100 * time.Millisecond)
	d := startDaemonProc(t, nil, "", "--to", "file://"+cache, "--watch-store=false")
	if r := d.request("PUSH " + cl.Top); !strings.HasPrefix(r, "OK") {
		t.Fatalf("PUSH: %s", r)
	}
	waitFor(t, 30*time.Second, "the daemon's pushed line", func() bool { return strings.Contains(d.out.String(), "msg=pushed") })
	line := regexp.MustCompile(`msg=pushed .*`).FindString(d.out.String())
	n := func(k string) int {
		m := regexp.MustCompile(` ` + k + `=(\d+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no %s in %q", k, line)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	if n("uploaded")+n("already_cached")+n("signed") != n("closure") || n("closure") != 3 || n("batch_paths") != 3 || n("uploaded") != 1 || n("reused_nars") != 1 || n("stored_bytes") != 0 {
		t.Errorf("the daemon's counts do not add up: %s", line)
	}
	d.stop()
}

// Issue 10 §6: --compression-level that will not be used as given is
// said at start-up.
func TestFirstRunCompressionNotes(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"NIXPUSHD_XZ=ulikunitz"}, []string{"--compression-level", "5"}, "--compression-level 5 is ignored"},
		{nil, []string{"--compression-level", "9"}, "xz preset 9 is run as preset 6"},
	} {
		d := startDaemonProc(t, tc.env, "", append([]string{"--watch-store=false"}, tc.args...)...)
		if tc.want == "xz preset 9 is run as preset 6" && !strings.Contains(d.out.String(), "xz (liblzma)") {
			d.stop()
			continue // liblzma not loadable here: the first case covers it
		}
		if !strings.Contains(d.out.String(), tc.want) {
			t.Errorf("%v %v: start-up does not say %q:\n%s", tc.env, tc.args, tc.want, d.out.String())
		}
		d.stop()
	}
}

// #10: wrong credentials make the daemon degraded, and it says so in
// STATUS=, in `status` (with since when) and in the log once a minute,
// not once per retry; it keeps retrying. With the cache unreachable,
// SIGTERM stops retrying at once instead of waiting out the schedule.
func TestFirstRunDegraded(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "degraded")
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 2})

	notifyPath, statuses := listenNotify(t, t.TempDir())
	d := startDaemonProc(t, []string{"NOTIFY_SOCKET=" + notifyPath, "AWS_ACCESS_KEY_ID=" + cache.AccessKey, "AWS_SECRET_ACCESS_KEY=wrong-secret"},
		"", "--to", cache.S3URL, "--watch-store=false", "--max-retry-delay", "1s", "--log-level", "info")
	for _, p := range append([]string{cl.Top, cl.Mid}, cl.Extra...) {
		if r := d.request("PUSH " + p); !strings.HasPrefix(r, "OK") {
			t.Fatalf("PUSH: %s", r)
		}
	}
	// Several retries of several paths happen within a few seconds.
	waitFor(t, 30*time.Second, "retries", func() bool {
		st := d.status()
		items, _ := st["items"].([]any)
		for _, it := range items {
			if a, _ := it.(map[string]any)["attempts"].(float64); a >= 3 {
				return true
			}
		}
		return false
	})
	out := d.out.String()
	if !strings.Contains(out, "nixpushd ready, but DEGRADED") {
		t.Errorf("start-up does not say the daemon is degraded:\n%s", out)
	}
	if n := strings.Count(out, "DEGRADED: the cache cannot be used until this is fixed"); n != 1 {
		t.Errorf("%d degraded lines in the log within a minute, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "upload failed; will retry") {
		t.Errorf("each retry of a configuration error is logged at info level or above:\n%s", out)
	}
	if !strings.Contains(statuses.String(), "STATUS=DEGRADED since") {
		t.Errorf("no STATUS=DEGRADED for systemd; got:\n%s", statuses.String())
	}
	st, err := exec.Command(bin, "status", "--socket", d.socket, "--state-dir", d.state).CombinedOutput()
	if err != nil || !strings.Contains(string(st), "DEGRADED since") || !strings.Contains(string(st), "last error:") || !strings.Contains(string(st), "ago)") {
		t.Errorf("status of a degraded daemon: %v\n%s", err, st)
	}
	d.stop()

	// Unreachable: SIGTERM while uploads wait to retry. The stop must not
	// need the shutdown deadline (5s, shorter than the retry schedule).
	u := startDaemonProc(t, []string{"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y"}, "",
		"--to", "s3://nix-cache?endpoint=127.0.0.1:1&scheme=http", "--watch-store=false", "--shutdown-timeout", "5s")
	if r := u.request("PUSH " + cl.Top); !strings.HasPrefix(r, "OK") {
		t.Fatalf("PUSH: %s", r)
	}
	waitFor(t, 10*time.Second, "the upload in flight", func() bool {
		return u.status()["in_flight"].(float64) > 0
	})
	u.stop()
	if strings.Contains(u.out.String(), "shutdown deadline reached") {
		t.Errorf("SIGTERM waited for the retry schedule instead of stopping retries:\n%s", u.out.String())
	}
}
