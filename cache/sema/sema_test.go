package sema_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"golang.org/x/sync/semaphore"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/layer"
	"github.com/nixpushd/nixpushd/cache/sema"
	"github.com/nixpushd/nixpushd/internal/cachetest"
)

// blocking is a target whose requests wait until released, counting how
// many are inside at once.
type blocking struct {
	layer.Inner
	in, peak atomic.Int32
	release  chan struct{}
}

func (b *blocking) enter() {
	n := b.in.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	<-b.release
	b.in.Add(-1)
}

func (b *blocking) Exists(context.Context, string) (bool, error) { b.enter(); return true, nil }
func (b *blocking) Put(context.Context, string, io.Reader, int64, string) error {
	b.enter()
	return nil
}
func (b *blocking) ListRoot(context.Context, func(cache.ObjectInfo) error) error {
	b.enter()
	return nil
}

// Two targets wrapped with one semaphore of 3 never have more than 3
// requests in flight together, whatever the methods.
func TestBoundShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &blocking{Inner: layer.Of(&cachetest.Recorder{}), release: make(chan struct{})}
		s := semaphore.NewWeighted(3)
		in := layer.Of(b)
		x, y := sema.Wrap(layer.Wrap(in, b), s), sema.Wrap(layer.Wrap(in, b), s)
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				ctx := context.Background()
				switch i % 3 {
				case 0:
					x.Exists(ctx, "k")
				case 1:
					y.Put(ctx, "k", strings.NewReader(""), 0, "")
				case 2:
					x.(cache.RootLister).ListRoot(ctx, func(cache.ObjectInfo) error { return nil })
				}
			})
		}
		synctest.Wait()
		if got := b.in.Load(); got != 3 {
			t.Errorf("%d requests in flight, want the bound 3", got)
		}
		close(b.release)
		wg.Wait()
		if got := b.peak.Load(); got != 3 {
			t.Errorf("peak %d requests in flight, want 3", got)
		}
	})
}

// A context that ends while waiting for a slot ends the request unsent.
func TestCancelledWhileWaiting(t *testing.T) {
	r := &cachetest.Recorder{}
	s := semaphore.NewWeighted(1)
	s.Acquire(context.Background(), 1)
	w := sema.Wrap(r, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Exists(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Exists: %v, want context.Canceled", err)
	}
	if len(r.Seen()) != 0 {
		t.Errorf("the inner target saw %v", r.Seen())
	}
	s.Release(1)
	if _, err := w.Exists(context.Background(), "k"); err != nil || len(r.Seen()) != 1 {
		t.Errorf("with a free slot: %v, inner saw %v", err, r.Seen())
	}
}

// The wrapper keeps the inner target's capabilities.
func TestCapabilities(t *testing.T) {
	for _, mask := range []int{0, 1, 2, 12, 48, 63} {
		w := sema.Wrap(cachetest.WithCaps(&cachetest.Recorder{}, mask), semaphore.NewWeighted(1))
		if got := layer.Mask(w); got != mask {
			t.Errorf("mask %06b became %06b", mask, got)
		}
	}
}

// GotSlot runs once the slot is taken, before the request is sent, and
// not for a request that never got one.
func TestTrace(t *testing.T) {
	r := &cachetest.Recorder{}
	s := semaphore.NewWeighted(1)
	w := sema.Wrap(r, s)
	var order []string
	ctx := sema.WithTrace(context.Background(), &sema.Trace{GotSlot: func() {
		order = append(order, "slot")
		if len(r.Seen()) != 0 {
			t.Error("GotSlot after the request was sent")
		}
	}})
	w.Exists(ctx, "k")
	if len(order) != 1 || len(r.Seen()) != 1 {
		t.Errorf("GotSlot called %d times, %d requests; want 1 and 1", len(order), len(r.Seen()))
	}
	s.Acquire(context.Background(), 1)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	w.Exists(cctx, "k")
	if len(order) != 1 {
		t.Errorf("GotSlot called for a request that got no slot")
	}
}
