// Package testenv runs the real tools nixpushd's integration tests need —
// Nix (to build closures, make signing keys and act as the cache's client)
// and MinIO (the S3 server) — never mocks.
//
// Ground rules, shared by every helper:
//   - A missing tool skips the test, unless CI=true (any strconv.ParseBool
//     true value): then it fails, so CI can never go green by skipping.
//     An explicit MINIO_BIN/MC_BIN/NIX_BIN_DIR that points nowhere always fails.
//   - Binaries: MinIO and mc come from $MINIO_BIN / $MC_BIN, then $PATH, then
//     $(go env GOPATH)/bin. Nix comes from $NIX_BIN_DIR, then $PATH, then the
//     usual profile directories.
//   - Network traffic goes only to 127.0.0.1, on random free ports. All state
//     lives in temp dirs. Processes are stopped and waited for at cleanup, and
//     die with the test binary (Pdeathsig) if it crashes.
//   - Helpers that take a testing.TB may call t.Fatal/t.Skip, so call them from
//     the test's own goroutine.
//
// Environment and rules (this file):
//   - CI reports whether CI=true is set; ErrNotInstalled (IsNotInstalled)
//     marks a tool that is absent rather than broken.
//   - Unavailable / Require / LookPath: the one rule for anything a test
//     needs from the machine (tools, libraries, prepared roots): skip, or
//     fail under CI. Tests outside testenv use these rather than t.Skip.
//
// Nix (nix.go):
//   - RequireNix: are the Nix binaries and /nix/store usable?
//   - NixEnv: NIX_CONFIG entries that make Nix work here as root (no build
//     users, no sandbox, nix-command on, no substituters, no narinfo caching).
//   - NixCmd / Nix / RunNix: run a Nix binary with that environment and a
//     private XDG_CACHE_HOME (so Nix's on-disk narinfo cache never leaks
//     answers between calls); Nix fails the test on error, RunNix does not.
//   - BuildExpr: nix-build an expression, return its out paths.
//   - BuildClosure: nix-build a fresh leaf <- mid <- top closure (plus optional
//     extra leaves) covering every NAR node type, seeded so it is new each run.
//   - GenerateKey: `nix key generate-secret` + `convert-secret-to-public`.
//   - NewClientStore: an empty chroot store (a temp dir) to copy into.
//   - CopyFrom / CopyFromInto: `nix copy --from URL` into a chroot store with
//     only the given keys trusted and signatures required.
//   - Substitute / SubstituteInto: `nix-store -r` with the cache as the only
//     substituter, i.e. the way a real machine consumes the cache.
//   - VerifyStore / VerifyCache: `nix store verify --sigs-needed 1` on a chroot
//     store or directly on a binary cache URL.
//
// MinIO (minio.go):
//   - HaveMinIO / RequireMinIO: are the minio and mc binaries available?
//   - StartMinIO (tests) / StartMinIOMain (TestMain) / RunWithMinIO: start a
//     server on 127.0.0.1:<random port> with a temp data dir, wait for
//     /minio/health/ready plus real S3 and IAM answers. Stop (SIGTERM) and
//     Kill (SIGKILL) keep the data, Restart brings it back on the same port,
//     Freeze/Thaw (SIGSTOP/SIGCONT) make it hang; Running reports state.
//   - MC / RunMC: run mc against the server (alias MCAlias, root) with a
//     private MC_CONFIG_DIR and HOME, so ~/.mc is never touched.
//   - NewCache: a bucket set up as in the seed guides (mb, writer user,
//     least-privilege policy without DeleteObject, anonymous download) and
//     nix-cache-info deliberately NOT written.
//   - Objects / Get / Has / RootClient / Client: minio-go access (also as
//     Cache methods, Cache.Client being the writer user).
//   - Cache.UploadDir: upload a `nix copy --to file://` directory as the writer.
package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// ErrNotInstalled is wrapped by errors about a tool that is simply absent
// (as opposed to present but broken), which is a skip outside CI.
var ErrNotInstalled = errors.New("not installed")

// IsNotInstalled reports whether err says a tool is absent (a skip outside
// CI) rather than broken or misconfigured (always a failure).
func IsNotInstalled(err error) bool { return errors.Is(err, ErrNotInstalled) }

// CI reports whether the CI environment variable is set to a true value
// (any strconv.ParseBool true value: "true", "1", "TRUE", "t", …). Under CI
// a missing tool is a failure, never a skip. Every package's tests decide
// this here, so that CI=1 means the same thing everywhere.
func CI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Unavailable skips the test because something it needs (a tool, a
// library, a prepared root) is not there, or fails it under CI, so that CI
// can never go green by skipping. The message should say how to get it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI=true: a missing tool is a failure, not a skip)", msg)
		return
	}
	t.Skipf("%s", msg)
}

// Require returns if err is nil; otherwise it calls Unavailable about what
// when err says it is absent (ErrNotInstalled, exec.ErrNotFound,
// fs.ErrNotExist), and fails the test for any other error, since a broken
// install must be seen even outside CI.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ErrNotInstalled), errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		Unavailable(t, "%s: %v", what, err)
	default:
		t.Fatalf("%s: %v", what, err)
	}
}

// LookPath finds name on PATH, or calls Unavailable with hint (how to
// install it).
func LookPath(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not found on PATH: %s", name, hint)
	}
	return p
}

// missing skips the test, or fails it under CI or when the problem is not
// just an absent tool (a broken install or a wrong override must be seen).
func missing(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("testenv: %v", err)
		return
	}
	Unavailable(t, "testenv: %v", err)
}

// findTool locates a Go-installed tool: $envVar, then PATH, then
// $(go env GOPATH)/bin, because `go install` puts it there without
// touching PATH.
func findTool(envVar, name string) (string, error) {
	if v := os.Getenv(envVar); v != "" {
		p, err := exec.LookPath(v)
		if err != nil {
			// Deliberately not ErrNotInstalled: an override that points
			// nowhere is a mistake to report, not a reason to skip.
			return "", fmt.Errorf("%s=%q: %v", envVar, v, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range filepath.SplitList(goPath()) {
		if p := filepath.Join(dir, "bin", name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w (set %s, put it on PATH, or go install it into $(go env GOPATH)/bin)",
		name, ErrNotInstalled, envVar)
}

var (
	goPathOnce  sync.Once
	goPathValue string
)

// goPath mirrors `go env GOPATH`: $GOPATH, else what the go tool says,
// else the documented default ~/go.
func goPath() string {
	if v := os.Getenv("GOPATH"); v != "" {
		return v
	}
	goPathOnce.Do(func() {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			goPathValue = strings.TrimSpace(string(out))
		}
		if goPathValue == "" {
			if home, err := os.UserHomeDir(); err == nil {
				goPathValue = filepath.Join(home, "go")
			}
		}
	})
	return goPathValue
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// randHex returns 2n random hex characters: names and secrets that never
// collide between runs and need no quoting anywhere (URLs, shells, Nix).
func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// tailFile returns the last max bytes of a log, for error messages.
func tailFile(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// makeWritable gives the owner write permission on every directory under
// root: Nix leaves store paths read-only, which would make RemoveAll fail
// for anyone but root.
func makeWritable(root string) {
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if info, err := d.Info(); err == nil && info.Mode().Perm()&0o200 == 0 {
				_ = os.Chmod(p, info.Mode().Perm()|0o700)
			}
		}
		return nil
	})
}
