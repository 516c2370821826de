package count

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/nixpushd/nixpushd/cache"
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
	b := &base{t: t, c: c}
	mask := 0
	if l, ok := t.(cache.Lister); ok {
		b.l, mask = l, mask|1
	}
	if l, ok := t.(cache.RootLister); ok {
		b.rl, mask = l, mask|2
	}
	if o, ok := t.(cache.Opener); ok {
		b.o, mask = o, mask|4
	}
	if d, ok := t.(cache.Deleter); ok {
		b.d, mask = d, mask|8
	}
	if br, ok := t.(cache.Barrierer); ok {
		b.br, mask = br, mask|16
	}
	if l, ok := t.(cache.Local); ok {
		b.loc, mask = l, mask|32
	}
	return wrap(b, mask), c
}

// base forwards cache.Target itself and holds the inner target's
// capabilities for the capability types below.
type base struct {
	t   cache.Target
	c   *Counter
	l   cache.Lister
	rl  cache.RootLister
	o   cache.Opener
	d   cache.Deleter
	br  cache.Barrierer
	loc cache.Local
}

func (b *base) Exists(ctx context.Context, key string) (bool, error) {
	b.c.add(1)
	return b.t.Exists(ctx, key)
}

func (b *base) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	b.c.add(1)
	return b.t.Put(ctx, key, body, size, contentType)
}

func (b *base) Get(ctx context.Context, key string) ([]byte, error) {
	b.c.add(1)
	return b.t.Get(ctx, key)
}

func (b *base) String() string { return b.t.String() }

// countKeys wraps a listing's callback to count the keys it is given.
func countKeys(fn func(cache.ObjectInfo) error) (func(cache.ObjectInfo) error, *atomic.Int64) {
	var n atomic.Int64
	return func(o cache.ObjectInfo) error {
		n.Add(1)
		return fn(o)
	}, &n
}

// The capability types: each holds the base (as a named field, so that
// it promotes only its own method) and forwards one capability.

type lister struct{ b *base }

func (w lister) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	f, n := countKeys(fn)
	err := w.b.l.List(ctx, prefix, f)
	w.b.c.add(ListRequests(n.Load()))
	return err
}

type rootLister struct{ b *base }

func (w rootLister) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	f, n := countKeys(fn)
	err := w.b.rl.ListRoot(ctx, f)
	w.b.c.add(ListRequests(n.Load()))
	return err
}

type opener struct{ b *base }

func (w opener) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	w.b.c.add(1)
	return w.b.o.Open(ctx, key)
}

type deleter struct{ b *base }

func (w deleter) Delete(ctx context.Context, keys []string) error {
	w.b.c.add(1)
	return w.b.d.Delete(ctx, keys)
}

type barrierer struct{ b *base }

func (w barrierer) Barrier(ctx context.Context) error {
	w.b.c.add(1)
	return w.b.br.Barrier(ctx)
}

type local struct{ b *base }

func (w local) IsLocal() bool { return w.b.loc.IsLocal() }
