package main

// A fault-and-bad-input suite for verify and verify --repair, against the
// shared MinIO with real Nix: each case damages a signed cache, checks
// that verify names the object and the fix with a non-zero exit, that
// repair never leaves a narinfo weaker than it was (and refuses, changing
// nothing, when it would have to), and, where the cache should be good
// again, that a real Nix client substitutes from it.

import (
	"bytes"
	"maps"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// faultCache is a signed cache holding a small fresh closure.
type faultCache struct {
	*lcCache
	cl       testenv.Closure
	stateDir string // empty: no default key to find
}

func newFaultCache(t *testing.T, pushArgs ...string) *faultCache {
	t.Helper()
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := &faultCache{lcCache: lcNewCache(t, m), stateDir: t.TempDir()}
	c.cl = testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 2})
	c.push(t, pushArgs, c.cl.Top)
	return c
}

func (c *faultCache) put(t *testing.T, key string, b []byte, ctype string) {
	t.Helper()
	root := c.MinIO.RootClient(t)
	if _, err := root.PutObject(t.Context(), c.Bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{ContentType: ctype}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func (c *faultCache) remove(t *testing.T, key string) {
	t.Helper()
	root := c.MinIO.RootClient(t)
	if err := root.RemoveObject(t.Context(), c.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("remove %s: %v", key, err)
	}
}

// snapshot is every object's bytes, to prove that nothing changed.
func (c *faultCache) snapshot(t *testing.T) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for k := range c.Objects(t) {
		snap[k] = string(c.Get(t, k))
	}
	return snap
}

// run runs verify as the writer with the cache's trusted key, the fault
// cache's state dir, and args.
func (c *faultCache) run(t *testing.T, args ...string) lcResult {
	t.Helper()
	r := lcRun(t, c.writer(), append([]string{"verify", "--to", c.S3URL, "--trusted-public-keys", c.public, "--state-dir", c.stateDir}, args...)...)
	t.Logf("verify %s: %v", strings.Join(args, " "), r)
	return r
}

func (c *faultCache) mustSubstitute(t *testing.T) {
	t.Helper()
	if out, err := testenv.Substitute(t, c.HTTPURL, []string{c.public}, c.cl.Top); err != nil {
		t.Errorf("Nix cannot substitute: %v\n%s", err, out)
	}
}

// flipSig corrupts one character of p's signature by the cache's key.
func (c *faultCache) flipSig(t *testing.T, p string) {
	t.Helper()
	ni := string(c.Get(t, narinfoKey(t, p)))
	at := strings.Index(ni, "lifecycle.test-1:")
	if at < 0 {
		t.Fatalf("%s's narinfo is not signed:\n%s", p, ni)
	}
	i := at + len("lifecycle.test-1:") + 10
	flipped := byte('A')
	if ni[i] == 'A' {
		flipped = 'B'
	}
	c.put(t, narinfoKey(t, p), []byte(ni[:i]+string(flipped)+ni[i+1:]), "text/x-nix-narinfo")
}

func wantLine(t *testing.T, what, out string, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("%s: no line with all of %q in\n%s", what, parts, out)
}

// Repair without a key refuses a rewrite of a signed narinfo, names the
// path and how to give the key, exits non-zero and changes nothing, not
// even the NAR it could restore alone; --dry-run lists the plan and
// changes nothing; with the key, the missing NAR comes back under the
// narinfo's own URL (narinfo byte for byte as it was) and the bad
// signature is replaced by a good one.
func TestFaultRepairNeverWeakens(t *testing.T) {
	c := newFaultCache(t)
	gone := c.cl.Extra[0]
	goneNI := string(c.Get(t, narinfoKey(t, gone)))
	goneURL := c.narinfo(t, gone).URL
	c.remove(t, goneURL)
	c.flipSig(t, c.cl.Top)

	r := c.run(t)
	if r.code == 0 {
		t.Errorf("verify of a damaged cache exited 0")
	}
	wantLine(t, "verify", r.stdout, gone, "nar-missing", goneURL)
	wantLine(t, "verify", r.stdout, c.cl.Top, "signature", "no valid signature")

	before := c.snapshot(t)
	r = c.run(t, "--repair")
	if r.code == 0 {
		t.Errorf("repair without a key of a signed narinfo exited 0")
	}
	wantLine(t, "repair without a key", r.stderr, "refused: "+c.cl.Top, "signature")
	wantLine(t, "repair without a key", r.stderr, "--secret-key-file", "nothing was changed")
	if after := c.snapshot(t); !maps.Equal(before, after) {
		t.Errorf("repair without a key changed the cache")
	}

	r = c.run(t, "--repair", "--dry-run", "--secret-key-file", c.secret)
	if r.code != 0 {
		t.Errorf("repair --dry-run: %v", r)
	}
	wantLine(t, "dry run", r.stderr, "would repair: "+gone, "upload its NAR file "+goneURL)
	wantLine(t, "dry run", r.stderr, "would repair: "+c.cl.Top, "new signed narinfo")
	if after := c.snapshot(t); !maps.Equal(before, after) {
		t.Errorf("repair --dry-run changed the cache")
	}

	// A key that the clients do not trust is refused too.
	_, otherPublic := testenv.GenerateKey(t, t.TempDir(), "other.test-1")
	r = lcRun(t, c.writer(), "verify", "--to", c.S3URL, "--trusted-public-keys", otherPublic, "--state-dir", c.stateDir, "--repair", "--secret-key-file", c.secret)
	if r.code == 0 || !strings.Contains(r.stderr, "not among --trusted-public-keys") {
		t.Errorf("repair with an untrusted key: %v", r)
	}
	if after := c.snapshot(t); !maps.Equal(before, after) {
		t.Errorf("repair with an untrusted key changed the cache")
	}

	r = c.run(t, "--repair", "--secret-key-file", c.secret)
	if r.code != 0 {
		t.Fatalf("repair with the key: %v", r)
	}
	wantLine(t, "repair", r.stderr, "repaired:", "1 NAR file restored")
	if got := string(c.Get(t, narinfoKey(t, gone))); got != goneNI {
		t.Errorf("the NAR-only repair rewrote the narinfo:\n%s\nwas\n%s", got, goneNI)
	}
	c.assertClean(t, "after repair")
	c.mustSubstitute(t)
}

// A NAR compressed with settings repair does not use cannot be restored
// byte for byte: repair falls back to rewriting NAR and narinfo, which
// without the key it refuses.
func TestFaultRepairFallsBackToRewrite(t *testing.T) {
	c := newFaultCache(t, "--compression", "zstd", "--compression-level", "19")
	gone := c.cl.Extra[1]
	url := c.narinfo(t, gone).URL
	c.remove(t, url)
	before := c.snapshot(t)
	r := c.run(t, "--repair")
	if r.code == 0 {
		t.Errorf("repair without a key exited 0")
	}
	wantLine(t, "repair without a key", r.stderr, "refused: "+gone, "nar-missing", "signed by lifecycle.test-1")
	if after := c.snapshot(t); !maps.Equal(before, after) {
		t.Errorf("repair without a key changed the cache")
	}
	r = c.run(t, "--repair", "--secret-key-file", c.secret)
	if r.code != 0 {
		t.Fatalf("repair with the key: %v", r)
	}
	wantLine(t, "repair", r.stderr, "repair: "+gone, "new signed narinfo", "not the narinfo's FileHash")
	ni := c.narinfo(t, gone)
	if ni.URL == url || !c.Has(t, ni.URL) {
		t.Errorf("rewritten narinfo names %s (old %s)", ni.URL, url)
	}
	pk, err := nar.ParsePublicKey(c.public)
	if err != nil {
		t.Fatal(err)
	}
	if ni.Verify([]*nar.PublicKey{pk}) != 1 {
		t.Errorf("rewritten narinfo not signed by the cache's key: %v", ni.Sigs)
	}
	c.assertClean(t, "after repair")
	c.mustSubstitute(t)
}
