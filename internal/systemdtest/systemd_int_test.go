package systemdtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// The shipped units on a real systemd, installed as their header says, with
// one change: --to points at a file:// cache in the service's state
// directory instead of s3.example.org. No drop-in weakens them: every
// hardening option is in force (the service would not start otherwise,
// systemd fails it with 226/NAMESPACE, 243/CREDENTIALS, …), and the test
// checks those it can see from outside the service. The only drop-in,
// late in the test, shortens WatchdogSec so that a hang is noticed quickly.
//
// Not checked, because the container gives the same answer either way:
// ProtectKernelTunables= (boot.sh mounts /proc/sys and /sys read-only for
// the whole container, as systemd-nspawn does) and PrivateDevices= (the
// container's /dev holds only the pseudo devices to begin with).
func TestShippedUnitsUnderSystemd(t *testing.T) {
	root := preparedRoot(t)
	repo := repoRoot(t)
	key, err := nar.GenerateSecretKey("nixpushd-ci-1")
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public()
	pubText := pub.Name + ":" + base64.StdEncoding.EncodeToString(pub.Key)

	dir := t.TempDir()
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	installFiles(t, repo, upper, key.Encode())
	start := time.Now()
	m := boot(t, root, upper, work)
	t.Logf("systemd up in %v (%s)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(m.sh(t, "systemctl --version | head -1; nix --version")))
	// What this machine cannot give: cgroup controllers that the host keeps
	// on cgroup v1 are absent from the namespace's cgroup2 hierarchy. The
	// shipped units set no resource limits, so nothing depends on them.
	t.Logf("cgroup2 controllers available to systemd: %q", strings.TrimSpace(m.sh(t, "cat /sys/fs/cgroup/cgroup.controllers")))

	// The rest of the unit file's "Install:" steps.
	m.sh(t, "useradd --system --user-group --home-dir /var/empty --shell /usr/sbin/nologin nixpushd")
	m.sh(t, "systemctl daemon-reload && systemctl enable --now nixpushd.socket")

	t.Run("systemd 257 accepts the units", func(t *testing.T) {
		out, err := m.run(60*time.Second, "sh", "-c", "systemd-analyze verify --man=no /etc/systemd/system/nixpushd.service /etc/systemd/system/nixpushd.socket 2>&1")
		if err != nil || strings.Contains(out, "nixpushd") {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("socket listens, service waits", func(t *testing.T) {
		sock := m.show(t, "nixpushd.socket", "ActiveState", "Listen")
		if sock["ActiveState"] != "active" || !strings.Contains(sock["Listen"], "/run/nixpushd/nixpushd.sock (Stream)") {
			t.Errorf("nixpushd.socket: %v", sock)
		}
		if got := strings.TrimSpace(m.sh(t, "stat -c '%A %U %G' /run/nixpushd/nixpushd.sock")); got != "srw------- root root" {
			t.Errorf("socket file: %s, want srw------- root root (SocketMode=0600)", got)
		}
		if st := m.show(t, "nixpushd.service", "ActiveState")["ActiveState"]; st != "inactive" {
			t.Errorf("nixpushd.service is %s before anything connected, want inactive", st)
		}
	})

	var p1 string
	if !t.Run("a build through the nix-daemon reaches the cache via the hook", func(t *testing.T) {
		p1 = m.build(t, "first")
		m.waitActive(t)
		svc := m.show(t, "nixpushd.service", "TriggeredBy", "Type", "NotifyAccess")
		if !strings.Contains(svc["TriggeredBy"], "nixpushd.socket") || svc["Type"] != "notify" || svc["NotifyAccess"] != "main" {
			t.Errorf("nixpushd.service: %v, want TriggeredBy nixpushd.socket, Type=notify, NotifyAccess=main", svc)
		}
		ni := m.waitNarinfo(t, p1)
		if !strings.Contains(ni, "StorePath: "+p1+"\n") || !strings.Contains(ni, "Sig: nixpushd-ci-1:") {
			t.Errorf("narinfo of %s:\n%s", p1, ni)
		}
		// Nix 2.26 checks the NAR and the signature made with the key
		// that reached the daemon through LoadCredential=.
		m.sh(t, fmt.Sprintf("nix store verify --store file:///var/lib/nixpushd/cache --trusted-public-keys %s --sigs-needed 1 %s", pubText, p1))
	}) {
		t.FailNow()
	}

	t.Run("journalctl -u nixpushd STORE_PATH= finds the upload", func(t *testing.T) {
		inv := m.show(t, "nixpushd.service", "InvocationID")["InvocationID"]
		e := m.waitJournal(t, p1, "pushed")
		if e["SYSLOG_IDENTIFIER"] != "nixpushd" || e["_SYSTEMD_UNIT"] != "nixpushd.service" || e["_SYSTEMD_INVOCATION_ID"] != inv {
			t.Errorf("journal entry: %v (want identifier nixpushd, unit nixpushd.service, invocation %s)", e, inv)
		}
		t.Logf("journal: %s (SOURCE=%s)", e["MESSAGE"], e["SOURCE"])
	})

	t.Run("systemctl status shows the queue", func(t *testing.T) {
		m.waitStatus(t, "the upload done", func(pending, inflight, done, failed int) bool {
			return pending == 0 && inflight == 0 && done >= 1 && failed == 0
		})
		st := m.show(t, "nixpushd.service", "StatusText")["StatusText"]
		out := m.sh(t, "systemctl status --no-pager --lines=0 nixpushd.service || true")
		if !statusRE.MatchString(out) || !strings.Contains(out, `Status: "`+st+`"`) {
			t.Errorf("systemctl status does not show the queue (%q):\n%s", st, out)
		}
	})

	t.Run("Type=notify, watchdog and hardening hold", func(t *testing.T) {
		svc := m.show(t, "nixpushd.service", "MainPID", "WatchdogUSec", "SubState")
		if svc["WatchdogUSec"] != "1min" || svc["SubState"] != "running" {
			t.Errorf("nixpushd.service: %v, want WatchdogUSec=1min, SubState=running (READY=1 received)", svc)
		}
		pid := svc["MainPID"]
		env := m.environ(t, pid)
		for k, want := range map[string]string{
			"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": pid, "LISTEN_FDS": "1",
			"NOTIFY_SOCKET": "/run/systemd/notify", "CREDENTIALS_DIRECTORY": "/run/credentials/nixpushd.service",
		} {
			if env[k] != want {
				t.Errorf("daemon environment %s=%q, want %q", k, env[k], want)
			}
		}
		if env["JOURNAL_STREAM"] == "" {
			t.Errorf("daemon environment has no JOURNAL_STREAM: it would not log to journald natively")
		}
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			if _, ok := env[k]; ok {
				t.Errorf("daemon environment has %s: credentials belong in the credentials directory", k)
			}
		}
		m.checkHardening(t, pid, key.Encode())
		t.Logf("systemd-analyze security nixpushd.service: %s", lastLine(m.sh(t, "systemd-analyze security --no-pager nixpushd.service || true")))
	})

	t.Run("systemctl kill -s KILL loses nothing", func(t *testing.T) {
		// With the cache unwritable for the daemon, a new path stays in
		// the queue (retried with backoff) until after the kill.
		mode := strings.TrimSpace(m.sh(t, "stat -c %a /var/lib/nixpushd/cache"))
		m.sh(t, "chmod 0500 /var/lib/nixpushd/cache")
		p2 := m.build(t, "second")
		if m.hasNarinfo(t, p2) {
			t.Fatalf("%s reached the unwritable cache", p2)
		}
		m.waitStatus(t, "the new path queued", func(pending, inflight, _, _ int) bool { return pending+inflight >= 1 })
		before := m.show(t, "nixpushd.service", "MainPID", "NRestarts")
		m.sh(t, "systemctl kill -s KILL nixpushd.service")
		m.sh(t, "chmod "+mode+" /var/lib/nixpushd/cache")
		waitFor(t, 60*time.Second, "systemd to restart the killed daemon", func() (bool, string) {
			s := m.show(t, "nixpushd.service", "MainPID", "NRestarts", "ActiveState", "SubState")
			return s["NRestarts"] == next(before["NRestarts"]) && s["SubState"] == "running" && s["MainPID"] != before["MainPID"], fmt.Sprint(s)
		})
		m.waitNarinfo(t, p2)
		inv := m.show(t, "nixpushd.service", "InvocationID")["InvocationID"]
		if e := m.waitJournal(t, p2, "pushed"); e["_SYSTEMD_INVOCATION_ID"] != inv {
			t.Errorf("%s pushed by invocation %s, want the restarted one %s", p2, e["_SYSTEMD_INVOCATION_ID"], inv)
		}
		m.waitStatus(t, "an empty queue", func(pending, inflight, _, failed int) bool { return pending+inflight+failed == 0 })
	})

	t.Run("the watchdog restarts a hung daemon", func(t *testing.T) {
		// Test-only drop-in: a 3 s watchdog instead of the shipped 60 s, so
		// that a hang is noticed within the test.
		m.sh(t, "mkdir -p /etc/systemd/system/nixpushd.service.d && printf '[Service]\\nWatchdogSec=3s\\n' >/etc/systemd/system/nixpushd.service.d/ci-watchdog.conf && systemctl daemon-reload && systemctl restart nixpushd.service")
		svc := m.show(t, "nixpushd.service", "MainPID", "NRestarts", "WatchdogTimestampMonotonic")
		if got := m.environ(t, svc["MainPID"])["WATCHDOG_USEC"]; got != "3000000" {
			t.Fatalf("WATCHDOG_USEC=%q after the drop-in, want 3000000", got)
		}
		waitFor(t, 30*time.Second, "a watchdog ping (WatchdogTimestamp to move)", func() (bool, string) {
			s := m.show(t, "nixpushd.service", "WatchdogTimestampMonotonic")
			return s["WatchdogTimestampMonotonic"] != svc["WatchdogTimestampMonotonic"], fmt.Sprint(s)
		})
		m.sh(t, "systemctl kill --kill-whom=main -s STOP nixpushd.service")
		waitFor(t, 60*time.Second, "systemd to restart the hung daemon", func() (bool, string) {
			s := m.show(t, "nixpushd.service", "MainPID", "NRestarts", "SubState")
			return s["NRestarts"] == next(svc["NRestarts"]) && s["SubState"] == "running" && s["MainPID"] != svc["MainPID"], fmt.Sprint(s)
		})
		if out := m.sh(t, "journalctl --no-pager -o cat _PID=1 UNIT=nixpushd.service | grep -F 'nixpushd.service: Watchdog timeout' || true"); out == "" {
			t.Errorf("no \"Watchdog timeout\" from systemd in the journal")
		}
	})

	t.Run("stop is clean and keeps the socket", func(t *testing.T) {
		m.sh(t, "systemctl stop nixpushd.service")
		svc := m.show(t, "nixpushd.service", "ActiveState", "Result", "ExecMainStatus")
		if svc["ActiveState"] != "inactive" || svc["Result"] != "success" || svc["ExecMainStatus"] != "0" {
			t.Errorf("after systemctl stop: %v, want inactive, success, exit 0", svc)
		}
		m.sh(t, "test -S /run/nixpushd/nixpushd.sock")
		if st := m.show(t, "nixpushd.socket", "ActiveState")["ActiveState"]; st != "active" {
			t.Errorf("nixpushd.socket is %s after the service stopped", st)
		}
		// And the socket starts it again.
		p3 := m.build(t, "third")
		m.waitActive(t)
		m.waitNarinfo(t, p3)
	})

	// What systemd found missing in this container, for the record.
	t.Logf("systemd's warnings during the test:\n%s", m.sh(t, "journalctl --no-pager -b -o cat -p warning _PID=1 || true"))
}

// statusRE matches the daemon's STATUS= as systemctl status shows it.
var statusRE = regexp.MustCompile(`Status: "(\d+) pending, (\d+) in flight, (\d+) done, (\d+) failed`)

// next returns n+1 for a decimal string (an NRestarts value).
func next(n string) string {
	v, _ := strconv.Atoi(n)
	return strconv.Itoa(v + 1)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// preparedRoot returns the root prepare-root.sh made, or skips (fails
// under CI) when this machine cannot run the test.
func preparedRoot(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		testenv.Unavailable(t, "systemd test: needs Linux")
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "systemd test: needs root (to unshare namespaces, mount and boot systemd)")
	}
	for _, tool := range []string{"unshare", "nsenter", "bash"} {
		testenv.LookPath(t, tool, "install util-linux and bash")
	}
	script := filepath.Join(repoRoot(t), "internal", "systemdtest", "prepare-root.sh")
	out, err := exec.Command("bash", script, "--path").Output()
	if err != nil {
		t.Fatalf("%s --path: %v", script, err)
	}
	root := strings.TrimSpace(string(out))
	_, err = os.Stat(filepath.Join(root, ".nixpushd-ci-ready"))
	testenv.Require(t, fmt.Sprintf("systemd test: the Debian trixie root at %s (run .ci/install-deps, or %s as root, to prepare it)", root, script), err)
	return root
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(wd)) // go test runs in internal/systemdtest
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod two levels above %s", wd)
	}
	return root
}

// installFiles puts into the overlay's upper directory, before the boot,
// what an operator installs: the daemon (static, so it runs on any root),
// the hook link, the secrets, the shipped units and nix.conf's hook line.
func installFiles(t *testing.T, repo, upper, secretKey string) {
	t.Helper()
	bin := filepath.Join(upper, "usr", "local", "bin")
	mkdirs(t, bin, filepath.Join(upper, "etc", "systemd", "system"), filepath.Join(upper, "etc", "nix"), filepath.Join(upper, "etc", "nixpushd"))
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "nixpushd"), "./cmd/nixpushd")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build nixpushd: %v\n%s", err, out)
	}
	if err := os.Symlink("nixpushd", filepath.Join(bin, "nixpushd-hook")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(upper, "etc", "nixpushd"), 0o700); err != nil {
		t.Fatal(err)
	}
	service, err := os.ReadFile(filepath.Join(repo, "nixos-module", "nixpushd.service"))
	if err != nil {
		t.Fatal(err)
	}
	const shippedTo = "--to=s3://nix-cache?endpoint=s3.example.org"
	if !bytes.Contains(service, []byte(shippedTo)) {
		t.Fatalf("nixos-module/nixpushd.service has no %s to point at the test's cache: update this test", shippedTo)
	}
	service = bytes.Replace(service, []byte(shippedTo), []byte("--to=file:///var/lib/nixpushd/cache"), 1)
	socket, err := os.ReadFile(filepath.Join(repo, "nixos-module", "nixpushd.socket"))
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]struct {
		data []byte
		mode fs.FileMode
	}{
		"etc/systemd/system/nixpushd.service": {service, 0o644},
		"etc/systemd/system/nixpushd.socket":  {socket, 0o644},
		"etc/nixpushd/secret-key":             {[]byte(secretKey), 0o600},
		// A file:// cache needs no S3 keys, but the unit loads this
		// credential: the daemon must start with it and not export it.
		"etc/nixpushd/aws-credentials": {[]byte("AWS_ACCESS_KEY_ID=nixbuilder\nAWS_SECRET_ACCESS_KEY=not-used-by-file-caches\n"), 0o600},
		// Debian's nix.conf plus the hook. No build sandbox: the test's
		// derivations use the root's /bin/sh, and Nix's sandbox inside
		// these namespaces is not what this test is about.
		"etc/nix/nix.conf": {[]byte("sandbox = false\nexperimental-features = nix-command\nsubstituters =\npost-build-hook = /usr/local/bin/nixpushd-hook\n"), 0o644},
	} {
		if err := os.WriteFile(filepath.Join(upper, name), f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// machine is a booted systemd.
type machine struct {
	pid     int    // systemd, PID 1 of the namespaces, as the host sees it
	console string // its console output, and boot.sh's
}

// boot starts boot.sh and waits until systemd reports the system running.
// Cleanup kills systemd, which takes every process in its namespaces with
// it, and removes the cgroup it ran in.
func boot(t *testing.T, lower, upper, work string) *machine {
	t.Helper()
	mkdirs(t, work)
	m := &machine{console: filepath.Join(filepath.Dir(upper), "console.log")}
	logf, err := os.Create(m.console)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "internal", "systemdtest", "boot.sh"), lower, upper, work)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, unshare gets SIGKILL, and --kill-child
	// passes it on to systemd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var cgroup string
	t.Cleanup(func() {
		if t.Failed() && m.pid != 0 {
			out, _ := m.run(30*time.Second, "journalctl", "--no-pager", "-b", "-n", "150", "-u", "nixpushd.service", "-u", "nixpushd.socket", "-u", "nix-daemon.service")
			t.Logf("journal:\n%s", out)
		}
		if m.pid != 0 {
			_ = syscall.Kill(m.pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		<-done
		if cgroup != "" {
			if err := removeCgroup(cgroup); err != nil {
				t.Errorf("removing the test's cgroup: %v", err)
			}
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for m.pid == 0 {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("boot.sh exited: %v\n%s", err, readTail(m.console))
		case <-time.After(50 * time.Millisecond):
		}
		if cgroup == "" {
			if b, err := os.ReadFile(m.console); err == nil {
				if s, ok := strings.CutPrefix(string(b), "cgroup="); ok {
					cgroup, _, _ = strings.Cut(s, "\n")
				}
			}
		}
		m.pid = systemdChild(cmd.Process.Pid)
		if time.Now().After(deadline) {
			t.Fatalf("systemd did not start within 30s\n%s", readTail(m.console))
		}
	}
	// systemctl needs PID 1's private socket, which comes a moment after
	// the process: until then it says "offline" (or fails to connect),
	// sooner on a loaded machine than systemd is up.
	var out string
	waitFor(t, 60*time.Second, "systemd's private socket", func() (bool, string) {
		out, err = m.run(90*time.Second, "systemctl", "is-system-running", "--wait")
		up := strings.TrimSpace(out) != "offline" && (err == nil || !strings.Contains(err.Error(), "Failed to connect"))
		return up, fmt.Sprint(strings.TrimSpace(out), " ", err)
	})
	if state := strings.TrimSpace(out); state != "running" {
		failed, _ := m.run(30*time.Second, "systemctl", "--failed", "--no-pager")
		t.Fatalf("systemd: system %q (%v), want running\n%s\nconsole:\n%s", state, err, failed, readTail(m.console))
	}
	return m
}

// systemdChild returns the pid of unshare's child once it runs systemd.
func systemdChild(unsharePid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", unsharePid, unsharePid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		comm, _ := os.ReadFile("/proc/" + f + "/comm")
		if strings.TrimSpace(string(comm)) == "systemd" {
			pid, _ := strconv.Atoi(f)
			return pid
		}
	}
	return 0
}

// removeCgroup removes a cgroup tree bottom-up, once the killed processes
// in it are gone.
func removeCgroup(dir string) error {
	var err error
	for range 100 {
		err = nil
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
			if werr == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if e := os.Remove(dirs[i]); e != nil && !errors.Is(e, fs.ErrNotExist) {
				err = e
			}
		}
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// run runs a command inside the machine (all its namespaces, its root).
func (m *machine) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.pid), "-a", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "LANG=C.UTF-8", "HOME=/root"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

// sh runs a shell script inside the machine and fails the test if it fails.
func (m *machine) sh(t *testing.T, script string) string {
	t.Helper()
	out, err := m.run(120*time.Second, "sh", "-ec", script)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// show returns properties of a unit (systemctl show).
func (m *machine) show(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	args := []string{"systemctl", "show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out, err := m.run(30*time.Second, args...)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			res[k] = v
		}
	}
	return res
}

// build builds a fresh one-file derivation as the unprivileged user alice,
// i.e. through the nix-daemon, which runs the post-build-hook, and returns
// its output path. The hook has run when nix-build returns.
func (m *machine) build(t *testing.T, name string) string {
	t.Helper()
	expr := fmt.Sprintf(`derivation { name = "ci-%s"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo %s > $out" ]; seed = "%d"; }`,
		name, name, time.Now().UnixNano())
	out, err := m.run(120*time.Second, "sh", "-c", `runuser -u alice -- nix-build --no-out-link -E "$1" 2>&1`, "sh", expr)
	if err != nil {
		t.Fatalf("build as alice through the nix-daemon: %v", err)
	}
	p := lastLine(out)
	if !strings.HasPrefix(p, "/nix/store/") {
		t.Fatalf("nix-build printed %q, want a store path", out)
	}
	// The hook says on stderr whether the daemon took the paths (through
	// the socket) or it left them in the spool.
	if !strings.Contains(out, "post-build-hook: nixpushd: queued ") || strings.Contains(out, "spool") {
		t.Errorf("the post-build-hook did not hand %s to the daemon through the socket:\n%s", p, out)
	}
	return p
}

func (m *machine) waitActive(t *testing.T) {
	t.Helper()
	waitFor(t, 60*time.Second, "nixpushd.service to be active (READY=1)", func() (bool, string) {
		s := m.show(t, "nixpushd.service", "ActiveState", "SubState", "Result")
		return s["ActiveState"] == "active" && s["SubState"] == "running", fmt.Sprint(s)
	})
}

func narinfoPath(storePath string) string {
	hash, _, _ := strings.Cut(strings.TrimPrefix(storePath, "/nix/store/"), "-")
	return "/var/lib/nixpushd/cache/" + hash + ".narinfo"
}

func (m *machine) hasNarinfo(t *testing.T, p string) bool {
	_, err := m.run(30*time.Second, "test", "-f", narinfoPath(p))
	return err == nil
}

func (m *machine) waitNarinfo(t *testing.T, p string) string {
	t.Helper()
	waitFor(t, 60*time.Second, p+" in the cache", func() (bool, string) {
		return m.hasNarinfo(t, p), m.show(t, "nixpushd.service", "StatusText")["StatusText"]
	})
	return m.sh(t, "cat "+narinfoPath(p))
}

// waitJournal waits for a journal entry of nixpushd.service with
// STORE_PATH=p whose message starts with msg, found the way an operator
// would: journalctl -u nixpushd STORE_PATH=….
func (m *machine) waitJournal(t *testing.T, p, msg string) map[string]string {
	t.Helper()
	var found map[string]string
	waitFor(t, 30*time.Second, "journal entry "+msg+" STORE_PATH="+p, func() (bool, string) {
		out, err := m.run(30*time.Second, "journalctl", "--no-pager", "-o", "json", "-u", "nixpushd", "STORE_PATH="+p)
		if err != nil {
			return false, err.Error()
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			flat := map[string]string{}
			for k, v := range e {
				if s, ok := v.(string); ok {
					flat[k] = s
				}
			}
			if strings.HasPrefix(flat["MESSAGE"], msg) {
				found = flat
				return true, ""
			}
		}
		return false, out
	})
	return found
}

// waitStatus waits for the queue counts in the daemon's STATUS= to satisfy ok.
func (m *machine) waitStatus(t *testing.T, what string, ok func(pending, inflight, done, failed int) bool) {
	t.Helper()
	waitFor(t, 30*time.Second, "status: "+what, func() (bool, string) {
		st := m.show(t, "nixpushd.service", "StatusText")["StatusText"]
		var n [4]int
		if _, err := fmt.Sscanf(st, "%d pending, %d in flight, %d done, %d failed", &n[0], &n[1], &n[2], &n[3]); err != nil {
			return false, st
		}
		return ok(n[0], n[1], n[2], n[3]), st
	})
}

// environ reads a process's environment as systemd gave it.
func (m *machine) environ(t *testing.T, pid string) map[string]string {
	t.Helper()
	out := m.sh(t, "cat /proc/"+pid+"/environ")
	env := map[string]string{}
	for _, kv := range strings.Split(out, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// checkHardening looks at the running daemon from outside: its
// credentials, capabilities, seccomp, and the mounts of its namespace.
func (m *machine) checkHardening(t *testing.T, pid, secretKey string) {
	t.Helper()
	status := m.sh(t, "cat /proc/"+pid+"/status")
	uid := strings.TrimSpace(m.sh(t, "id -u nixpushd"))
	for _, want := range []string{
		"Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid + "\n", // User=nixpushd
		"CapEff:\t0000000000000000\n",                                // CapabilityBoundingSet=
		"CapBnd:\t0000000000000000\n",
		"CapAmb:\t0000000000000000\n",
		"NoNewPrivs:\t1\n", // NoNewPrivileges=
		"Seccomp:\t2\n",    // SystemCallFilter= (filter mode)
	} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/%s/status lacks %q", pid, strings.TrimSpace(want))
		}
	}
	ns := m.sh(t, "readlink /proc/1/ns/mnt /proc/"+pid+"/ns/mnt")
	if f := strings.Fields(ns); len(f) != 2 || f[0] == f[1] {
		t.Errorf("daemon shares PID 1's mount namespace (%q): no ProtectSystem/PrivateTmp", ns)
	}
	mounts := parseMountinfo(m.sh(t, "cat /proc/"+pid+"/mountinfo"))
	for _, c := range []struct {
		path, opt, why string
	}{
		{"/", "ro", "ProtectSystem=strict"},
		{"/var/lib/nixpushd", "rw", "StateDirectory="},
		{"/var/cache/nixpushd", "rw", "CacheDirectory="},
		{"/sys/fs/cgroup", "ro", "ProtectControlGroups="},
		{"/proc", "hidepid=invisible", "ProtectProc=invisible"},
		{"/run/credentials/nixpushd.service", "ro", "LoadCredential="},
	} {
		opts, ok := mounts[c.path]
		if !ok {
			t.Errorf("%s: no mount at %s in the daemon's namespace", c.why, c.path)
			continue
		}
		if !slices.Contains(opts, c.opt) {
			t.Errorf("%s: %s mounted %v, want %s", c.why, c.path, opts, c.opt)
		}
	}
	// PrivateTmp, ProtectHome: what the host sees is not what the daemon sees.
	m.sh(t, "touch /tmp/ci-private-tmp-marker")
	for _, p := range []string{"/tmp/ci-private-tmp-marker", "/home/alice"} {
		if _, err := m.run(30*time.Second, "test", "-e", "/proc/"+pid+"/root"+p); err == nil {
			t.Errorf("the daemon sees %s (PrivateTmp=/ProtectHome=)", p)
		}
	}
	if got := m.sh(t, "cat /proc/"+pid+"/root/run/credentials/nixpushd.service/secret-key"); got != secretKey {
		t.Errorf("the credentials directory does not hold the secret key")
	}
}

// parseMountinfo returns, for each mount point, its mount and super-block
// options (the last mount at a point wins, as in the namespace).
func parseMountinfo(s string) map[string][]string {
	res := map[string][]string{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 6 || sep < 0 || sep+3 >= len(f) {
			continue
		}
		opts := strings.Split(f[5], ",")
		opts = append(opts, strings.Split(f[sep+3], ",")...)
		res[unescapeMount(f[4])] = opts
	}
	return res
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// waitFor polls cond until it holds, failing the test after timeout with
// cond's last description of the state.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
