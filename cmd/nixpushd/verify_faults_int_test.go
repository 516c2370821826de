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
	"os"
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

// Bad input in the bucket: a narinfo of garbage, a truncated NAR, a NAR
// whose bytes do not hash to FileHash, an orphan NAR and a .narinfo whose
// name is no store hash. verify names each object with its fix (the
// harmless ones as notes, exit status 0 for them alone); repair fixes
// what clients trip over from the local store, and loses nothing.
func TestFaultBadInput(t *testing.T) {
	c := newFaultCache(t)
	garbage, short, wrong := c.cl.Extra[0], c.cl.Extra[1], c.cl.Leaf
	garbageKey := narinfoKey(t, garbage)
	c.put(t, garbageKey, []byte("this is not a narinfo\n\x00\x01"), "text/x-nix-narinfo")
	shortURL := c.narinfo(t, short).URL
	b := c.Get(t, shortURL)
	c.put(t, shortURL, b[:len(b)/2], "application/x-nix-nar")
	wrongURL := c.narinfo(t, wrong).URL
	b = c.Get(t, wrongURL)
	flipped := bytes.Clone(b)
	flipped[len(flipped)/2] ^= 0xff
	c.put(t, wrongURL, flipped, "application/x-nix-nar")
	orphan := "nar/0000000000000000000000000000000000000000000000000000.nar.xz"
	c.put(t, orphan, []byte("orphan"), "application/x-nix-nar")
	stray := "not-a-store-hash.narinfo"
	c.put(t, stray, []byte("StorePath: /nix/store/x\n"), "text/x-nix-narinfo")

	r := c.run(t)
	if r.code == 0 {
		t.Errorf("verify of a damaged cache exited 0")
	}
	wantLine(t, "verify", r.stdout, garbageKey, ": narinfo: unparsable", "verify --repair writes it again", "delete it and push the path again")
	wantLine(t, "verify", r.stdout, short, "nar-size", shortURL, "truncated")
	wantLine(t, "verify", r.stderr, "note: "+orphan, "orphan-nar", "gc deletes it")
	wantLine(t, "verify", r.stderr, "note: "+stray, "stray-narinfo", "delete it")
	// The referrer of the garbage narinfo is fine as far as a listing
	// tells: its reference has a narinfo (a bad one, reported itself).
	r = c.run(t, "--full")
	wantLine(t, "verify --full", r.stdout, wrong, "file-hash", wrongURL)

	before := c.Objects(t)
	r = c.run(t, "--full", "--repair", "--secret-key-file", c.secret)
	if r.code != 0 {
		t.Fatalf("repair: %v", r)
	}
	wantLine(t, "repair", r.stderr, "repair: "+garbage, "new signed narinfo", "narinfo")
	wantLine(t, "repair", r.stderr, "repair: "+short, "upload its NAR file "+shortURL)
	wantLine(t, "repair", r.stderr, "repair: "+wrong, "upload its NAR file "+wrongURL)
	after := c.Objects(t)
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("repair lost %s", k)
		}
	}
	r = c.run(t, "--full")
	if r.code != 0 || r.stdout != "" {
		t.Errorf("verify --full after repair: %v", r)
	}
	wantLine(t, "verify after repair", r.stderr, "notes: 1 orphan-nar, 1 stray-narinfo", "no problems")
	c.mustSubstitute(t)
}

// Read-only access: verify of a bucket anyone may download from works
// with no credentials at all through --root (walking the closure), and
// says in one line that listing needs s3:ListBucket; an http:// URL is
// read as Nix reads it; a user who may list but not read is told so once.
func TestFaultReadOnlyAccess(t *testing.T) {
	c := newFaultCache(t)
	anon := []string{"AWS_EC2_METADATA_DISABLED=true"}
	verify := func(env []string, args ...string) lcResult {
		t.Helper()
		r := lcRun(t, env, append([]string{"verify", "--trusted-public-keys", c.public, "--state-dir", c.stateDir}, args...)...)
		t.Logf("verify %s: %v", strings.Join(args, " "), r)
		return r
	}
	// MinIO's "download" grants anonymous listing too (and verify works
	// anonymously then, see below); a policy of s3:GetObject only, as
	// many public caches have, does not.
	m := c.MinIO
	getOnly := t.TempDir() + "/get-only.json"
	if err := os.WriteFile(getOnly, []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::`+c.Bucket+`/*"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := verify(anon, "--to", c.S3URL); r.code != 0 || !strings.Contains(r.stderr, "no problems") {
		t.Errorf("anonymous verify of a bucket anyone may list: %v", r)
	}
	m.MC(t, "anonymous", "set-json", getOnly, testenv.MCAlias+"/"+c.Bucket)

	r := verify(anon, "--to", c.S3URL)
	if r.code == 0 || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("anonymous verify that cannot list: want one line and a non-zero exit: %v", r)
	}
	wantLine(t, "anonymous listing", r.stderr, "anonymous access", "s3:ListBucket", "verify --root PATH")
	r = lcRun(t, anon, "gc", "--dry-run", "--to", c.S3URL, "--state-dir", c.stateDir)
	if r.code == 0 {
		t.Errorf("anonymous gc --dry-run listed a bucket whose policy grants no listing: %v", r)
	}
	wantLine(t, "anonymous gc --dry-run", r.stderr, "s3:ListBucket")
	if strings.Contains(r.stderr, "no S3 credentials") {
		t.Errorf("gc --dry-run asked for credentials: %v", r)
	}
	r = verify(anon, "--to", c.S3URL, "--root", c.cl.Top)
	if r.code != 0 || r.stdout != "" {
		t.Errorf("anonymous verify --root: %v", r)
	}
	wantLine(t, "anonymous verify --root", r.stderr, "closure of 1 root", "5 narinfos", "no problems")
	// Writing still needs credentials.
	r = verify(anon, "--to", c.S3URL, "--repair", c.cl.Top)
	if r.code == 0 || !strings.Contains(r.stderr, "no S3 credentials") {
		t.Errorf("anonymous verify --repair: %v", r)
	}

	r = verify(nil, "--to", c.HTTPURL)
	if r.code == 0 {
		t.Errorf("verify of an http URL without roots exited 0")
	}
	wantLine(t, "http without roots", r.stderr, "cannot be listed", "--root")
	r = verify(nil, "--to", c.HTTPURL, c.cl.Top)
	if r.code != 0 || r.stdout != "" {
		t.Errorf("verify http:// ROOT: %v", r)
	}
	wantLine(t, "http", r.stderr, c.HTTPURL, "closure of 1 root", "no problems")
	gone := c.narinfo(t, c.cl.Mid).URL
	c.remove(t, gone)
	r = verify(nil, "--to", c.HTTPURL, "--full", c.cl.Top)
	if r.code == 0 {
		t.Errorf("verify http:// of a damaged closure exited 0")
	}
	wantLine(t, "http damaged", r.stdout, c.cl.Mid, "nar-missing", gone)
	r = lcRun(t, nil, "push", "--to", c.HTTPURL, c.cl.Top)
	if r.code == 0 || !strings.Contains(r.stderr, "can only be read") {
		t.Errorf("push to http://: %v", r)
	}

	// Repair from a walk: the writer, with --root, restores the NAR.
	r = c.run(t, "--repair", "--secret-key-file", c.secret, "--root", c.cl.Top)
	if r.code != 0 {
		t.Errorf("repair of a walked closure: %v", r)
	}
	wantLine(t, "repair of a walked closure", r.stderr, "repair: "+c.cl.Mid, "upload its NAR file "+gone)
	if r = verify(nil, "--to", c.HTTPURL, "--full", c.cl.Top); r.code != 0 {
		t.Errorf("verify http:// after repair: %v", r)
	}
	c.mustSubstitute(t)

	// A user whose policy allows listing but not reading.
	user, secret := "nixlist-"+strings.ToLower(c.Bucket[len(c.Bucket)-8:]), "listonlysecret1234"
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::` + c.Bucket + `"]}]}`
	file := t.TempDir() + "/listonly.json"
	if err := os.WriteFile(file, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	m.MC(t, "admin", "user", "add", testenv.MCAlias, user, secret)
	m.MC(t, "admin", "policy", "create", testenv.MCAlias, c.Bucket+"-list", file)
	m.MC(t, "admin", "policy", "attach", testenv.MCAlias, c.Bucket+"-list", "--user", user)
	m.MC(t, "anonymous", "set", "none", testenv.MCAlias+"/"+c.Bucket)
	r = verify([]string{"AWS_ACCESS_KEY_ID=" + user, "AWS_SECRET_ACCESS_KEY=" + secret}, "--to", c.S3URL)
	if r.code == 0 || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("verify as a list-only user: want one line and a non-zero exit: %v", r)
	}
	wantLine(t, "list-only user", r.stderr, "can be listed but not read", "s3:GetObject")
}
