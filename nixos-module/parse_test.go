package nixosmodule

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every .nix file in the repository parses (nix-instantiate --parse):
// default.nix, flake.nix, the module, its test harness, and any other.
func TestNixFilesParse(t *testing.T) {
	inst := nixTool(t, "nix-instantiate")
	root := repoRoot(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != root && (strings.HasPrefix(name, ".") || name == "vendor" || name == "node_modules") {
			return filepath.SkipDir
		}
		// nix-build's result symlinks point into the store.
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if !d.IsDir() && strings.HasSuffix(name, ".nix") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default.nix", "flake.nix", "nixos-module/default.nix", "nixos-module/package.nix"} {
		if _, err := os.Stat(filepath.Join(root, want)); err != nil {
			t.Errorf("%s is missing", want)
		}
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		if _, err := runCmd(t, 30*time.Second, root, nixEnv(t), inst, "--parse", f); err != nil {
			t.Errorf("%s does not parse: %v", rel, err)
		}
	}
	t.Logf("parsed %d .nix files", len(files))
}

// The package's source (source.nix) keeps only .go files, go.mod, go.sum
// and testdata/: a //go:embed of anything else would build here and fail
// in nix-build. This needs no Nix, so it always runs.
func TestNoEmbeddedFilesOutsideSource(t *testing.T) {
	root := repoRoot(t)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "vendor" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".go") || strings.HasSuffix(d.Name(), "_test.go") {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(text), "\n") {
			if strings.HasPrefix(line, "//go:embed ") {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d embeds files (%s): make nixos-module/source.nix keep them, then relax this test", rel, i+1, strings.TrimPrefix(line, "//go:embed "))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
