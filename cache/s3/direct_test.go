package s3

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/nixpushd/nixpushd/cache"
)

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

// escapeKey is s3utils.EncodePath, for every key.
func FuzzEscapeKey(f *testing.F) {
	for _, k := range []string{"", "abc.narinfo", "nar/1abc.nar.xz", "log/x-y.drv", "debuginfo/0123abcd", "a b", "ü", "a+b", "a%2Fb", "~._-/", "realisations/sha256:abc!out.doi"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if got, want := escapeKey(key), s3utils.EncodePath(key); got != want {
			t.Errorf("escapeKey(%q) = %q, EncodePath = %q", key, got, want)
		}
	})
}
