package sema

import (
	"context"
	"io"

	"golang.org/x/sync/semaphore"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/layer"
)

// Wrap returns t with its requests bounded by s: each takes one slot.
// Targets wrapped with the same s share its bound.
func Wrap(t cache.Target, s *semaphore.Weighted) cache.Target {
	in := layer.Of(t)
	return layer.Wrap(in, &bounded{in, s})
}

type bounded struct {
	layer.Inner
	s *semaphore.Weighted
}

// do runs one request in a slot; a context that ends while waiting for
// one ends the request before it is sent.
func (b bounded) do(ctx context.Context, op func() error) error {
	if err := b.s.Acquire(ctx, 1); err != nil {
		return err
	}
	defer b.s.Release(1)
	gotSlot(ctx)
	return op()
}

func (b bounded) Exists(ctx context.Context, key string) (ok bool, err error) {
	err = b.do(ctx, func() error { ok, err = b.Inner.Exists(ctx, key); return err })
	return ok, err
}

func (b bounded) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	return b.do(ctx, func() error { return b.Inner.Put(ctx, key, body, size, contentType) })
}

func (b bounded) Get(ctx context.Context, key string) (data []byte, err error) {
	err = b.do(ctx, func() error { data, err = b.Inner.Get(ctx, key); return err })
	return data, err
}

func (b bounded) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	return b.do(ctx, func() error { return b.Inner.List(ctx, prefix, fn) })
}

func (b bounded) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	return b.do(ctx, func() error { return b.Inner.ListRoot(ctx, fn) })
}

func (b bounded) Open(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = b.do(ctx, func() error { rc, err = b.Inner.Open(ctx, key); return err })
	return rc, err
}

func (b bounded) Delete(ctx context.Context, keys []string) error {
	return b.do(ctx, func() error { return b.Inner.Delete(ctx, keys) })
}

func (b bounded) Barrier(ctx context.Context) error {
	return b.do(ctx, func() error { return b.Inner.Barrier(ctx) })
}

// Trace is told, like net/http/httptrace's ClientTrace, when a request
// made with a context from WithTrace gets its slot and is about to be
// sent. A retried request gets a slot, and calls GotSlot, once per try.
type Trace struct {
	GotSlot func()
}

type traceKey struct{}

// WithTrace returns ctx carrying t for the requests made with it.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

func gotSlot(ctx context.Context) {
	if t, _ := ctx.Value(traceKey{}).(*Trace); t != nil && t.GotSlot != nil {
		t.GotSlot()
	}
}
