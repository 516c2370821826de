package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// A closure with a path whose name starts with '.' (Nix accepts it) is
// pushed whole, and real Nix copies it back.
func TestPushDotName(t *testing.T) {
	testenv.RequireNix(t)
	rnd := make([]byte, 16)
	rand.Read(rnd)
	file := filepath.Join(t.TempDir(), ".dotname")
	if err := os.WriteFile(file, []byte("dot "+hex.EncodeToString(rnd)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dot := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", file)))
	top := testenv.BuildExpr(t, `{ dot }: derivation {
  name = "nixpushd-test-dotref";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-e" "-c" "echo ${builtins.storePath dot} > $out" ];
}`, "--argstr", "dot", dot)[0]
	secret, public := testenv.GenerateKey(t, t.TempDir(), "dot-1")
	cacheDir := t.TempDir()
	out, err := nixpushd(t, nil, "push", "--to", "file://"+cacheDir, "--secret-key-file", secret, top)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if !strings.Contains(out, "2 uploaded") {
		t.Errorf("want both paths uploaded:\n%s", out)
	}
	if out, err := testenv.CopyFrom(t, "file://"+cacheDir, []string{public}, top); err != nil {
		t.Fatalf("nix copy of a closure with a dot name: %v\n%s", err, out)
	}
}
