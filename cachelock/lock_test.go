package cachelock

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nixpushd/nixpushd/internal/cachetest"
)

func testLocker(m *cachetest.Mem) *Locker {
	return &Locker{Target: m, list: m, StaleAfter: 10 * time.Second, Poll: 500 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler)}
}

// A pusher waits while gc holds the cache, and gc waits for pushers.
func TestLockExcludes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		l := testLocker(m)
		ctx := context.Background()
		shared, err := l.Acquire(ctx, Shared)
		if err != nil {
			t.Fatal(err)
		}
		gotExcl := make(chan *Lock)
		go func() {
			lk, err := l.Acquire(ctx, Exclusive)
			if err != nil {
				t.Error(err)
			}
			gotExcl <- lk
		}()
		time.Sleep(5 * time.Second)
		select {
		case <-gotExcl:
			t.Fatal("gc took the cache while a pusher held it")
		default:
		}
		// gc's lock is visible now: the pusher is asked to yield.
		time.Sleep(3 * time.Second)
		if !shared.Yielding() {
			t.Error("the shared lock was not asked to yield to gc")
		}
		shared.Release(ctx)
		excl := <-gotExcl

		gotShared := make(chan *Lock)
		go func() {
			lk, err := l.Acquire(ctx, Shared)
			if err != nil {
				t.Error(err)
			}
			gotShared <- lk
		}()
		time.Sleep(20 * time.Second) // longer than StaleAfter: refreshing keeps gc's lock live
		select {
		case <-gotShared:
			t.Fatal("a pusher took the cache while gc held it")
		default:
		}
		if !excl.Valid() {
			t.Error("gc's lock is not valid although it refreshes")
		}
		excl.Release(ctx)
		lk := <-gotShared
		lk.Release(ctx)
		synctest.Wait()
	})
}

// A holder killed without releasing blocks the other side for StaleAfter
// at most; a second gc is refused at once.
func TestLockStaleAndSecondGC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		l := testLocker(m)
		ctx := context.Background()
		// A pusher "killed -9": its lock object stays, never refreshed.
		key, body := newLockKey(Shared)
		if err := l.write(ctx, key, body); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		excl, err := l.Acquire(ctx, Exclusive)
		if err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited < l.StaleAfter || waited > l.StaleAfter+5*time.Second {
			t.Errorf("gc waited %v for a dead pusher's lock, want about StaleAfter (%v)", waited, l.StaleAfter)
		}
		if _, err := l.Acquire(ctx, Exclusive); err == nil || !strings.Contains(err.Error(), "another gc") {
			t.Errorf("second gc: %v, want a refusal naming the other gc", err)
		}
		excl.Release(ctx)
		synctest.Wait()
	})
}
