// Package nixosmodule holds the tests of the Nix side of nixpushd: the
// package expression (default.nix, nixos-module/package.nix, flake.nix),
// its vendorHash, the NixOS module (nixos-module/default.nix) and the
// example systemd units for other distributions.
//
// Tools, and what happens without them:
//   - nix-instantiate / nix: the tests that need them skip, or fail when
//     CI is true (as for the rest of the repository).
//   - NIXPKGS_LIB, the lib directory of nixpkgs (or of the much smaller
//     github.com/nix-community/nixpkgs.lib), else ../shared/nixpkgs-lib/lib
//     beside the repository: the module and package evaluation tests skip
//     without it, saying how to get it, and fail under CI.
//   - systemd-analyze: TestUnitsVerify skips without it, fails under CI.
//
// "Fails under CI" is testenv.Unavailable's rule, so CI is parsed the
// same way as in every other package.
package nixosmodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// nixTool finds a Nix binary ($NIX_BIN_DIR, PATH, then the usual profile
// directories), or skips the test (fails it under CI).
func nixTool(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("NIX_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("NIX_BIN_DIR=%q has no %s", dir, name)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/nix/var/nix/profiles/default/bin", "/run/current-system/sw/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	testenv.Unavailable(t, "%s not found: install Nix (or set NIX_BIN_DIR) to run this test", name)
	return ""
}

// nixEnv is the environment for Nix commands: the repository's shared Nix
// settings (no build users, no substituters, nix-command on) and a private
// cache directory.
func nixEnv(t testing.TB) []string {
	return append(append(os.Environ(), testenv.NixEnv()...), "XDG_CACHE_HOME="+t.TempDir())
}

// runCmd runs a command with a timeout and returns its stdout, or an error
// that carries its stderr.
func runCmd(t testing.TB, timeout time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// repoRoot is the module root: the directory above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	root := filepath.Dir(filepath.Dir(file))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		// Built with -trimpath: fall back to the working directory, which
		// `go test` sets to this package's directory.
		wd, _ := os.Getwd()
		root = filepath.Dir(wd)
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
			t.Fatalf("cannot find the repository root (no go.mod above %s)", wd)
		}
	}
	return root
}

const nixpkgsLibHint = "NIXPKGS_LIB is not set: the module and package evaluation tests need nixpkgs' lib. " +
	"Fetch github.com/nix-community/nixpkgs.lib (or any nixpkgs checkout) and set NIXPKGS_LIB=/path/to/it/lib, e.g.\n" +
	"  git clone --depth 1 https://github.com/nix-community/nixpkgs.lib /tmp/nixpkgs-lib && export NIXPKGS_LIB=/tmp/nixpkgs-lib/lib"

// nixpkgsLib returns $NIXPKGS_LIB, else the project's shared copy beside
// the repository (../shared/nixpkgs-lib/lib), else skips the test saying
// how to set it; under CI=true a missing lib is a failure.
func nixpkgsLib(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("NIXPKGS_LIB")
	if dir == "" {
		shared := filepath.Join(filepath.Dir(repoRoot(t)), "shared", "nixpkgs-lib", "lib")
		if _, err := os.Stat(filepath.Join(shared, "default.nix")); err == nil {
			dir = shared
		}
	}
	if dir == "" {
		testenv.Unavailable(t, "%s", nixpkgsLibHint)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"default.nix", "modules.nix", "types.nix"} {
		if _, err := os.Stat(filepath.Join(abs, f)); err != nil {
			t.Fatalf("NIXPKGS_LIB=%s is not nixpkgs' lib directory (no %s): point it at the lib/ inside a nixpkgs or nixpkgs.lib checkout", dir, f)
		}
	}
	return abs
}

// nixString quotes s as a Nix string literal.
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// evalJSON evaluates a Nix expression in the repository root (where
// ./nixos-module/test/eval.nix is) and decodes the JSON result into v.
func evalJSON(t testing.TB, inst, expr string, v any) error {
	t.Helper()
	out, err := runCmd(t, 60*time.Second, repoRoot(t), nixEnv(t), inst, "--eval", "--strict", "--json", "--show-trace", "-E", expr)
	if err != nil {
		return fmt.Errorf("evaluating:\n%s\n%v", expr, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("decoding the evaluation result: %v\n%s", err, out)
	}
	return nil
}

// The module is evaluated once for all scenarios (one nix-instantiate run
// costs about as much as one scenario) and the result shared by the tests.
var (
	evalOnce   sync.Once
	evalResult *evaluation
	evalErr    error
)

// evalAll evaluates every scenario of scenarios_test.go.
func evalAll(t *testing.T) *evaluation {
	t.Helper()
	lib := nixpkgsLib(t)
	inst := nixTool(t, "nix-instantiate")
	evalOnce.Do(func() {
		var ev evaluation
		if evalErr = evalJSON(t, inst, evaluationExpr(lib), &ev); evalErr == nil {
			evalResult = &ev
		}
	})
	if evalErr != nil {
		t.Fatal(evalErr)
	}
	return evalResult
}
