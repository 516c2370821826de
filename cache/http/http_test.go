package http

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache"
)

func TestReadOnlyCache(t *testing.T) {
	var methods []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		methods = append(methods, r.Method+" "+r.URL.Path)
		switch r.URL.Path {
		case "/bucket/nix-cache-info":
			io.WriteString(w, "StoreDir: /nix/store\n")
		case "/bucket/nar/a.nar.xz":
			io.WriteString(w, "nar bytes")
		case "/bucket/denied.narinfo":
			w.WriteHeader(http.StatusForbidden)
		case "/bucket/flaky.narinfo":
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/bucket", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if b, err := c.Get(ctx, "nix-cache-info"); err != nil || string(b) != "StoreDir: /nix/store\n" {
		t.Errorf("Get: %q %v", b, err)
	}
	if ok, err := c.Exists(ctx, "nar/a.nar.xz"); !ok || err != nil {
		t.Errorf("Exists: %v %v", ok, err)
	}
	if ok, err := c.Exists(ctx, "x.narinfo"); ok || err != nil {
		t.Errorf("Exists of a missing key: %v %v", ok, err)
	}
	if _, err := c.Get(ctx, "x.narinfo"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get of a missing key: %v", err)
	}
	rc, err := c.Open(ctx, "nar/a.nar.xz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "nar bytes" {
		t.Errorf("Open: %q", b)
	}
	if _, err := c.Get(ctx, "denied.narinfo"); !cache.IsConfig(err) {
		t.Errorf("403: want a configuration error, got %v", err)
	}
	if _, err := c.Get(ctx, "flaky.narinfo"); err == nil || cache.IsPermanent(err) {
		t.Errorf("502: want a transient error, got %v", err)
	}
	err = c.Put(ctx, "k", strings.NewReader(""), 0, "")
	if !errors.Is(err, ErrReadOnly) || !cache.IsPermanent(err) {
		t.Errorf("Put: %v", err)
	}
	if err := c.Delete(ctx, []string{"k"}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Delete: %v", err)
	}
	if methods[1] != "HEAD /bucket/nar/a.nar.xz" {
		t.Errorf("Exists sent %s, want HEAD", methods[1])
	}
	if c.String() != srv.URL+"/bucket" {
		t.Errorf("String %s", c)
	}
	for _, bad := range []string{"ftp://x/y", "http://", "http://h/p?x=1"} {
		if _, err := New(bad, nil); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}
