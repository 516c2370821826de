package nixosmodule

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// vendorHashLine is the one `vendorHash = "sha256-…";` line of package.nix.
var vendorHashLine = regexp.MustCompile(`(?m)^(\s*vendorHash\s*=\s*")(sha256-[A-Za-z0-9+/]{43}=)(";)`)

const packageFile = "nixos-module/package.nix"

// TestVendorHash recomputes what buildGoModule will check: the NAR hash
// of `go mod vendor` for the committed go.mod and go.sum, and compares it
// with package.nix's vendorHash, so that a go.sum change cannot break
// `nix-build` unnoticed.
//
// To fix a mismatch, either edit the line the failure prints, or run
//
//	NIXPUSHD_UPDATE_VENDORHASH=1 go test ./nixos-module -run TestVendorHash
//
// which rewrites it.
func TestVendorHash(t *testing.T) {
	nix := nixTool(t, "nix")
	root := repoRoot(t)
	pkgPath := filepath.Join(root, packageFile)
	src, err := os.ReadFile(pkgPath)
	if err != nil {
		t.Fatal(err)
	}
	m := vendorHashLine.FindAllSubmatchIndex(src, -1)
	if len(m) != 1 {
		t.Fatalf("%s: want exactly one line vendorHash = \"sha256-…\"; (found %d)", packageFile, len(m))
	}
	declared := string(src[m[0][4]:m[0][5]])

	// What buildGoModule's goModules derivation runs, in the same
	// conditions: no workspace, modules only from go.mod/go.sum, no
	// -mod=vendor from the caller's GOFLAGS. -o keeps the checkout clean.
	vendor := filepath.Join(t.TempDir(), "vendor")
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GO111MODULE=on", "GOTOOLCHAIN=local")
	if out, err := runCmd(t, 3*time.Minute, root, env, goTool(), "mod", "vendor", "-o", vendor); err != nil {
		t.Fatalf("go mod vendor failed, so nix-build would fail too (go.mod not tidy? run `go mod tidy`): %v\n%s", err, out)
	}
	out, err := runCmd(t, 2*time.Minute, root, nixEnv(t), nix, "--extra-experimental-features", "nix-command",
		"hash", "path", "--sri", "--type", "sha256", vendor)
	if err != nil {
		t.Fatal(err)
	}
	actual := strings.TrimSpace(string(out))
	if !strings.HasPrefix(actual, "sha256-") {
		t.Fatalf("nix hash path printed %q, want an SRI hash", actual)
	}
	if actual == declared {
		t.Logf("vendorHash %s matches go.mod/go.sum", actual)
		return
	}
	if os.Getenv("NIXPUSHD_UPDATE_VENDORHASH") != "" {
		fixed := vendorHashLine.ReplaceAll(src, []byte("${1}"+actual+"${3}"))
		if err := os.WriteFile(pkgPath, fixed, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s: vendorHash %s -> %s", packageFile, declared, actual)
		return
	}
	t.Fatalf("%s: vendorHash is %s, but go.mod/go.sum vendor to %s: nix-build would fail.\n"+
		"Fix: in %s, set\n    vendorHash = \"%s\";\n"+
		"or run: NIXPUSHD_UPDATE_VENDORHASH=1 go test ./nixos-module -run TestVendorHash",
		packageFile, declared, actual, packageFile, actual)
}
