package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// A path altered after registration is refused with an error naming it,
// nothing of it is uploaded, and the other paths still go up.
func TestPushCorruptPath(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 1})
	victim := cl.Extra[0]
	tamper(t, victim)

	cacheDir := t.TempDir()
	out, err := nixpushd(t, nil, "push", "--to", "file://"+cacheDir, victim, cl.Mid)
	if err == nil {
		t.Fatalf("push of a corrupt path succeeded:\n%s", out)
	}
	if !strings.Contains(out, victim) || !strings.Contains(out, "NAR hash mismatch") || !strings.Contains(out, "nix-store --repair-path") {
		t.Errorf("error does not name the path, the cause and the fix:\n%s", out)
	}
	sp, _ := nar.ParseStorePath(victim)
	if _, err := os.Stat(filepath.Join(cacheDir, sp.Hash+".narinfo")); err == nil {
		t.Error("narinfo written for the corrupt path")
	}
	// No NAR file made from the tampered bytes either.
	nars, _ := filepath.Glob(filepath.Join(cacheDir, "nar", "*"))
	if len(nars) != 2 { // mid and leaf
		t.Errorf("nar/ has %d files, want 2 (mid, leaf): %v", len(nars), nars)
	}
	mid, _ := nar.ParseStorePath(cl.Mid)
	if _, err := os.Stat(filepath.Join(cacheDir, mid.Hash+".narinfo")); err != nil {
		t.Errorf("the healthy path was not uploaded: %v", err)
	}
}

// Mistakes on the command line get one clear line and a non-zero exit.
func TestPushBadInput(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"missing key file", nil, []string{"push", "--to", "file://" + dir, "--secret-key-file", dir + "/nope.key", cl.Leaf}, []string{dir + "/nope.key", "nix --extra-experimental-features nix-command key generate-secret"}},
		{"not a store path", nil, []string{"push", "--to", "file://" + dir, dir}, []string{"not in /nix/store"}},
		{"no such path", nil, []string{"push", "--to", "file://" + dir, "/nix/store/00000000000000000000000000000000-gone"}, []string{"00000000000000000000000000000000-gone"}},
		{"no paths", nil, []string{"push"}, []string{"at least one store path"}},
		{"bad url", nil, []string{"push", "--to", "http://x", cl.Leaf}, []string{"s3://BUCKET"}},
		{"nix copy setting in url", nil, []string{"push", "--to", "s3://nix-cache?compression=xz", cl.Leaf}, []string{"--compression"}},
		{"bad compression", nil, []string{"push", "--compression", "bzip2", cl.Leaf}, []string{"xz, zstd or none"}},
		{"no credentials", nil, []string{"push", "--to", "s3://nix-cache?endpoint=127.0.0.1:1&scheme=http", cl.Leaf}, []string{"no S3 credentials", "AWS_ACCESS_KEY_ID"}},
		{"unreachable endpoint", []string{"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y"}, []string{"push", "--to", "s3://nix-cache?endpoint=127.0.0.1:1&scheme=http", cl.Leaf}, []string{"127.0.0.1:1", "connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := nixpushd(t, tc.env, tc.args...)
			if err == nil {
				t.Fatalf("succeeded:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Errorf("crashed:\n%s", out)
			}
		})
	}
}

// Credentials from ~/.aws/credentials with ?profile=, as the seeds set up.
func TestPushProfile(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	cache := m.NewCache(t, "profile")
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".aws"), 0o700)
	os.WriteFile(filepath.Join(home, ".aws", "credentials"), []byte(
		"[default]\naws_access_key_id=wrong\naws_secret_access_key=wrong\n\n[nixbuilder]\naws_access_key_id="+cache.AccessKey+"\naws_secret_access_key="+cache.SecretKey+"\n"), 0o600)
	url := cache.S3URL + "&profile=nixbuilder"
	out, err := nixpushd(t, []string{"HOME=" + home}, "push", "--state-dir", t.TempDir(), "--to", url, cl.Top)
	if err != nil {
		t.Fatalf("push with profile: %v\n%s", err, out)
	}
	if !strings.Contains(out, "unsigned") {
		t.Errorf("no warning about pushing unsigned paths:\n%s", out)
	}
	if strings.Count(out, "unsigned") != 1 {
		t.Errorf("the unsigned warning should appear once:\n%s", out)
	}
	if strings.Contains(out, cache.SecretKey) {
		t.Error("output leaks the secret key")
	}
	// The default profile holds wrong keys: a clear access error naming the fix.
	out, err = nixpushd(t, []string{"HOME=" + home}, "push", "--to", cache.S3URL, cl.Top)
	if err == nil || !strings.Contains(out, "access key or secret is wrong") {
		t.Errorf("wrong credentials: %v\n%s", err, out)
	}
}

// tamper appends to a file of store path p (p itself if it is a file) and
// restores it at cleanup. The store is read-only to builds, not to root.
func tamper(t *testing.T, p string) {
	t.Helper()
	target := p
	if files, _ := filepath.Glob(p + "/*"); len(files) > 0 {
		target = files[0]
		os.Chmod(p, 0o755)
	}
	orig, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(target, 0o644)
	if err := os.WriteFile(target, append(orig, "tampered"...), 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Chmod(target, 0o644)
		os.WriteFile(target, orig, 0o444)
		if target != p {
			os.Chmod(p, 0o555)
		}
	})
}
