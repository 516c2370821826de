package count

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/cache/layer"
	"github.com/nixpushd/nixpushd/internal/cachetest"
)

// Every combination of capabilities: the wrapper has exactly the inner
// target's, forwards each call to it, and counts it.
func TestWrapKeepsCapabilities(t *testing.T) {
	ctx := context.Background()
	for mask := 0; mask < 64; mask++ {
		f := &cachetest.Recorder{}
		inner := cachetest.WithCaps(f, mask)
		if got := layer.Mask(inner); got != mask {
			t.Fatalf("fake %d has capabilities %d", mask, got)
		}
		w, c := Wrap(inner)
		if got := layer.Mask(w); got != mask {
			t.Errorf("inner capabilities %06b, wrapper's %06b", mask, got)
			continue
		}
		if w.String() != "fake://" {
			t.Errorf("String: %q", w.String())
		}
		want := []string{"Exists", "Put", "Get"}
		w.Exists(ctx, "k")
		w.Put(ctx, "k", strings.NewReader(""), 0, "")
		w.Get(ctx, "k")
		calls := int64(3)
		if l, ok := w.(cache.Lister); ok {
			l.List(ctx, "", func(cache.ObjectInfo) error { return nil })
			want, calls = append(want, "List"), calls+1
		}
		if l, ok := w.(cache.RootLister); ok {
			l.ListRoot(ctx, func(cache.ObjectInfo) error { return nil })
			want, calls = append(want, "ListRoot"), calls+1
		}
		if o, ok := w.(cache.Opener); ok {
			rc, err := o.Open(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
			want, calls = append(want, "Open"), calls+1
		}
		if d, ok := w.(cache.Deleter); ok {
			d.Delete(ctx, []string{"k"})
			want, calls = append(want, "Delete"), calls+1
		}
		if b, ok := w.(cache.Barrierer); ok {
			b.Barrier(ctx)
			want, calls = append(want, "Barrier"), calls+1
		}
		if l, ok := w.(cache.Local); ok {
			if !l.IsLocal() {
				t.Error("IsLocal not forwarded")
			}
			want = append(want, "IsLocal") // not a request
		}
		if !slices.Equal(f.Seen(), want) {
			t.Errorf("mask %06b: inner saw %v, want %v", mask, f.Seen(), want)
		}
		if got := c.Requests(); got != calls {
			t.Errorf("mask %06b: counted %d requests, want %d", mask, got, calls)
		}
	}
}

// A listing is one request per thousand keys listed, plus one; an error
// from the callback stops it, and what was listed still counts.
func TestListingCounts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ keys, want int }{{0, 1}, {1, 1}, {999, 1}, {1000, 2}, {2500, 3}, {20001, 21}} {
		f := &cachetest.Recorder{ListKeys: tc.keys}
		w, c := Wrap(cachetest.WithCaps(f, 3))
		seen := 0
		if err := w.(cache.Lister).List(ctx, "", func(cache.ObjectInfo) error { seen++; return nil }); err != nil {
			t.Fatal(err)
		}
		if seen != tc.keys || c.Requests() != int64(tc.want) {
			t.Errorf("List of %d keys: saw %d, counted %d, want %d", tc.keys, seen, c.Requests(), tc.want)
		}
		before := c.Requests()
		w.(cache.RootLister).ListRoot(ctx, func(cache.ObjectInfo) error { return nil })
		if got := c.Requests() - before; got != int64(tc.want) {
			t.Errorf("ListRoot of %d keys: counted %d, want %d", tc.keys, got, tc.want)
		}
	}
	f := &cachetest.Recorder{ListKeys: 5000}
	w, c := Wrap(cachetest.WithCaps(f, 1))
	stop := errors.New("stop")
	n := 0
	err := w.(cache.Lister).List(ctx, "", func(cache.ObjectInfo) error {
		if n++; n == 1500 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || c.Requests() != 2 {
		t.Errorf("stopped listing: err %v, %d requests, want stop and 2", err, c.Requests())
	}
}

// The real targets keep their capabilities through the wrapper, and
// their answers (a missing object is still ErrNotFound).
func TestWrapRealTargets(t *testing.T) {
	ctx := context.Background()
	dir, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, inner := range []cache.Target{dir, cachetest.NewMem()} {
		w, c := Wrap(inner)
		if layer.Mask(w) != layer.Mask(inner) {
			t.Errorf("%s: capabilities %06b, inner %06b", inner, layer.Mask(w), layer.Mask(inner))
		}
		if err := w.Put(ctx, "a.narinfo", strings.NewReader("x"), 1, cache.TypeNarInfo); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Get(ctx, "missing"); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("%s: Get of a missing key: %v", inner, err)
		}
		keys := 0
		w.(cache.Lister).List(ctx, "", func(cache.ObjectInfo) error { keys++; return nil })
		w.(cache.Deleter).Delete(ctx, []string{"a.narinfo"})
		if keys != 1 || c.Requests() != 4 {
			t.Errorf("%s: listed %d keys, %d requests; want 1 and 4", inner, keys, c.Requests())
		}
	}
	w, _ := Wrap(dir)
	if _, ok := w.(cache.Barrierer); !ok {
		t.Error("file:// lost its Barrier")
	}
	if l, ok := w.(cache.Local); !ok || !l.IsLocal() {
		t.Error("file:// is no longer local")
	}
	if w, _ := Wrap(cachetest.NewMem()); layer.Mask(w)&32 != 0 {
		t.Error("the wrapper of a remote target claims to be local")
	}
}
