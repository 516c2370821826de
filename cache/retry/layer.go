package retry

import (
	"context"
	"errors"
	"io"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/layer"
)

// Wrap returns t whose requests are retried under p: a cache/layer layer
// with t's exact capabilities. Once stop is done (nil: never), the
// waits between tries end at once and no request is tried again; a
// request under way finishes, since it keeps the caller's context.
//
// What is retried:
//   - Exists, Get, Open, Delete and Barrier, as they are; a missing
//     object (cache.ErrNotFound) is an answer, not a failure;
//   - Put, when its body is an io.Seeker: each try starts from the
//     offset the body had. Any other body is sent once;
//   - a listing, until its first object reaches the callback: after
//     that a retry would repeat objects, so the error is returned.
func (p Policy) Wrap(t cache.Target, stop context.Context) cache.Target {
	in := layer.Of(t)
	return layer.Wrap(in, &retrying{in, p, stop})
}

type retrying struct {
	layer.Inner
	p    Policy
	stop context.Context
}

func notFound(err error) bool { return errors.Is(err, cache.ErrNotFound) }

// do runs op under the policy, its waits cut short by stop.
func (r retrying) do(ctx context.Context, op func() error, final func(error) bool) error {
	if r.stop == nil {
		return r.p.do(ctx, op, final)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.stop, cancel)()
	return r.p.do(wctx, op, final)
}

func (r retrying) Exists(ctx context.Context, key string) (ok bool, err error) {
	err = r.do(ctx, func() error { ok, err = r.Inner.Exists(ctx, key); return err }, nil)
	return ok, err
}

func (r retrying) Get(ctx context.Context, key string) (data []byte, err error) {
	err = r.do(ctx, func() error { data, err = r.Inner.Get(ctx, key); return err }, notFound)
	return data, err
}

func (r retrying) Open(ctx context.Context, key string) (rc io.ReadCloser, err error) {
	err = r.do(ctx, func() error { rc, err = r.Inner.Open(ctx, key); return err }, notFound)
	return rc, err
}

func (r retrying) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	s, ok := body.(io.Seeker)
	if !ok {
		return r.Inner.Put(ctx, key, body, size, contentType)
	}
	start, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return r.Inner.Put(ctx, key, body, size, contentType)
	}
	first := true
	return r.do(ctx, func() error {
		if !first {
			if _, err := s.Seek(start, io.SeekStart); err != nil {
				return cache.Permanent(err)
			}
		}
		first = false
		return r.Inner.Put(ctx, key, body, size, contentType)
	}, nil)
}

// listing retries list while fn has not been called.
func (r retrying) listing(ctx context.Context, fn func(cache.ObjectInfo) error, list func(func(cache.ObjectInfo) error) error) error {
	delivered := false
	f := func(o cache.ObjectInfo) error {
		delivered = true
		return fn(o)
	}
	return r.do(ctx, func() error { return list(f) }, func(error) bool { return delivered })
}

func (r retrying) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	return r.listing(ctx, fn, func(f func(cache.ObjectInfo) error) error { return r.Inner.List(ctx, prefix, f) })
}

func (r retrying) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	return r.listing(ctx, fn, func(f func(cache.ObjectInfo) error) error { return r.Inner.ListRoot(ctx, f) })
}

func (r retrying) Delete(ctx context.Context, keys []string) error {
	return r.do(ctx, func() error { return r.Inner.Delete(ctx, keys) }, nil)
}

func (r retrying) Barrier(ctx context.Context) error {
	return r.do(ctx, func() error { return r.Inner.Barrier(ctx) }, nil)
}
