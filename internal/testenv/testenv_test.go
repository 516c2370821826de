package testenv_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// srv is shared by the tests; nil when MinIO is not installed (outside CI).
var srv *testenv.MinIO

func TestMain(m *testing.M) {
	s, stop, err := testenv.StartMinIOMain()
	if err != nil {
		// Outside CI a missing MinIO only skips the tests that need it.
		if testenv.CI() || !testenv.IsNotInstalled(err) {
			fmt.Fprintf(os.Stderr, "starting MinIO: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "MinIO tests will skip: %v\n", err)
	} else {
		fmt.Fprintf(os.Stderr, "MinIO ready on %s in %v\n", s.Endpoint, s.StartTime)
	}
	srv = s
	code := m.Run()
	stop()
	os.Exit(code)
}

// plainHTTP does anonymous requests the way Nix does: no credentials, no
// keep-alive connections left behind.
var plainHTTP = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func httpDo(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := plainHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestBuildClosure(t *testing.T) {
	t.Parallel()
	testenv.RequireNix(t)
	began := time.Now()
	c := testenv.BuildClosure(t, testenv.ClosureOpts{ExtraLeaves: 2})
	t.Logf("BuildClosure (3 MiB big file, 2 extra leaves) took %v", time.Since(began))

	// Leaf: one of each NAR node type.
	checkMode := func(rel string, want os.FileMode) os.FileInfo {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(c.Leaf, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != want.Type() {
			t.Errorf("%s: type %v, want %v", rel, fi.Mode().Type(), want.Type())
		}
		return fi
	}
	checkMode("hello.txt", 0)
	if fi := checkMode("bin/hello", 0); fi.Mode()&0o100 == 0 {
		t.Errorf("bin/hello is not executable: %v", fi.Mode())
	}
	checkMode("link-to-hello", os.ModeSymlink)
	if target, _ := os.Readlink(filepath.Join(c.Leaf, "link-to-hello")); target != "hello.txt" {
		t.Errorf("link-to-hello -> %q", target)
	}
	if fi := checkMode("empty", 0); fi.Size() != 0 {
		t.Errorf("empty has %d bytes", fi.Size())
	}
	checkMode("emptydir", os.ModeDir)
	if ents, _ := os.ReadDir(filepath.Join(c.Leaf, "emptydir")); len(ents) != 0 {
		t.Errorf("emptydir has %d entries", len(ents))
	}
	if fi := checkMode("big.dat", 0); fi.Size() != 3<<20 {
		t.Errorf("big.dat has %d bytes, want %d", fi.Size(), 3<<20)
	}

	// mid refers to leaf, top to mid, itself and the extras.
	if b, _ := os.ReadFile(c.Mid); string(b) != c.Leaf+"\n" {
		t.Errorf("mid contains %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(c.Top, "self-ref")); string(b) != c.Top+"\n" {
		t.Errorf("top/self-ref contains %q", b)
	}
	refs := strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--references", c.Top)))
	want := append([]string{c.Top, c.Mid}, c.Extra...)
	slices.Sort(refs)
	slices.Sort(want)
	if !slices.Equal(refs, want) {
		t.Errorf("references of top = %q, want %q", refs, want)
	}
	if len(c.Extra) != 2 || len(c.All) != 5 {
		t.Fatalf("Extra %q, All %q", c.Extra, c.All)
	}
	if i, j, k := slices.Index(c.All, c.Leaf), slices.Index(c.All, c.Mid), slices.Index(c.All, c.Top); !(i < j && j < k) {
		t.Errorf("All is not dependencies-first: %q", c.All)
	}

	// A new seed each call means new paths each call.
	again := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	if again.Leaf == c.Leaf || again.Top == c.Top {
		t.Errorf("two closures share paths: %s %s", again.Leaf, again.Top)
	}
}

func TestNewCachePermissions(t *testing.T) {
	t.Parallel()
	testenv.RequireMinIO(t)
	began := time.Now()
	c := srv.NewCache(t, "")
	t.Logf("NewCache took %v", time.Since(began))

	// The pusher must write nix-cache-info: the bucket starts empty.
	if objs := c.Objects(t); len(objs) != 0 {
		t.Fatalf("new bucket is not empty: %v", objs)
	}
	// Anonymous misses must be 404: Nix reads 403 as an error, not as
	// "this cache does not have the path".
	for _, key := range []string{"nix-cache-info", "00000000000000000000000000000000.narinfo", "nar/x.nar.xz"} {
		if code, body := httpDo(t, "GET", c.HTTPURL+"/"+key, nil); code != http.StatusNotFound {
			t.Errorf("anonymous GET %s: %d, want 404\n%s", key, code, body)
		}
	}

	ctx := t.Context()
	w := c.Client(t)
	content := []byte("StorePath: /nix/store/x\n")
	if _, err := w.PutObject(ctx, c.Bucket, "probe.narinfo", bytes.NewReader(content), int64(len(content)),
		minio.PutObjectOptions{ContentType: "text/x-nix-narinfo"}); err != nil {
		t.Fatalf("writer PutObject: %v", err)
	}
	obj, err := w.GetObject(ctx, c.Bucket, "probe.narinfo", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("writer GetObject: %v", err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("writer GetObject: %q, %v", got, err)
	}
	var listed []string
	for o := range w.ListObjects(ctx, c.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("writer ListObjects: %v", o.Err)
		}
		listed = append(listed, o.Key)
	}
	if !slices.Equal(listed, []string{"probe.narinfo"}) {
		t.Errorf("writer ListObjects: %q", listed)
	}
	// Multipart uploads (big NARs) are allowed: 11 MiB in 5 MiB parts.
	big := bytes.Repeat([]byte("0123456789abcdef"), 11<<16)
	if _, err := w.PutObject(ctx, c.Bucket, "nar/big.nar", bytes.NewReader(big), int64(len(big)),
		minio.PutObjectOptions{PartSize: 5 << 20}); err != nil {
		t.Fatalf("writer multipart PutObject: %v", err)
	}
	if objs := c.Objects(t); objs["nar/big.nar"] != int64(len(big)) {
		t.Errorf("objects after multipart upload: %v", objs)
	}

	// No DeleteObject, no bucket creation.
	err = w.RemoveObject(ctx, c.Bucket, "probe.narinfo", minio.RemoveObjectOptions{})
	if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
		t.Errorf("writer RemoveObject: %v (code %q), want AccessDenied", err, code)
	}
	if !c.Has(t, "probe.narinfo") {
		t.Error("probe.narinfo was deleted")
	}
	err = w.MakeBucket(ctx, c.Bucket+"-other", minio.MakeBucketOptions{Region: testenv.Region})
	if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
		t.Errorf("writer MakeBucket: %v, want AccessDenied", err)
	}

	// Anonymous users may download, but not upload.
	if code, body := httpDo(t, "GET", c.HTTPURL+"/probe.narinfo", nil); code != http.StatusOK || !bytes.Equal(body, content) {
		t.Errorf("anonymous GET of an existing object: %d %q", code, body)
	}
	if code, _ := httpDo(t, "PUT", c.HTTPURL+"/anon.narinfo", []byte("x")); code != http.StatusForbidden {
		t.Errorf("anonymous PUT: %d, want 403", code)
	}
}

// TestCacheRoundTrip proves the harness can tell a good cache from a bad
// one: a cache made by Nix itself and signed with key A is accepted when
// A is trusted, and refused when only B (same key name) is trusted, when
// nothing is trusted, when unsigned, and without nix-cache-info.
func TestCacheRoundTrip(t *testing.T) {
	t.Parallel()
	testenv.RequireNix(t)
	testenv.RequireMinIO(t)

	clo := testenv.BuildClosure(t, testenv.ClosureOpts{ExtraLeaves: 1})
	secret, pub := testenv.GenerateKey(t, "", "cache.test-1")
	_, otherPub := testenv.GenerateKey(t, "", "cache.test-1")
	if pub == otherPub || !strings.HasPrefix(pub, "cache.test-1:") {
		t.Fatalf("keys: %q %q", pub, otherPub)
	}

	// A signed cache, made by real Nix.
	signed := t.TempDir()
	began := time.Now()
	testenv.Nix(t, "nix", "copy", "--to", "file://"+signed+"?compression=xz", clo.Top)
	testenv.Nix(t, "nix", "store", "sign", "--store", "file://"+signed, "--key-file", secret, "--recursive", clo.Top)
	t.Logf("nix copy --to file:// + nix store sign took %v", time.Since(began))
	good := srv.NewCache(t, "")
	keys := good.UploadDir(t, signed)
	if objs := good.Objects(t); len(objs) != len(keys) || len(keys) != 1+2*len(clo.All) {
		t.Fatalf("uploaded %q, bucket has %v", keys, objs)
	}

	began = time.Now()
	store := testenv.NewClientStore(t)
	if out, err := testenv.CopyFromInto(t, store, good.HTTPURL, []string{pub}, clo.Top); err != nil {
		t.Fatalf("copy with the right key failed: %v\n%s", err, out)
	}
	t.Logf("CopyFrom took %v", time.Since(began))
	if err := testenv.VerifyStore(t, store, []string{pub}, clo.All...); err != nil {
		t.Errorf("verify with the right key: %v", err)
	}
	if err := testenv.VerifyStore(t, store, []string{otherPub}, clo.All...); err == nil {
		t.Error("verify with the wrong key succeeded")
	}
	b, err := os.ReadFile(filepath.Join(store, clo.Leaf, "big.dat"))
	if orig, _ := os.ReadFile(filepath.Join(clo.Leaf, "big.dat")); err != nil || !bytes.Equal(b, orig) {
		t.Errorf("copied big.dat differs (%v)", err)
	}
	if out, err := testenv.Substitute(t, good.HTTPURL, []string{pub}, clo.Top); err != nil {
		t.Errorf("substitute with the right key failed: %v\n%s", err, out)
	}
	if err := testenv.VerifyCache(t, good.HTTPURL, []string{pub}, clo.All...); err != nil {
		t.Errorf("verify cache with the right key: %v", err)
	}

	// The same cache must be refused without its key.
	if out, err := testenv.CopyFrom(t, good.HTTPURL, []string{otherPub}, clo.Top); err == nil {
		t.Errorf("copy with the wrong key succeeded:\n%s", out)
	} else if !strings.Contains(out, "lacks a valid signature") {
		t.Errorf("copy with the wrong key failed for another reason: %v\n%s", err, out)
	}
	if out, err := testenv.CopyFrom(t, good.HTTPURL, nil, clo.Top); err == nil {
		t.Errorf("copy trusting no key succeeded:\n%s", out)
	}
	if out, err := testenv.Substitute(t, good.HTTPURL, []string{otherPub}, clo.Top); err == nil {
		t.Errorf("substitute with the wrong key succeeded:\n%s", out)
	} else if !strings.Contains(out, "is not signed by any of the keys") {
		t.Errorf("substitute with the wrong key failed for another reason: %v\n%s", err, out)
	}
	if err := testenv.VerifyCache(t, good.HTTPURL, []string{otherPub}, clo.All...); err == nil {
		t.Error("verify cache with the wrong key succeeded")
	} else if !strings.Contains(err.Error(), "is untrusted") {
		t.Errorf("verify cache with the wrong key failed for another reason: %v", err)
	}

	// An unsigned cache is refused even with the key trusted.
	unsigned := t.TempDir()
	testenv.Nix(t, "nix", "copy", "--to", "file://"+unsigned+"?compression=xz", clo.Mid)
	bad := srv.NewCache(t, "")
	bad.UploadDir(t, unsigned)
	if out, err := testenv.CopyFrom(t, bad.HTTPURL, []string{pub}, clo.Mid); err == nil {
		t.Errorf("copy from an unsigned cache succeeded:\n%s", out)
	} else if !strings.Contains(out, "lacks a valid signature") {
		t.Errorf("copy from an unsigned cache failed for another reason: %v\n%s", err, out)
	}

	// Without nix-cache-info Nix does not consider it a cache at all.
	if err := os.Remove(filepath.Join(signed, "nix-cache-info")); err != nil {
		t.Fatal(err)
	}
	noInfo := srv.NewCache(t, "")
	noInfo.UploadDir(t, signed)
	if out, err := testenv.CopyFrom(t, noInfo.HTTPURL, []string{pub}, clo.Top); err == nil {
		t.Errorf("copy from a bucket without nix-cache-info succeeded:\n%s", out)
	} else if !strings.Contains(out, "does not appear to be a binary cache") {
		t.Errorf("copy without nix-cache-info failed for another reason: %v\n%s", err, out)
	}
}

func TestStopRestart(t *testing.T) {
	t.Parallel()
	testenv.RequireMinIO(t)
	m := testenv.StartMinIO(t) // its own server: stopping the shared one would hurt other tests
	t.Logf("StartMinIO took %v", m.StartTime)
	c := m.NewCache(t, "restart-cache")
	if c.HTTPURL != m.URL+"/restart-cache" ||
		c.S3URL != "s3://restart-cache?endpoint="+m.Endpoint+"&region=us-east-1&scheme=http" {
		t.Errorf("URLs: %s %s", c.HTTPURL, c.S3URL)
	}
	content := []byte("kept across restarts")
	if _, err := c.Client(t).PutObject(t.Context(), c.Bucket, "kept", bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if m.Running() {
		t.Error("Running after Stop")
	}
	if resp, err := plainHTTP.Get(c.HTTPURL + "/kept"); err == nil {
		resp.Body.Close()
		t.Fatalf("server still answers after Stop: %s", resp.Status)
	}
	endpoint := m.Endpoint
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %v", m.StartTime)
	if m.Endpoint != endpoint || !m.Running() {
		t.Fatalf("restarted on %s (was %s), running %v", m.Endpoint, endpoint, m.Running())
	}
	// Data, users, policies and the anonymous policy all survive.
	if got := c.Get(t, "kept"); !bytes.Equal(got, content) {
		t.Errorf("after restart: %q", got)
	}
	if code, body := httpDo(t, "GET", c.HTTPURL+"/kept", nil); code != http.StatusOK || !bytes.Equal(body, content) {
		t.Errorf("anonymous GET after restart: %d %q", code, body)
	}
	err := c.Client(t).RemoveObject(t.Context(), c.Bucket, "kept", minio.RemoveObjectOptions{})
	if minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("writer RemoveObject after restart: %v", err)
	}

	// A frozen server accepts connections but never answers.
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	impatient := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := impatient.Get(c.HTTPURL + "/kept"); err == nil {
		resp.Body.Close()
		t.Errorf("frozen server answered: %s", resp.Status)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if code, _ := httpDo(t, "GET", c.HTTPURL+"/kept", nil); code != http.StatusOK {
		t.Errorf("GET after thaw: %d", code)
	}

	// Killed abruptly, it comes back too.
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := c.Get(t, "kept"); !bytes.Equal(got, content) {
		t.Errorf("after kill and restart: %q", got)
	}
}

// recordTB catches Skipf/Fatalf so the CI rule can be tested.
type recordTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestMissingToolRule(t *testing.T) {
	// Not parallel: it changes the environment.
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	t.Setenv("GOPATH", empty)
	t.Setenv("MINIO_BIN", "")
	t.Setenv("MC_BIN", "")

	for _, tc := range []struct {
		ci, minioBin string
		skip, fail   bool
	}{
		{ci: "", skip: true},
		{ci: "false", skip: true},
		{ci: "true", fail: true},
		{ci: "", minioBin: "/nonexistent/minio", fail: true}, // a wrong override is never a skip
	} {
		t.Setenv("CI", tc.ci)
		t.Setenv("MINIO_BIN", tc.minioBin)
		r := &recordTB{TB: t}
		testenv.RequireMinIO(r)
		if r.skipped != tc.skip || r.failed != tc.fail {
			t.Errorf("CI=%q MINIO_BIN=%q: skipped %v failed %v (%s)", tc.ci, tc.minioBin, r.skipped, r.failed, r.msg)
		}
		if testenv.HaveMinIO() {
			t.Errorf("HaveMinIO with an empty PATH")
		}
	}

	t.Setenv("CI", "")
	t.Setenv("NIX_BIN_DIR", empty)
	r := &recordTB{TB: t}
	testenv.RequireNix(r)
	if !r.failed {
		t.Errorf("RequireNix with a NIX_BIN_DIR lacking nix: skipped %v failed %v", r.skipped, r.failed)
	}
}
