package s3

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/minio/minio-go/v7/pkg/signer"
	"github.com/nixpushd/nixpushd/cache"
)

// The examples of AWS's Signature V4 documentation for S3 (header form).
func TestSigV4AWSExamples(t *testing.T) {
	const ak, sk = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	at := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, method, path, payload string
		header                      map[string]string
		want                        string
	}{
		{"GET object", "GET", "/test.txt", emptyPayloadHash,
			map[string]string{"Range": "bytes=0-9"},
			"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"},
		{"PUT object", "PUT", "/test$file.text", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
			map[string]string{"Date": "Fri, 24 May 2013 00:00:00 GMT", "X-Amz-Storage-Class": "REDUCED_REDUNDANCY"},
			"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			u := &url.URL{Scheme: "https", Host: "examplebucket.s3.amazonaws.com", Path: path, RawPath: s3Escape(path)}
			req := &http.Request{Method: tc.method, URL: u, Header: http.Header{}}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			(&sigV4{region: "us-east-1"}).sign(req, ak, sk, "", tc.payload, at)
			if got := req.Header.Get("Authorization"); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// Our signatures are minio-go's, for the headers our requests carry,
// keys that need escaping, session tokens, and a derived key reused
// across requests and renewed when the day or the secret changes.
func TestSigV4MatchesMinio(t *testing.T) {
	sig := &sigV4{region: "eu-central-1"}
	for i, tc := range []struct {
		key, secret, token string
		at                 time.Time
	}{
		{"abc.narinfo", "secret1", "", time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)},
		{"nar/0a1b.nar.xz", "secret1", "", time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC)},
		{"nar/0a1b.nar.xz", "secret1", "", time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC)},
		{"ünï cödé+&=%41~!'()*", "secret2", "session/token+=", time.Date(2026, 12, 1, 0, 0, 2, 0, time.UTC)},
		{"tab\there/x", "secret2", "", time.Date(2026, 12, 1, 0, 0, 3, 0, time.UTC)},
	} {
		build := func() *http.Request {
			u := &url.URL{Scheme: "http", Host: "127.0.0.1:9000", Path: "/nix-cache/" + tc.key, RawPath: "/nix-cache/" + s3Escape(tc.key)}
			req := &http.Request{Method: "PUT", URL: u, Host: u.Host, Header: http.Header{}}
			req.Header.Set("Content-Type", cache.TypeNarInfo)
			req.Header.Set("Content-Md5", "1B2M2Y8AsgTpgAmY7PhCfg==")
			req.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
			req.Header.Set("X-Amz-Date", tc.at.Format("20060102T150405Z"))
			return req
		}
		theirs := build()
		if tc.token != "" {
			theirs.Header.Set("X-Amz-Security-Token", tc.token)
		}
		// minio-go signs with the clock; ours gets its X-Amz-Date.
		theirs = signer.SignV4(*theirs, "AK", tc.secret, tc.token, "eu-central-1")
		at, err := time.Parse("20060102T150405Z", theirs.Header.Get("X-Amz-Date"))
		if err != nil {
			t.Fatal(err)
		}
		ours := build()
		sig.sign(ours, "AK", tc.secret, tc.token, unsignedPayload, at)
		if o, m := ours.Header.Get("Authorization"), theirs.Header.Get("Authorization"); o != m {
			t.Errorf("%d %q:\nours     %s\nminio-go %s", i, tc.key, o, m)
		}
		// The path sent is the path signed.
		if got := ours.URL.EscapedPath(); got != "/nix-cache/"+s3Escape(tc.key) {
			t.Errorf("%q: sent as %s", tc.key, got)
		}
	}
}

// On real MinIO, puts, checks and reads of keys that need escaping go
// through our own requests alone: minio-go, pointed at nothing, is never
// needed. What was stored is what minio-go reads back.
func TestObjectsOnMinIO(t *testing.T) {
	m, c := minioCache(t)
	ctx := t.Context()
	s := c.open(t)
	if _, err := s.direct.objects(ctx); err != nil {
		t.Fatal(err)
	}
	dead, err := minio.New("127.0.0.1:1", &minio.Options{Creds: s.creds, Region: "us-east-1", MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.client = dead

	keys := []string{"nix-cache-info", "0a1b.narinfo", "nar/x.nar.xz", "a b+c=d&e", "ünïcödé", "pct%41", "tab\there", "q?x#y", "~tilde!*'()"}
	for i, k := range keys {
		body := bytes.Repeat([]byte{byte('a' + i)}, 100*i+1)
		if err := s.Put(ctx, k, bytes.NewReader(body), int64(len(body)), cache.TypeNarInfo); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
		if ok, err := s.Exists(ctx, k); !ok || err != nil {
			t.Errorf("exists %q: %v %v", k, ok, err)
		}
		got, err := s.Get(ctx, k)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("get %q: %d bytes, %v", k, len(got), err)
		}
		info, err := m.RootClient(t).StatObject(ctx, c.Bucket, k, minio.StatObjectOptions{})
		if err != nil || info.Size != int64(len(body)) || info.ContentType != cache.TypeNarInfo {
			t.Errorf("stored %q: %+v %v", k, info, err)
		}
	}
	if ok, err := s.Exists(ctx, "missing.narinfo"); ok || err != nil {
		t.Errorf("exists of a missing key: %v %v", ok, err)
	}
	if _, err := s.Get(ctx, "missing.narinfo"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("get of a missing key: %v, want cache.ErrNotFound", err)
	}
	if s.direct.off.Load() {
		t.Error("MinIO's answers made our requests step aside")
	}
}

// A server that refuses our requests but takes minio-go's gets minio-go's
// from then on; one that refuses both reports minio-go's error with its
// hint, and our requests are tried again next time.
func TestObjectsFallback(t *testing.T) {
	var ours, theirs atomic.Int64
	var allowMinio atomic.Bool
	s := s3Answering(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		if strings.Contains(r.UserAgent(), "minio-go") {
			theirs.Add(1)
			if allowMinio.Load() {
				w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
				w.Header().Set("ETag", `"d41d8cd98f00b204e9800998ecf8427e"`)
				return
			}
		} else {
			ours.Add(1)
		}
		w.WriteHeader(http.StatusForbidden)
		if r.Method != http.MethodHead {
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`)
		}
	})
	err := s.Put(t.Context(), "a.narinfo", strings.NewReader("x"), 1, cache.TypeNarInfo)
	if err == nil || !strings.Contains(err.Error(), "lack permission") || s.direct.off.Load() {
		t.Fatalf("both refused: %v (slow %v), want minio-go's AccessDenied with its hint, and our requests kept", err, s.direct.off.Load())
	}
	allowMinio.Store(true)
	for range 3 {
		if ok, err := s.Exists(t.Context(), "a.narinfo"); !ok || err != nil {
			t.Fatalf("through minio-go: %v %v", ok, err)
		}
	}
	if err := s.Put(t.Context(), "b.narinfo", strings.NewReader("x"), 1, cache.TypeNarInfo); err != nil {
		t.Fatal(err)
	}
	if ours.Load() != 2 || !s.direct.off.Load() {
		t.Errorf("%d of our requests, slow %v: want 2 (the refused put, then the refused check minio-go answered) and then none", ours.Load(), s.direct.off.Load())
	}
	if theirs.Load() != 5 {
		t.Errorf("%d minio-go requests, want 5", theirs.Load())
	}
}

// Keys are escaped the way minio-go escapes them, which is what S3 signs,
// and unescape to themselves.
func FuzzS3Escape(f *testing.F) {
	for _, k := range []string{"nix-cache-info", "nar/x.nar.xz", "a b+c=d&e", "ünïcödé", "pct%41", "q?x#y", "\x00\xff"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		got := s3Escape(key)
		// S3 keys are UTF-8; minio-go would send U+FFFD for a bad byte.
		if want := s3utils.EncodePath(key); utf8.ValidString(key) && got != want {
			t.Errorf("%q: %q, minio-go %q", key, got, want)
		}
		if back, err := url.PathUnescape(got); err != nil || back != key {
			t.Errorf("%q: escaped %q unescapes to %q, %v", key, got, back, err)
		}
	})
}

// A request that gets no answer (the server hangs up) is reported at
// once, with its hint: minio-go is not asked to wait for the same again.
func TestObjectsNetworkErrorAskedOnce(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "writer")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "writer-secret")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: ln.Addr().String(), Scheme: "http", Region: "us-east-1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { _, err := s.Exists(t.Context(), "a.narinfo"); return err },
		func() error { _, err := s.Get(t.Context(), "a.narinfo"); return err },
		func() error { return s.Put(t.Context(), "a.narinfo", strings.NewReader("x"), 1, cache.TypeNarInfo) },
	} {
		accepts.Store(0)
		err := op()
		if err == nil || !strings.Contains(err.Error(), "s3://nix-cache/a.narinfo") {
			t.Errorf("%v, want an error naming the object", err)
		}
		if n := accepts.Load(); n != 1 {
			t.Errorf("%d connections for one request that got no answer, want 1", n)
		}
	}
	if s.direct.off.Load() {
		t.Error("a network failure made our requests step aside")
	}
}

// A server failing with 5xx (SlowDown, InternalError) gets its error back
// for the retry policy's backoff: a transient error naming the object
// and the code, and no second request at once through minio-go.
func TestObjectsServerErrorIsTransient(t *testing.T) {
	var ours, theirs atomic.Int64
	s := s3Answering(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.UserAgent(), "minio-go") {
			theirs.Add(1)
		} else {
			ours.Add(1)
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		if r.Method != http.MethodHead {
			fmt.Fprint(w, `<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
		}
	})
	for name, op := range map[string]func() error{
		"put":  func() error { return s.Put(t.Context(), "a.narinfo", strings.NewReader("x"), 1, cache.TypeNarInfo) },
		"get":  func() error { _, err := s.Get(t.Context(), "a.narinfo"); return err },
		"head": func() error { _, err := s.Exists(t.Context(), "a.narinfo"); return err },
	} {
		ours.Store(0)
		err := op()
		if err == nil || cache.IsPermanent(err) || !strings.Contains(err.Error(), "s3://nix-cache/a.narinfo") {
			t.Errorf("%s: %v, want a transient error naming the object", name, err)
		}
		if name != "head" && !strings.Contains(err.Error(), "reduce your request rate") {
			t.Errorf("%s: %v, want the server's message", name, err)
		}
		if ours.Load() != 1 {
			t.Errorf("%s: %d requests of ours, want 1", name, ours.Load())
		}
	}
	if theirs.Load() != 0 || s.direct.off.Load() {
		t.Errorf("%d requests through minio-go (slow %v), want none", theirs.Load(), s.direct.off.Load())
	}
}
