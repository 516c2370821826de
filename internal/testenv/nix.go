package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nixTools are the binaries the helpers call; all must be present.
var nixTools = []string{"nix", "nix-store", "nix-build", "nix-instantiate"}

// nixFallbackDirs are where Nix lives when it is installed but not on PATH
// (multi-user installs, NixOS).
var nixFallbackDirs = []string{"/nix/var/nix/profiles/default/bin", "/run/current-system/sw/bin"}

// nixBin finds a Nix binary: $NIX_BIN_DIR, PATH, then the profile dirs.
func nixBin(name string) (string, error) {
	if strings.ContainsRune(name, '/') {
		return name, nil
	}
	if dir := os.Getenv("NIX_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, name)
		if !isExecutable(p) {
			return "", fmt.Errorf("NIX_BIN_DIR=%q has no executable %s", dir, name)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range nixFallbackDirs {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w (install Nix or set NIX_BIN_DIR)", name, ErrNotInstalled)
}

var (
	nixProbeMu   sync.Mutex
	nixProbeSeen = map[string]error{}
)

// nixProblem says why Nix cannot be used here, or nil. The answer is
// cached per PATH/NIX_BIN_DIR (tests may change them) because every Nix
// helper asks.
func nixProblem() error {
	key := os.Getenv("PATH") + "\x00" + os.Getenv("NIX_BIN_DIR")
	nixProbeMu.Lock()
	defer nixProbeMu.Unlock()
	if err, ok := nixProbeSeen[key]; ok {
		return err
	}
	err := probeNix()
	nixProbeSeen[key] = err
	return err
}

func probeNix() error {
	for _, name := range nixTools {
		if _, err := nixBin(name); err != nil {
			return err
		}
	}
	if st, err := os.Stat("/nix/store"); err != nil || !st.IsDir() {
		return fmt.Errorf("/nix/store: %w (no Nix store on this machine)", ErrNotInstalled)
	}
	// Building needs root (as here) or a daemon to talk to; a plain user
	// with neither cannot use this machine's Nix for these tests.
	if os.Geteuid() != 0 {
		if _, err := os.Stat("/nix/var/nix/daemon-socket/socket"); err != nil {
			return fmt.Errorf("nix: %w for this user (not root and no nix-daemon socket)", ErrNotInstalled)
		}
	}
	p, _ := nixBin("nix-store")
	if out, err := exec.Command(p, "--version").CombinedOutput(); err != nil {
		return fmt.Errorf("%s --version: %v: %s", p, err, bytes.TrimSpace(out))
	}
	return nil
}

// RequireNix skips the test when Nix is missing, or fails it under CI=true
// (or when Nix is present but broken).
func RequireNix(t testing.TB) {
	t.Helper()
	if err := nixProblem(); err != nil {
		missing(t, err)
	}
}

// NixEnv returns environment entries, to append to os.Environ(), that make
// Nix work here as root. Any NIX_CONFIG already set is kept, ours comes last
// so it wins. It does not isolate ~/.cache/nix; NixCmd adds that.
func NixEnv() []string {
	conf := strings.Join([]string{
		// Root without a nixbld group: build as root itself.
		"build-users-group =",
		"sandbox = false",
		"experimental-features = nix-command",
		// No network here and tests must not depend on cache.nixos.org:
		// builds are always local, substituters are always explicit.
		"substituters =",
		// Tests add and remove cache entries within seconds; Nix must ask
		// the cache every time instead of trusting remembered answers.
		"narinfo-cache-negative-ttl = 0",
		"narinfo-cache-positive-ttl = 0",
	}, "\n")
	if prev := os.Getenv("NIX_CONFIG"); prev != "" {
		conf = prev + "\n" + conf
	}
	return []string{"NIX_CONFIG=" + conf}
}

// NixCmd returns a command for a Nix binary with NixEnv and a private
// XDG_CACHE_HOME: Nix also remembers "this URL is a binary cache" for days
// in ~/.cache/nix, which would leak between tests reusing a port and bucket
// name. The command is SIGTERMed when the test ends; being tied to
// t.Context(), it cannot be started from a Cleanup function.
func NixCmd(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	RequireNix(t)
	path, err := nixBin(name)
	if err != nil {
		missing(t, err)
	}
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Env = append(os.Environ(), NixEnv()...)
	cmd.Env = append(cmd.Env, "XDG_CACHE_HOME="+t.TempDir())
	// SIGTERM, not SIGKILL: Nix cleans up its locks and temp roots on TERM.
	cmd.SysProcAttr = childAttr(syscall.SIGTERM)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// RunNix runs a Nix command like Nix, but returns a failure (with stderr
// in the error) instead of failing the test.
func RunNix(t testing.TB, name string, args ...string) ([]byte, error) {
	t.Helper()
	return runNix(t, nil, name, args...)
}

func runNix(t testing.TB, stdin []byte, name string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := NixCmd(t, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// Nix runs a Nix command (e.g. Nix(t, "nix-store", "--dump", p)) and returns
// its stdout; any failure fails the test, showing stderr.
func Nix(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := runNix(t, nil, name, args...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return out
}

// BuildExpr writes expr to a temp default.nix, builds it with nix-build
// (extraArgs are passed on, e.g. "-A", "x" or "--argstr", "k", "v") and
// returns the out paths in the order nix-build prints them.
func BuildExpr(t testing.TB, expr string, extraArgs ...string) []string {
	t.Helper()
	RequireNix(t)
	file := filepath.Join(t.TempDir(), "default.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without a sandbox Nix refuses to build while this directory exists;
	// say so plainly rather than as an opaque nix-build failure.
	if _, err := os.Stat("/homeless-shelter"); err == nil {
		t.Fatal("/homeless-shelter exists (something ran with a Nix builder's HOME); unsandboxed builds refuse to run: remove it with rm -rf /homeless-shelter")
	}
	// --no-out-link: no result symlinks (GC roots) left behind in the cwd.
	args := append([]string{"--no-out-link", file}, extraArgs...)
	return storePaths(Nix(t, "nix-build", args...))
}

func storePaths(out []byte) []string {
	var paths []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "/") {
			paths = append(paths, line)
		}
	}
	return paths
}

// ClosureOpts shapes BuildClosure's output.
type ClosureOpts struct {
	// BigFileMB is the size of leaf's big.dat in MiB: 0 means 3, negative
	// means an empty big.dat (fast tests that only need the shape).
	BigFileMB int
	// ExtraLeaves adds that many small single-file paths, all referenced by
	// Top, for "many paths" tests.
	ExtraLeaves int
	// Seed is baked into every derivation (and leaf's files); empty means
	// random, so each run builds paths no cache has seen.
	Seed string
}

// Closure is what BuildClosure built.
type Closure struct {
	Top, Mid, Leaf string
	Extra          []string
	// All is the closure of Top (Top, Mid, Leaf and Extra) as
	// `nix-store -qR` prints it: dependencies before dependents.
	All []string
	// Seed is the seed actually used.
	Seed string
}

// closureExpr builds, with host tools only (no nixpkgs here):
//
//	leaf  directory: hello.txt, bin/hello (executable), link-to-hello
//	      (symlink), empty (empty file), emptydir/, order/ (names whose
//	      byte order differs from naive sorts), big.dat (BigFileMB MiB of
//	      base64 random data mixed with text: compresses somewhat, not fully)
//	mid   a single regular file holding leaf's path (so it references leaf)
//	extra-N  small single files
//	top   directory: mid-ref (-> mid), self-ref ($out: a self-reference),
//	      extra-refs (-> every extra), bin/top (executable)
//
// The big file loop makes a bit more than needed and head truncates it to
// the exact size; the SIGPIPE this gives the loop does not fail the build
// because sh's pipeline status is head's.
const closureExpr = `{ seed, bigMB, extras }:
let
  mk = name: script: derivation {
    inherit name seed;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-e" "-c" script ];
    PATH = "/usr/bin:/bin";
  };
  leaf = mk "nixpushd-test-leaf" ''
    mkdir -p $out/bin $out/emptydir $out/order
    printf 'hello from the nixpushd test closure, seed %s\n' "$seed" > $out/hello.txt
    printf '#!/bin/sh\necho "leaf %s"\n' "$seed" > $out/bin/hello
    chmod 0755 $out/bin/hello
    ln -s hello.txt $out/link-to-hello
    : > $out/empty
    for n in Z a a-b a.b aa; do printf '%s\n' "$n" > "$out/order/$n"; done
    i=0
    while [ $i -le ${toString bigMB} ]; do
      head -c 600000 /dev/urandom | base64
      yes "compressible filler line $i of the nixpushd test data, seed $seed" | head -c 250000
      i=$((i + 1))
    done | head -c ${toString (bigMB * 1048576)} > $out/big.dat
  '';
  mid = mk "nixpushd-test-mid" ''
    printf '%s\n' ${leaf} > $out
  '';
  extra = builtins.genList (i: mk "nixpushd-test-extra-${toString i}" ''
    printf 'extra leaf %s, seed %s\n' ${toString i} "$seed" > $out
  '') extras;
  top = mk "nixpushd-test-top" ''
    mkdir -p $out/bin
    printf '%s\n' ${mid} > $out/mid-ref
    printf '%s\n' "$out" > $out/self-ref
    printf '%s\n' ${toString extra} > $out/extra-refs
    printf '#!/bin/sh\ncat %s\n' ${mid} > $out/bin/top
    chmod 0755 $out/bin/top
  '';
in [ top mid leaf ] ++ extra
`

// BuildClosure builds a fresh leaf <- mid <- top closure with real nix-build
// (see closureExpr for the exact contents) and returns its store paths.
func BuildClosure(t testing.TB, opts ClosureOpts) Closure {
	t.Helper()
	RequireNix(t)
	big := opts.BigFileMB
	switch {
	case big == 0:
		big = 3
	case big < 0:
		big = 0
	}
	seed := opts.Seed
	if seed == "" {
		seed = randHex(8)
	}
	// Extra leaves are independent tiny builds: let Nix run them in parallel.
	jobs := strconv.Itoa(max(4, runtime.NumCPU()))
	paths := BuildExpr(t, closureExpr,
		"--argstr", "seed", seed,
		"--arg", "bigMB", strconv.Itoa(big),
		"--arg", "extras", strconv.Itoa(max(0, opts.ExtraLeaves)),
		"--max-jobs", jobs)

	c := Closure{Seed: seed}
	// Identify outputs by name rather than trusting nix-build's print order.
	extras := map[int]string{}
	for _, p := range paths {
		name := storeName(p)
		switch {
		case name == "nixpushd-test-top":
			c.Top = p
		case name == "nixpushd-test-mid":
			c.Mid = p
		case name == "nixpushd-test-leaf":
			c.Leaf = p
		case strings.HasPrefix(name, "nixpushd-test-extra-"):
			n, err := strconv.Atoi(strings.TrimPrefix(name, "nixpushd-test-extra-"))
			if err != nil {
				t.Fatalf("testenv: unexpected output %s", p)
			}
			extras[n] = p
		default:
			t.Fatalf("testenv: unexpected output %s", p)
		}
	}
	if c.Top == "" || c.Mid == "" || c.Leaf == "" || len(extras) != max(0, opts.ExtraLeaves) {
		t.Fatalf("testenv: nix-build returned %d paths, not the expected closure: %q", len(paths), paths)
	}
	for i := range len(extras) {
		c.Extra = append(c.Extra, extras[i])
	}
	c.All = storePaths(Nix(t, "nix-store", "--query", "--requisites", c.Top))
	if want := 3 + len(c.Extra); len(c.All) != want {
		t.Fatalf("testenv: closure of %s has %d paths, want %d: %q", c.Top, len(c.All), want, c.All)
	}
	return c
}

// storeName is a store path's name without the directory and hash.
func storeName(p string) string {
	base := filepath.Base(p)
	if i := strings.IndexByte(base, '-'); i >= 0 {
		return base[i+1:]
	}
	return base
}

// GenerateKey makes a signing key pair with real Nix: the secret with
// `nix key generate-secret --key-name NAME` into dir/NAME.secret (0600),
// the public key with `nix key convert-secret-to-public` into
// dir/NAME.public. dir "" means a fresh temp dir.
func GenerateKey(t testing.TB, dir, name string) (secretFile, publicKey string) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	secret := Nix(t, "nix", "key", "generate-secret", "--key-name", name)
	secretFile = filepath.Join(dir, name+".secret")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := runNix(t, secret, "nix", "key", "convert-secret-to-public")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	publicKey = strings.TrimSpace(string(pub))
	if err := os.WriteFile(filepath.Join(dir, name+".public"), []byte(publicKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return secretFile, publicKey
}

// NewClientStore returns an empty directory to use as a chroot Nix store
// (`--store DIR`: paths land in DIR/nix/store, the DB in DIR/nix/var), so
// client-side tests never touch the real /nix/store. Removed at cleanup.
func NewClientStore(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	// Registered after TempDir, so it runs before TempDir's removal.
	t.Cleanup(func() { makeWritable(dir) })
	return dir
}

// trustArgs are the client options that make Nix judge a cache by exactly
// the given keys. require-sigs is already the default, but a NIX_CONFIG or
// nix.conf could turn it off; secret-key-files would silently add trusted
// keys of its own.
func trustArgs(trustedKeys []string) []string {
	return []string{
		"--option", "trusted-public-keys", strings.Join(trustedKeys, " "),
		"--option", "require-sigs", "true",
		"--option", "secret-key-files", "",
	}
}

// CopyFrom runs real Nix as the cache's client: `nix copy --from URL` of
// paths (and their closure) into a fresh chroot store, trusting only
// trustedKeys. It returns the combined output and whether Nix failed; it
// never fails the test itself.
func CopyFrom(t testing.TB, url string, trustedKeys []string, paths ...string) (string, error) {
	t.Helper()
	return CopyFromInto(t, NewClientStore(t), url, trustedKeys, paths...)
}

// CopyFromInto is CopyFrom into a given chroot store (from NewClientStore),
// for tests that inspect or verify the result afterwards.
func CopyFromInto(t testing.TB, store, url string, trustedKeys []string, paths ...string) (string, error) {
	t.Helper()
	args := []string{"copy", "--from", url, "--to", store, "--option", "substituters", ""}
	args = append(args, trustArgs(trustedKeys)...)
	return combined(NixCmd(t, "nix", append(args, paths...)...))
}

// Substitute realises paths into a fresh chroot store with the cache as
// the only substituter (`nix-store -r`), the way a machine configured with
// substituters/trusted-public-keys uses it. Output and error as CopyFrom.
func Substitute(t testing.TB, url string, trustedKeys []string, paths ...string) (string, error) {
	t.Helper()
	return SubstituteInto(t, NewClientStore(t), url, trustedKeys, paths...)
}

// SubstituteInto is Substitute into a given chroot store.
func SubstituteInto(t testing.TB, store, url string, trustedKeys []string, paths ...string) (string, error) {
	t.Helper()
	args := []string{"--store", store, "--realise", "--option", "substituters", url}
	args = append(args, trustArgs(trustedKeys)...)
	return combined(NixCmd(t, "nix-store", append(args, paths...)...))
}

// VerifyStore checks paths in a chroot store with `nix store verify
// --sigs-needed 1`: contents must match their NarHash and each path must
// carry a signature by one of trustedKeys.
func VerifyStore(t testing.TB, store string, trustedKeys []string, paths ...string) error {
	t.Helper()
	return verify(t, store, trustedKeys, paths)
}

// VerifyCache runs the same check directly against a binary cache URL
// (http://…, file://…): narinfo signatures, and each NAR's hash after
// downloading it.
func VerifyCache(t testing.TB, url string, trustedKeys []string, paths ...string) error {
	t.Helper()
	return verify(t, url, trustedKeys, paths)
}

func verify(t testing.TB, store string, trustedKeys []string, paths []string) error {
	t.Helper()
	args := []string{"store", "verify", "--store", store, "--sigs-needed", "1"}
	args = append(args, trustArgs(trustedKeys)...)
	out, err := combined(NixCmd(t, "nix", append(args, paths...)...))
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

func combined(cmd *exec.Cmd) (string, error) {
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return string(out), err
}
