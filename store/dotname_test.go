package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// dotRefExpr builds a file holding the dot path, so the output references
// it. builtins.storePath gives the string the context that makes the dot
// path an input Nix scans for.
const dotRefExpr = `{ dot }:
derivation {
  name = "nixpushd-test-dotref";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-e" "-c" ''
    printf '%s\n' ${builtins.storePath dot} > $out
  '' ];
  PATH = "/usr/bin:/bin";
}
`

// Real Nix: a closure with a store path whose name starts with '.' (as
// `nix-store --add .dotname` makes) is readable and its paths parse.
func TestClosureWithDotName(t *testing.T) {
	testenv.RequireNix(t)
	rnd := make([]byte, 16)
	rand.Read(rnd)
	file := filepath.Join(t.TempDir(), ".dotname")
	// Random content: a path no earlier run registered.
	if err := os.WriteFile(file, []byte("nixpushd dot-name test "+hex.EncodeToString(rnd)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dot := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", file)))
	if !strings.HasSuffix(dot, "-.dotname") {
		t.Fatalf("nix-store --add %s = %q, want a path named .dotname", file, dot)
	}
	sp, err := nar.ParseStorePath(dot)
	if err != nil {
		t.Fatalf("ParseStorePath(%q): %v", dot, err)
	}
	if sp.Name != ".dotname" {
		t.Errorf("ParseStorePath(%q).Name = %q", dot, sp.Name)
	}
	if got, err := ToStorePath(dot); err != nil || got != dot {
		t.Errorf("ToStorePath(%q) = %q, %v", dot, got, err)
	}

	outs := testenv.BuildExpr(t, dotRefExpr, "--argstr", "dot", dot)
	if len(outs) != 1 {
		t.Fatalf("nix-build returned %q, want one path", outs)
	}
	top := outs[0]

	ctx := context.Background()
	auto, err := Open(DefaultDB)
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	db, err := OpenDB(DefaultDB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, s := range map[string]Store{"auto": auto, "db": db, "cli": NewCLI()} {
		infos, err := s.Closure(ctx, []string{top})
		if err != nil {
			t.Errorf("%s: Closure(%s): %v", name, top, err)
			continue
		}
		var paths []string
		for _, pi := range infos {
			paths = append(paths, pi.Path)
			if _, err := nar.ParseStorePath(pi.Path); err != nil {
				t.Errorf("%s: closure path: %v", name, err)
			}
			for _, r := range pi.References {
				if _, err := nar.ParseStorePath(r); err != nil {
					t.Errorf("%s: reference of %s: %v", name, pi.Path, err)
				}
			}
		}
		// Dependencies come first.
		if want := []string{dot, top}; !slices.Equal(paths, want) {
			t.Errorf("%s: Closure(%s) = %q, want %q", name, top, paths, want)
			continue
		}
		if !slices.Contains(infos[1].References, dot) {
			t.Errorf("%s: %s references %q, want %s among them", name, top, infos[1].References, dot)
		}
	}
}
