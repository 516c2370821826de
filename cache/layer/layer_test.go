package layer_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/layer"
	"github.com/nixpushd/nixpushd/internal/cachetest"
)

// exercise calls every method t has and returns their names.
func exercise(t cache.Target) []string {
	ctx := context.Background()
	t.Exists(ctx, "k")
	t.Put(ctx, "k", strings.NewReader(""), 0, "")
	t.Get(ctx, "k")
	want := []string{"Exists", "Put", "Get"}
	if l, ok := t.(cache.Lister); ok {
		l.List(ctx, "", func(cache.ObjectInfo) error { return nil })
		want = append(want, "List")
	}
	if l, ok := t.(cache.RootLister); ok {
		l.ListRoot(ctx, func(cache.ObjectInfo) error { return nil })
		want = append(want, "ListRoot")
	}
	if o, ok := t.(cache.Opener); ok {
		if rc, err := o.Open(ctx, "k"); err == nil {
			rc.Close()
		}
		want = append(want, "Open")
	}
	if d, ok := t.(cache.Deleter); ok {
		d.Delete(ctx, []string{"k"})
		want = append(want, "Delete")
	}
	if b, ok := t.(cache.Barrierer); ok {
		b.Barrier(ctx)
		want = append(want, "Barrier")
	}
	if l, ok := t.(cache.Local); ok {
		l.IsLocal()
		want = append(want, "IsLocal")
	}
	return want
}

// Every combination: the wrapper has exactly the inner target's
// capabilities, and an Inner-embedding layer forwards each call to it.
func TestWrapKeepsCapabilities(t *testing.T) {
	for mask := 0; mask < 64; mask++ {
		r := &cachetest.Recorder{}
		inner := cachetest.WithCaps(r, mask)
		if got := layer.Mask(inner); got != mask {
			t.Fatalf("fake %06b has capabilities %06b", mask, got)
		}
		w := layer.Wrap(layer.Of(inner), struct{ layer.Inner }{layer.Of(inner)})
		if got := layer.Mask(w); got != mask {
			t.Errorf("inner capabilities %06b, wrapper's %06b", mask, got)
			continue
		}
		if w.String() != "fake://" {
			t.Errorf("String: %q", w.String())
		}
		want := exercise(w)
		if got := r.Seen(); !slices.Equal(got, want) {
			t.Errorf("mask %06b: inner saw %v, want %v", mask, got, want)
		}
	}
}

// Each capability is its documented bit: the bits are what
// cachetest.WithCaps and the other layers' tests build targets from.
func TestMaskBits(t *testing.T) {
	for i, name := range []string{"Lister", "RootLister", "Opener", "Deleter", "Barrierer", "Local"} {
		w := cachetest.WithCaps(&cachetest.Recorder{}, 1<<i)
		var ok bool
		switch name {
		case "Lister":
			_, ok = w.(cache.Lister)
		case "RootLister":
			_, ok = w.(cache.RootLister)
		case "Opener":
			_, ok = w.(cache.Opener)
		case "Deleter":
			_, ok = w.(cache.Deleter)
		case "Barrierer":
			_, ok = w.(cache.Barrierer)
		case "Local":
			_, ok = w.(cache.Local)
		}
		if !ok || layer.Mask(w) != 1<<i {
			t.Errorf("bit %d: has %s %v, mask %06b", i, name, ok, layer.Mask(w))
		}
	}
	if all := layer.Mask(&cachetest.Recorder{}); all != 63 {
		t.Errorf("a target with every capability has mask %06b", all)
	}
}
