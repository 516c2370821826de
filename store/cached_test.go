package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// fakeStore is a made-up chain of paths, each referring to the next; it
// counts the infos it is asked for.
type fakeStore struct {
	Store
	infos map[string]*PathInfo
	asked int
}

func (f *fakeStore) PathInfos(_ context.Context, paths []string) ([]*PathInfo, error) {
	f.asked += len(paths)
	var out []*PathInfo
	for _, p := range slices.Backward(paths) { // any order: Cached must not rely on it
		pi, ok := f.infos[p]
		if !ok {
			return nil, fmt.Errorf("%s: %w", p, ErrNotValid)
		}
		out = append(out, pi)
	}
	return out, nil
}

func chain(n int) *fakeStore {
	f := &fakeStore{infos: map[string]*PathInfo{}}
	for i := range n {
		p := fmt.Sprintf("/nix/store/%032d-p", i)
		pi := &PathInfo{Path: p}
		if i+1 < n {
			pi.References = []string{fmt.Sprintf("/nix/store/%032d-p", i+1)}
		}
		f.infos[p] = pi
	}
	return f
}

func TestCachedClosure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := chain(50)
		c := NewCached(f, time.Minute, 1000)
		ctx := context.Background()
		top := "/nix/store/" + fmt.Sprintf("%032d", 0) + "-p"
		first, err := c.Closure(ctx, []string{top})
		if err != nil || len(first) != 50 || f.asked != 50 {
			t.Fatalf("first closure: %d paths, %d infos read, %v; want 50 and 50", len(first), f.asked, err)
		}
		again, err := c.Closure(ctx, []string{top})
		if err != nil || len(again) != 50 || f.asked != 50 {
			t.Fatalf("second closure at once: %d paths, %d infos read in all, %v; want 50, nothing read again", len(again), f.asked, err)
		}
		time.Sleep(RootFresh)
		again, err = c.Closure(ctx, []string{top})
		if err != nil || len(again) != 50 || f.asked != 51 {
			t.Fatalf("a closure later within the TTL: %d paths, %d infos read in all, %v; want 50, only the root read again", len(again), f.asked, err)
		}
		time.Sleep(time.Minute)
		if _, err := c.Closure(ctx, []string{top}); err != nil || f.asked != 101 {
			t.Fatalf("after the TTL: %d infos read in all (%v), want 101", f.asked, err)
		}
		// A root deleted since it was read is not valid, cache or not.
		time.Sleep(RootFresh)
		delete(f.infos, top)
		if _, err := c.Closure(ctx, []string{top}); !errors.Is(err, ErrNotValid) {
			t.Fatalf("closure of a deleted root: %v, want ErrNotValid", err)
		}
		f.infos[top] = &PathInfo{Path: top, References: []string{fmt.Sprintf("/nix/store/%032d-p", 1)}}
		// Hits and misses in one call come back in the caller's order.
		mid := fmt.Sprintf("/nix/store/%032d-p", 25)
		infos, err := c.PathInfos(ctx, []string{mid, top, "/nix/store/00000000000000000000000000000099-p"})
		if !errors.Is(err, ErrNotValid) || infos != nil {
			t.Fatalf("with a path not valid: %v, %v; want ErrNotValid", infos, err)
		}
		infos, err = c.PathInfos(ctx, []string{mid, top})
		if err != nil || infos[0].Path != mid || infos[1].Path != top {
			t.Fatalf("order: %v, %v", infos, err)
		}
	})
}

// Memory stays under Max entries, whatever is read.
func TestCachedBounded(t *testing.T) {
	f := chain(300)
	c := NewCached(f, time.Hour, 100)
	for i := range 300 {
		if _, err := c.PathInfos(context.Background(), []string{fmt.Sprintf("/nix/store/%032d-p", i)}); err != nil {
			t.Fatal(err)
		}
		if len(c.m) > 100 {
			t.Fatalf("%d entries after %d paths read, want at most 100", len(c.m), i+1)
		}
	}
}
