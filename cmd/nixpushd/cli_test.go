package main

// Issue 11 cases that need neither Nix nor MinIO: each runs the real
// binary (or run(), as main does) and asserts on what a user sees and on
// the exit status.

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/nar"
)

// runBin runs the binary with env added to a clean environment and
// returns stdout, stderr and the exit status.
func runBin(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// writeKeys writes a secret key and its public key as Nix does.
func writeKeys(t *testing.T, dir string) (secretFile, publicFile string) {
	t.Helper()
	k, err := nar.GenerateSecretKey("test-1")
	if err != nil {
		t.Fatal(err)
	}
	secretFile, publicFile = filepath.Join(dir, "secret.key"), filepath.Join(dir, "public.key")
	os.WriteFile(secretFile, []byte(k.Encode()+"\n"), 0o600)
	os.WriteFile(publicFile, []byte(k.Public().String()+"\n"), 0o644)
	return secretFile, publicFile
}

// #11: -h prints a usage line and the flags as --name VALUE on stdout and
// exits 0; quoted words of a flag's text never become its value's name;
// --temp-dir's default is what each command really uses.
func TestCLIHelp(t *testing.T) {
	flagLine := regexp.MustCompile(`^  --[a-z][a-z-]*( [A-Z][A-Z=_]*)?$`)
	for _, cmd := range []string{"push", "daemon", "status", "hook", "gc", "verify", "pin"} {
		t.Run(cmd, func(t *testing.T) {
			stdout, stderr, code := runBin(t, nil, cmd, "-h")
			if code != 0 {
				t.Errorf("%s -h: exit %d, want 0\n%s", cmd, code, stderr)
			}
			if !strings.HasPrefix(stdout, "usage: nixpushd ") {
				t.Errorf("%s -h does not begin with a usage line:\n%s", cmd, stdout)
			}
			for _, l := range strings.Split(stdout, "\n") {
				if strings.HasPrefix(l, "  -") && !flagLine.MatchString(l) {
					t.Errorf("%s -h: flag line %q is not --name [VALUE]", cmd, l)
				}
			}
			if strings.Contains(stdout, "--secret-key-file nix") {
				t.Errorf("backquoted help text became an argument name:\n%s", stdout)
			}
		})
	}
	tempDefault := func(cmd string) string {
		stdout, _, _ := runBin(t, nil, cmd, "-h")
		_, rest, _ := strings.Cut(stdout, "--temp-dir DIR\n")
		line, _, _ := strings.Cut(rest, "\n")
		return line
	}
	if l := tempDefault("daemon"); !strings.Contains(l, "STATE-DIR/tmp") || strings.Contains(l, "TMPDIR") {
		t.Errorf("daemon -h: --temp-dir default: %q, want STATE-DIR/tmp", l)
	}
	if l := tempDefault("push"); !strings.Contains(l, "$TMPDIR") {
		t.Errorf("push -h: --temp-dir default: %q, want $TMPDIR", l)
	}
}

// #6: --check-config prints one line of pure JSON on stdout, problems on
// stderr, and exits non-zero on anything the daemon would die of.
func TestCLICheckConfig(t *testing.T) {
	dir := t.TempDir()
	secret, public := writeKeys(t, dir)
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("not a certificate"), 0o644)
	base := []string{"daemon", "--check-config", "--state-dir", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "s.sock")}
	noHome := []string{"HOME=" + filepath.Join(dir, "nohome")}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want []string // on stderr
	}{
		{"ok", nil, []string{"--secret-key-file", secret}, 0, nil},
		{"default key", nil, nil, 0, nil},
		// A typo'd path next to a key names the key, and suggests no new one.
		{"missing key file", nil, []string{"--secret-key-file", filepath.Join(dir, "nope.key")}, 1, []string{"nope.key does not exist; existing signing keys: " + secret + " (test-1): give the one clients trust"}},
		// With no key anywhere near, the hint creates one, never over a file.
		{"missing key file, no key near", nil, []string{"--secret-key-file", filepath.Join(dir, "empty", "nope.key")}, 1, []string{"nope.key does not exist; create it with", "umask 077", "set -o noclobber", "mkdir -p", "--extra-experimental-features nix-command"}},
		// A directory is not a key file: the keys in it are named.
		{"directory as key file", nil, []string{"--secret-key-file", dir}, 1, []string{"--secret-key-file " + dir + " is a directory, not a key file; signing keys here: " + secret + " (test-1): give one of them"}},
		{"public key as secret", nil, []string{"--secret-key-file", public}, 1, []string{"holds the public key test-1", "umask 077"}},
		{"no S3 credentials", noHome, []string{"--secret-key-file", secret, "--to", "s3://nix-cache?endpoint=127.0.0.1:9&scheme=http"}, 1, []string{"no S3 credentials"}},
		{"bad CA file", nil, []string{"--secret-key-file", secret, "--ca-file", ca}, 1, []string{"--ca-file", "no PEM certificate"}},
		{"missing CA file", nil, []string{"--secret-key-file", secret, "--ca-file", filepath.Join(dir, "nope.pem")}, 1, []string{"--ca-file", "no such file"}},
		{"several problems", noHome, []string{"--secret-key-file", public, "--to", "s3://nix-cache?endpoint=127.0.0.1:9"}, 1, []string{"holds the public key", "no S3 credentials", "2 problems"}},
		{"bad flag", nil, []string{"--jobs", "0"}, 2, []string{"--jobs 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runBin(t, tc.env, append(base, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "> "+public) {
				t.Errorf("the hint would overwrite the public key:\n%s", stderr)
			}
			if tc.code == 2 {
				return
			}
			if strings.Count(stdout, "\n") != 1 {
				t.Errorf("stdout is not one line: %q", stdout)
			}
			var m map[string]string
			if err := json.Unmarshal([]byte(stdout), &m); err != nil {
				t.Fatalf("stdout is not pure JSON (%v): %q", err, stdout)
			}
			if m["state-dir"] != filepath.Join(dir, "state") {
				t.Errorf("state-dir = %q", m["state-dir"])
			}
		})
	}
	// It creates nothing: not the state directory, not a key.
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("--check-config created the state directory")
	}
}

// #2: the daemon refuses a public key given as the secret key with a hint
// that works when pasted, and that never writes over the public key.
func TestCLIPublicKeyAsSecret(t *testing.T) {
	dir := t.TempDir()
	_, public := writeKeys(t, dir)
	_, stderr, code := runBin(t, nil, "daemon", "--state-dir", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "s.sock"),
		"--watch-store=false", "--secret-key-file", public)
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, stderr)
	}
	for _, w := range []string{"holds the public key test-1", "umask 077", "mkdir -p " + dir, "nix --extra-experimental-features nix-command key generate-secret", "> " + filepath.Join(dir, "secret-key")} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, "> "+public) {
		t.Errorf("the hint would overwrite the public key:\n%s", stderr)
	}
}

// #12: every bad argument is named, not only the first; the store
// itself is not "not in /nix/store".
func TestCLIPushBadArguments(t *testing.T) {
	dir := t.TempDir()
	_, stderr, code := runBin(t, nil, "push", "--state-dir", dir, "--to", "file://"+dir+"/cache", dir+"/a", nar.StoreDir, dir+"/b")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, stderr)
	}
	for _, w := range []string{"3 arguments are not store paths", dir + "/a", dir + "/b", nar.StoreDir + " is the store itself"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, "/nix/store is not in /nix/store") {
		t.Errorf("says the store is not in itself:\n%s", stderr)
	}
}

// #5: not root, the daemon defaults to $XDG_RUNTIME_DIR and
// $XDG_STATE_HOME; the root-only default socket fails with a hint.
func TestCLINotRootDefaults(t *testing.T) {
	nobody := asNobody(t)
	dir := worldDir(t)
	xdg := filepath.Join(dir, "run")
	os.Mkdir(xdg, 0o700)
	os.Chown(xdg, 65534, 65534)
	env := []string{"XDG_RUNTIME_DIR=" + xdg, "XDG_STATE_HOME=" + filepath.Join(xdg, "state"), "HOME=" + xdg}
	stdout, stderr, code := nobody(env, "daemon", "--check-config")
	if code != 0 {
		t.Fatalf("check-config as nobody: exit %d\n%s%s", code, stdout, stderr)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if m["socket"] != filepath.Join(xdg, "nixpushd", "nixpushd.sock") || m["state-dir"] != filepath.Join(xdg, "state", "nixpushd") {
		t.Errorf("as nobody: socket %q, state-dir %q; want them under %s", m["socket"], m["state-dir"], xdg)
	}
	// Without XDG_RUNTIME_DIR the default is root's socket: a clear hint.
	stdout, stderr, code = nobody([]string{"HOME=" + xdg, "XDG_STATE_HOME=" + filepath.Join(xdg, "state")}, "daemon", "--watch-store=false")
	if code != 1 {
		t.Errorf("daemon as nobody with the root socket: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	for _, w := range []string{"/run/nixpushd/nixpushd.sock", "permission denied", "run the daemon as root", "XDG_RUNTIME_DIR"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

// asNobody returns a runner of the binary as uid/gid 65534, skipping the
// test when not root. The binary is copied where nobody may run it.
func asNobody(t *testing.T) func(env []string, args ...string) (string, string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as nobody")
	}
	dir := worldDir(t)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	nbin := filepath.Join(dir, "nixpushd")
	if err := os.WriteFile(nbin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return func(env []string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", nbin}, args...)...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
}

// worldDir is a temporary directory other users can enter (t.TempDir's
// parent is 0700).
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nixpushd-cli-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
