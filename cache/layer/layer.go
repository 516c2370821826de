package layer

import (
	"context"
	"io"

	"github.com/nixpushd/nixpushd/cache"
)

// Layer is what a wrapper implements: cache.Target and every optional
// capability. Wrap calls only the methods the inner target has.
type Layer interface {
	cache.Target
	cache.Lister
	cache.RootLister
	cache.Opener
	cache.Deleter
	cache.Barrierer
	cache.Local
}

// Inner is a wrapped target with its capabilities found once (nil for
// those it lacks). Embedded in a layer, it forwards every method the
// layer does not override.
type Inner struct {
	cache.Target
	Lister     cache.Lister
	RootLister cache.RootLister
	Opener     cache.Opener
	Deleter    cache.Deleter
	Barrierer  cache.Barrierer
	Local      cache.Local
}

// Of finds t's capabilities.
func Of(t cache.Target) Inner {
	in := Inner{Target: t}
	in.Lister, _ = t.(cache.Lister)
	in.RootLister, _ = t.(cache.RootLister)
	in.Opener, _ = t.(cache.Opener)
	in.Deleter, _ = t.(cache.Deleter)
	in.Barrierer, _ = t.(cache.Barrierer)
	in.Local, _ = t.(cache.Local)
	return in
}

// Mask is the set of in's capabilities, one bit each in the order of
// Inner's fields: Lister 1, RootLister 2, Opener 4, Deleter 8,
// Barrierer 16, Local 32.
func (in Inner) Mask() int {
	m := 0
	for i, has := range []bool{in.Lister != nil, in.RootLister != nil, in.Opener != nil, in.Deleter != nil, in.Barrierer != nil, in.Local != nil} {
		if has {
			m |= 1 << i
		}
	}
	return m
}

// Mask is the capability mask a type assertion finds on t.
func Mask(t cache.Target) int { return Of(t).Mask() }

func (in Inner) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	return in.Lister.List(ctx, prefix, fn)
}

func (in Inner) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	return in.RootLister.ListRoot(ctx, fn)
}

func (in Inner) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return in.Opener.Open(ctx, key)
}

func (in Inner) Delete(ctx context.Context, keys []string) error {
	return in.Deleter.Delete(ctx, keys)
}

func (in Inner) Barrier(ctx context.Context) error { return in.Barrierer.Barrier(ctx) }

func (in Inner) IsLocal() bool { return in.Local.IsLocal() }

var _ Layer = Inner{}
