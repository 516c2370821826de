package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

var caArgs = []string{"--option", "extra-experimental-features", "ca-derivations"}

// caExpr is two content-addressed derivations (ca-derivations), the top
// one depending on the other: its realisation has a dependency.
func caExpr(t *testing.T) string {
	seed := fmt.Sprintf("%d-%s", time.Now().UnixNano(), t.Name())
	return fmt.Sprintf(`let mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" script]; seed = %q; PATH = "/usr/bin:/bin"; __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; };
  dep = mk "ca-dep" "echo dep > $out";
in mk "ca-top" "mkdir $out; echo ${dep} > $out/ref"
`, seed)
}

func readRealisations(t *testing.T, dir string) map[string]*nar.Realisation {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "realisations", "*.doi"))
	out := map[string]*nar.Realisation{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := nar.ParseRealisation(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = r
	}
	return out
}

// push of a content-addressed build writes every realisation `nix copy`
// writes, equal but for our signature, which verifies; a client with
// ca-derivations then substitutes the build by its derivation (it cannot
// without the realisations: max-jobs 0 forbids building).
func TestPushRealisations(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := m.NewCache(t, "doi")
	secret, public := testenv.GenerateKey(t, t.TempDir(), "doi-1")
	pub, err := nar.ParsePublicKey(public)
	if err != nil {
		t.Fatal(err)
	}
	exprFile := filepath.Join(t.TempDir(), "default.nix")
	if err := os.WriteFile(exprFile, []byte(caExpr(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := strings.TrimSpace(string(testenv.Nix(t, "nix-build", append([]string{"--no-out-link", exprFile}, caArgs...)...)))

	nixDir := t.TempDir()
	testenv.Nix(t, "nix", append([]string{"copy", "--to", "file://" + nixDir, "-f", exprFile}, caArgs...)...)
	want := readRealisations(t, nixDir)
	if len(want) != 2 {
		t.Fatalf("nix copy wrote %d realisations, want 2 (one per CA derivation)", len(want))
	}

	if o, err := nixpushd(t, writerEnv(c), "push", "--quiet", "--to", c.S3URL, "--secret-key-file", secret, out); err != nil {
		t.Fatalf("push: %v\n%s", err, o)
	}
	oursDir := t.TempDir()
	for key, size := range c.Objects(t) {
		if strings.HasPrefix(key, nar.RealisationPrefix) {
			os.MkdirAll(filepath.Join(oursDir, "realisations"), 0o755)
			b := c.Get(t, key)
			if int64(len(b)) != size {
				t.Fatalf("%s: %d bytes, listed %d", key, len(b), size)
			}
			os.WriteFile(filepath.Join(oursDir, key), b, 0o644)
		}
	}
	ours := readRealisations(t, oursDir)
	for name, w := range want {
		g, ok := ours[name]
		if !ok {
			t.Errorf("%s: written by nix copy, not by nixpushd (ours: %v)", name, keys(ours))
			continue
		}
		if len(g.Signatures) != 1 || !pub.Verify(g.Fingerprint(), g.Signatures[0]) {
			t.Errorf("%s: signatures %q, want one by %s over %s", name, g.Signatures, public, g.Fingerprint())
		}
		g.Signatures, w.Signatures = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n ours %+v\n nix  %+v", name, g, w)
		}
	}

	client := testenv.NewClientStore(t)
	args := append([]string{"--no-out-link", exprFile, "--store", client, "--max-jobs", "0",
		"--option", "substituters", c.HTTPURL, "--option", "trusted-public-keys", public, "--option", "require-sigs", "true"}, caArgs...)
	got, err := testenv.RunNix(t, "nix-build", args...)
	if err != nil {
		t.Fatalf("a ca-derivations client could not substitute the build by its derivation: %v", err)
	}
	if strings.TrimSpace(string(got)) != out {
		t.Errorf("client built %q, want %s", got, out)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
