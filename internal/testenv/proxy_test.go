package testenv_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

func TestProxyClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ method, target, want string }{
		{"HEAD", "/b/abc.narinfo", testenv.KindHeadObject},
		{"HEAD", "/b/nar/x.nar.zst", testenv.KindHeadObject},
		{"GET", "/b/abc.narinfo", testenv.KindGetObject},
		{"GET", "/b/locks/shared-x.json", testenv.KindGetObject},
		{"PUT", "/b/abc.narinfo", testenv.KindPutObject},
		{"PUT", "/b/nar/x?partNumber=2&uploadId=u", testenv.KindPutPart},
		{"POST", "/b/nar/x?uploads", testenv.KindMultipartInit},
		{"POST", "/b/nar/x?uploadId=u", testenv.KindMultipartComplete},
		{"DELETE", "/b/nar/x?uploadId=u", testenv.KindMultipartAbort},
		{"DELETE", "/b/abc.narinfo", testenv.KindDeleteObject},
		{"POST", "/b/?delete", testenv.KindMultiDelete},
		{"POST", "/b?delete=", testenv.KindMultiDelete},
		{"GET", "/b/?list-type=2&prefix=locks%2F&fetch-owner=true", testenv.KindList},
		{"GET", "/b?prefix=nar%2F", testenv.KindList},
		{"GET", "/b/", testenv.KindList},
		{"GET", "/b/?location=", testenv.KindOther},
		{"HEAD", "/b/", testenv.KindOther},
		{"GET", "/", testenv.KindOther},
		{"GET", "/minio/health/ready", testenv.KindGetObject}, // path-style: bucket "minio"
	} {
		u, err := url.Parse(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		if got := testenv.Classify(tc.method, u); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.target, got, tc.want)
		}
	}
}

// TestProxyPassThrough checks, against a plain HTTP backend, that requests
// arrive unchanged (Host, query, headers, body), that answers come back
// unchanged, and that injected failures never reach the backend.
func TestProxyPassThrough(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, host, uri, auth string
		body                    []byte
	}
	var mu sync.Mutex
	var got []seen
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.Host, r.RequestURI, r.Header.Get("Authorization"), b})
		mu.Unlock()
		w.Header().Set("ETag", `"backend"`)
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write([]byte("answer:" + r.Method))
		}
	}))
	defer backend.Close()
	p := testenv.StartProxy(t, strings.TrimPrefix(backend.URL, "http://"))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	do := func(method, target string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, p.URL()+target, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "signed-host.example:9000"
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	part := bytes.Repeat([]byte("p"), 1<<20)
	if code, body := do("PUT", "/bkt/nar/x?partNumber=1&uploadId=u1", part); code != 200 || body != "answer:PUT" {
		t.Fatalf("PUT part: %d %q", code, body)
	}
	p.FailNext(testenv.KindPutPart, 2, http.StatusInternalServerError)
	p.FailNext(testenv.KindPutPart, 1, http.StatusServiceUnavailable)
	for i, want := range []int{500, 500, 503, 200} {
		code, body := do("PUT", "/bkt/nar/x?partNumber=2&uploadId=u1", part)
		if code != want {
			t.Errorf("PUT part after FailNext, attempt %d: %d, want %d", i, code, want)
		}
		if want != 200 && !strings.Contains(body, "<Code>") {
			t.Errorf("injected failure without an S3 error body: %q", body)
		}
	}
	p.FailNext("HEAD", 1, http.StatusNotFound)
	if code, _ := do("HEAD", "/bkt/a.narinfo", nil); code != 404 {
		t.Errorf("HEAD after FailNext(HEAD): %d", code)
	}
	if code, _ := do("HEAD", "/bkt/a.narinfo", nil); code != 200 {
		t.Errorf("second HEAD: %d", code)
	}
	do("GET", "/bkt/?list-type=2&prefix=", nil)
	do("POST", "/bkt/?delete", []byte("<Delete/>"))

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 5 {
		t.Fatalf("backend saw %d requests, want 5 (injected failures must not reach it): %+v", len(got), got)
	}
	for _, s := range got {
		if s.host != "signed-host.example:9000" || s.auth != "AWS4-HMAC-SHA256 Credential=x" {
			t.Errorf("%s %s arrived with Host %q, Authorization %q", s.method, s.uri, s.host, s.auth)
		}
	}
	if got[0].uri != "/bkt/nar/x?partNumber=1&uploadId=u1" || !bytes.Equal(got[0].body, part) {
		t.Errorf("first request arrived as %s with %d bytes", got[0].uri, len(got[0].body))
	}
	if got[4].uri != "/bkt/?delete" || string(got[4].body) != "<Delete/>" {
		t.Errorf("multi-delete arrived as %s %q", got[4].uri, got[4].body)
	}

	want := map[string]int64{
		testenv.KindPutPart: 5, testenv.KindHeadObject: 2, testenv.KindList: 1, testenv.KindMultiDelete: 1,
		"PUT": 5, "HEAD": 2, "GET": 1, "POST": 1,
		testenv.KindTotal: 9, testenv.KindInjected: 4,
		"put-part:nar": 5, "head-object:narinfo": 2,
		"status:200": 5, "status:500": 2, "status:503": 1, "status:404": 1,
	}
	c := p.Counts()
	for k, v := range want {
		if c[k] != v {
			t.Errorf("Counts()[%q] = %d, want %d (all: %v)", k, c[k], v, c)
		}
	}
	p.Reset()
	if c := p.Counts(); len(c) != 0 {
		t.Errorf("after Reset: %v", c)
	}
}

// TestProxyMinIO goes through the proxy to a real MinIO with minio-go:
// signatures (over the Host the client used) must verify, every S3 call
// is counted as its kind, and a multipart upload survives injected part
// failures when the client retries, and fails when it does not.
func TestProxyMinIO(t *testing.T) {
	t.Parallel()
	testenv.RequireMinIO(t)
	c := srv.NewCache(t, "")
	p := testenv.StartProxy(t, srv.Endpoint)
	newClient := func(ak, sk string, retries int) *minio.Client {
		t.Helper()
		tr := &http.Transport{Proxy: nil}
		t.Cleanup(tr.CloseIdleConnections)
		cl, err := minio.New(p.Endpoint(), &minio.Options{
			Creds: credentials.NewStaticV4(ak, sk, ""), Region: testenv.Region, Transport: tr, MaxRetries: retries,
		})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	w := newClient(c.AccessKey, c.SecretKey, 1)
	ctx := t.Context()

	small := []byte("StorePath: /nix/store/x\n")
	if _, err := w.PutObject(ctx, c.Bucket, "a.narinfo", bytes.NewReader(small), int64(len(small)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("PutObject through the proxy: %v", err)
	}
	if _, err := w.StatObject(ctx, c.Bucket, "a.narinfo", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("StatObject: %v", err)
	}
	if _, err := w.StatObject(ctx, c.Bucket, "missing.narinfo", minio.StatObjectOptions{}); minio.ToErrorResponse(err).StatusCode != 404 {
		t.Fatalf("StatObject of a missing key: %v", err)
	}
	obj, err := w.GetObject(ctx, c.Bucket, "a.narinfo", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(b, small) {
		t.Fatalf("GetObject: %q %v", b, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 11<<16) // 11 MiB: 3 parts of 5 MiB
	put := func(cl *minio.Client, key string) error {
		_, err := cl.PutObject(ctx, c.Bucket, key, bytes.NewReader(big), int64(len(big)),
			minio.PutObjectOptions{PartSize: 5 << 20, NumThreads: 1})
		return err
	}
	if err := put(w, "nar/big.nar"); err != nil {
		t.Fatalf("multipart PutObject: %v", err)
	}
	n := 0
	for o := range w.ListObjects(ctx, c.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("listed %d objects, want 2", n)
	}
	cnt := p.Counts()
	for k, v := range map[string]int64{
		testenv.KindPutObject: 1, testenv.KindHeadObject: 2, testenv.KindGetObject: 1,
		testenv.KindMultipartInit: 1, testenv.KindPutPart: 3, testenv.KindMultipartComplete: 1,
		testenv.KindList: 1, testenv.KindInjected: 0,
	} {
		if cnt[k] != v {
			t.Errorf("%s: %d requests, want %d (all: %v)", k, cnt[k], v, cnt)
		}
	}
	if cnt["head-object:narinfo"] != 2 || cnt["put-part:nar"] != 3 || cnt["status:404"] != 1 || cnt["status:200"] != 9 {
		t.Errorf("by key class and status: %v", cnt)
	}
	if cnt[testenv.KindTotal] != 10 || cnt[testenv.KindOther] != 0 {
		t.Errorf("total %d, other %d, want 10 and 0 (all: %v)", cnt[testenv.KindTotal], cnt[testenv.KindOther], cnt)
	}

	// A part failing once, without retries: the upload fails with the
	// injected status, and nothing is stored.
	p.Reset()
	p.FailNext(testenv.KindPutPart, 1, http.StatusInternalServerError)
	err = put(w, "nar/fails.nar")
	if resp := minio.ToErrorResponse(err); resp.StatusCode != 500 || resp.Code != "InternalError" {
		t.Errorf("upload with a failing part: %v (status %d, code %q), want the injected 500", err, resp.StatusCode, resp.Code)
	}
	if c.Has(t, "nar/fails.nar") {
		t.Error("nar/fails.nar exists after its upload failed")
	}
	if cnt := p.Counts(); cnt[testenv.KindInjected] != 1 {
		t.Errorf("injected %d failures, want 1: %v", cnt[testenv.KindInjected], cnt)
	}

	// Three parts failing in a row with a retrying client: it gets there.
	p.Reset()
	p.FailNext(testenv.KindPutPart, 3, http.StatusInternalServerError)
	if err := put(newClient(c.AccessKey, c.SecretKey, 5), "nar/retried.nar"); err != nil {
		t.Fatalf("retrying upload after 3 injected part failures: %v", err)
	}
	if got := c.Objects(t)["nar/retried.nar"]; got != int64(len(big)) {
		t.Errorf("nar/retried.nar has %d bytes, want %d", got, len(big))
	}
	if cnt := p.Counts(); cnt[testenv.KindInjected] != 3 || cnt[testenv.KindPutPart] != 6 {
		t.Errorf("injected %d, part PUTs %d, want 3 and 6: %v", cnt[testenv.KindInjected], cnt[testenv.KindPutPart], cnt)
	}

	// Deleting with root credentials: one multi-delete request.
	p.Reset()
	root := newClient(srv.RootUser, srv.RootPassword, 1)
	ch := make(chan minio.ObjectInfo, 3)
	for _, k := range []string{"a.narinfo", "nar/big.nar", "nar/retried.nar"} {
		ch <- minio.ObjectInfo{Key: k}
	}
	close(ch)
	for r := range root.RemoveObjectsWithResult(ctx, c.Bucket, ch, minio.RemoveObjectsOptions{}) {
		if r.Err != nil {
			t.Errorf("remove %s: %v", r.ObjectName, r.Err)
		}
	}
	if err := root.RemoveObject(ctx, c.Bucket, "nix-cache-info", minio.RemoveObjectOptions{}); err != nil {
		t.Errorf("RemoveObject of a missing key: %v", err)
	}
	if cnt := p.Counts(); cnt[testenv.KindMultiDelete] != 1 || cnt[testenv.KindDeleteObject] != 1 {
		t.Errorf("deletes: %v", cnt)
	}
	if objs := c.Objects(t); len(objs) != 0 {
		t.Errorf("left after deleting: %v", objs)
	}
}
