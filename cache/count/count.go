package count

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/layer"
)

// Counter sums the requests sent through the targets Wrap made with it.
// It is safe for concurrent use.
type Counter struct{ n atomic.Int64 }

// Requests returns the number of requests counted so far.
func (c *Counter) Requests() int64 { return c.n.Load() }

func (c *Counter) add(n int64) { c.n.Add(n) }

// ListRequests is the request count of a listing of keys keys: one per
// thousand keys (S3's page size), plus one.
func ListRequests(keys int64) int64 { return keys/1000 + 1 }

// Wrap returns t counted: a Target with exactly t's optional
// capabilities, whose calls go to t and are counted in the Counter.
func Wrap(t cache.Target) (cache.Target, *Counter) {
	c := &Counter{}
	in := layer.Of(t)
	return layer.Wrap(in, &counting{in, c}), c
}

// counting is the layer: every request method counts, then forwards.
type counting struct {
	layer.Inner
	c *Counter
}

func (w counting) Exists(ctx context.Context, key string) (bool, error) {
	w.c.add(1)
	return w.Inner.Exists(ctx, key)
}

func (w counting) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	w.c.add(1)
	return w.Inner.Put(ctx, key, body, size, contentType)
}

func (w counting) Get(ctx context.Context, key string) ([]byte, error) {
	w.c.add(1)
	return w.Inner.Get(ctx, key)
}

// countKeys wraps a listing's callback to count the keys it is given.
func countKeys(fn func(cache.ObjectInfo) error) (func(cache.ObjectInfo) error, *atomic.Int64) {
	var n atomic.Int64
	return func(o cache.ObjectInfo) error {
		n.Add(1)
		return fn(o)
	}, &n
}

func (w counting) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	f, n := countKeys(fn)
	err := w.Inner.List(ctx, prefix, f)
	w.c.add(ListRequests(n.Load()))
	return err
}

func (w counting) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	f, n := countKeys(fn)
	err := w.Inner.ListRoot(ctx, f)
	w.c.add(ListRequests(n.Load()))
	return err
}

func (w counting) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	w.c.add(1)
	return w.Inner.Open(ctx, key)
}

func (w counting) Delete(ctx context.Context, keys []string) error {
	w.c.add(1)
	return w.Inner.Delete(ctx, keys)
}

func (w counting) Barrier(ctx context.Context) error {
	w.c.add(1)
	return w.Inner.Barrier(ctx)
}
