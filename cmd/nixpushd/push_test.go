package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// The round trip: a fresh closure (a few-MB file, an executable, a
// symlink, a reference chain) pushed to MinIO as the seeds' least-privilege
// writer, then substituted by real Nix over HTTP with the key trusted, and
// refused with a wrong key.
func TestPushS3RoundTrip(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: 4, ExtraLeaves: 2})
	cache := m.NewCache(t, "roundtrip")
	dir := t.TempDir()
	secret, public := testenv.GenerateKey(t, dir, "s3.test-1")
	_, wrongPublic := testenv.GenerateKey(t, t.TempDir(), "s3.test-1")

	// Push through a ./result-style symlink, as users do.
	result := filepath.Join(dir, "result")
	if err := os.Symlink(cl.Top, result); err != nil {
		t.Fatal(err)
	}
	out, err := nixpushd(t, writerEnv(cache), "push", "--to", cache.S3URL, "--secret-key-file", secret, result)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	if !strings.Contains(out, "uploaded") || strings.Contains(out, "unsigned") {
		t.Errorf("unexpected output:\n%s", out)
	}
	assertValidCache(t, cache.Objects(t), func(k string) []byte { return cache.Get(t, k) }, cl.All)

	if out, err := testenv.CopyFrom(t, cache.HTTPURL, []string{public}, cl.Top); err != nil {
		t.Fatalf("nix copy from the cache with the right key failed: %v\n%s", err, out)
	}
	if err := testenv.VerifyCache(t, cache.HTTPURL, []string{public}, cl.All...); err != nil {
		t.Errorf("nix store verify --sigs-needed 1: %v", err)
	}
	if out, err := testenv.CopyFrom(t, cache.HTTPURL, []string{wrongPublic}, cl.Top); err == nil {
		t.Fatalf("nix copy with a wrong key succeeded:\n%s", out)
	}

	// A second push finds everything and writes nothing.
	before := cache.Objects(t)
	out, err = nixpushd(t, writerEnv(cache), "push", "--to", cache.S3URL, "--secret-key-file", secret, cl.Top)
	if err != nil {
		t.Fatalf("re-push: %v\n%s", err, out)
	}
	if want := regexp.MustCompile(`0 uploaded, ` + strconv.Itoa(len(cl.All)) + ` already cached`); !want.MatchString(out) {
		t.Errorf("re-push summary: want %q in\n%s", want, out)
	}
	if after := cache.Objects(t); len(after) != len(before) {
		t.Errorf("re-push changed the bucket: %d -> %d objects\n%v\n%v\n%s", len(before), len(after), before, after, out)
	}
}

// The same with a file:// target, zstd, and credentials from nowhere (none
// are needed).
func TestPushFileRoundTrip(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: 2})
	dir := t.TempDir()
	secret, public := testenv.GenerateKey(t, dir, "file.test-1")
	for _, tc := range []struct {
		name, comp string
		env        []string
	}{
		{"xz", "xz", nil},
		{"xz-pure-go", "xz", []string{"NIXPUSHD_XZ=ulikunitz"}},
		{"zstd", "zstd", nil},
		{"none", "none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cacheDir := t.TempDir()
			out, err := nixpushd(t, tc.env, "push", "--to", "file://"+cacheDir, "--compression", tc.comp, "--secret-key-file", secret, cl.Top)
			if err != nil {
				t.Fatalf("push: %v\n%s", err, out)
			}
			if tc.name == "xz-pure-go" && !strings.Contains(out, "xz (ulikunitz)") {
				t.Errorf("NIXPUSHD_XZ=ulikunitz did not select the pure-Go encoder:\n%s", out)
			}
			objects := map[string]int64{}
			filepath.Walk(cacheDir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					rel, _ := filepath.Rel(cacheDir, p)
					objects[rel] = fi.Size()
				}
				return nil
			})
			assertValidCache(t, objects, func(k string) []byte {
				b, _ := os.ReadFile(filepath.Join(cacheDir, k))
				return b
			}, cl.All)
			if out, err := testenv.CopyFrom(t, "file://"+cacheDir, []string{public}, cl.Top); err != nil {
				t.Fatalf("nix copy --from file://: %v\n%s", err, out)
			}
		})
	}
}

// assertValidCache checks the invariants directly on the objects: a
// nix-cache-info, one narinfo per path, each narinfo's NAR present with the
// declared size, and the NAR decompressing to exactly `nix-store --dump`.
func assertValidCache(t *testing.T, objects map[string]int64, get func(string) []byte, paths []string) {
	t.Helper()
	if _, ok := objects["nix-cache-info"]; !ok {
		t.Error("no nix-cache-info")
	}
	for _, p := range paths {
		sp, err := nar.ParseStorePath(p)
		if err != nil {
			t.Fatal(err)
		}
		b := get(sp.Hash + ".narinfo")
		if b == nil {
			t.Errorf("no narinfo for %s", p)
			continue
		}
		ni, err := nar.ParseNarInfo(b)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		size, ok := objects[ni.URL]
		if !ok {
			t.Errorf("%s: narinfo points at missing %s", p, ni.URL)
			continue
		}
		if size != ni.FileSize {
			t.Errorf("%s: FileSize %d, object has %d bytes", p, ni.FileSize, size)
		}
		for _, r := range ni.References {
			if objects[strings.SplitN(r, "-", 2)[0]+".narinfo"] == 0 {
				t.Errorf("%s: reference %s has no narinfo", p, r)
			}
		}
		if ni.Compression == "xz" {
			cmd := exec.Command("xz", "-d", "-c")
			cmd.Stdin = bytes.NewReader(get(ni.URL))
			got, err := cmd.Output()
			if err != nil {
				t.Errorf("%s: xz -d: %v", ni.URL, err)
				continue
			}
			want := testenv.Nix(t, "nix-store", "--dump", p)
			if !bytes.Equal(got, want) {
				t.Errorf("%s: decompressed NAR differs from nix-store --dump", p)
			}
		}
	}
}
