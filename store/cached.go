package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Cached remembers path infos for a while. A valid path's info does not
// change (only signatures may be added), and the closure of each build a
// daemon pushes repeats most of the last one's: without it, every batch
// reads its whole closure from the database again. Validity is not
// cached: ValidPaths and the Registered* methods always ask. A path deleted
// since it was read may still be returned for up to TTL; uploading it
// then fails as a path that vanished.
type Cached struct {
	Store
	TTL time.Duration
	Max int // entries kept; beyond, expired ones go, then all

	mu sync.Mutex
	m  map[string]cachedInfo
}

type cachedInfo struct {
	pi *PathInfo
	at time.Time
}

// NewCached wraps s.
func NewCached(s Store, ttl time.Duration, max int) *Cached {
	return &Cached{Store: s, TTL: ttl, Max: max, m: map[string]cachedInfo{}}
}

// PathInfos answers from memory what it read less than TTL ago and asks
// the store for the rest, in one call. The infos are shared: callers
// must not change them.
func (c *Cached) PathInfos(ctx context.Context, paths []string) ([]*PathInfo, error) {
	return c.read(ctx, paths, c.TTL)
}

// RootFresh is how recently a root must have been read for Closure to
// take it from memory: the daemon reads each new path once to sort it
// out, moments before it computes the closure. A root deleted in between
// fails its upload as a path that vanished.
const RootFresh = 2 * time.Second

// read is PathInfos, accepting infos read less than maxAge ago.
func (c *Cached) read(ctx context.Context, paths []string, maxAge time.Duration) ([]*PathInfo, error) {
	out := make([]*PathInfo, len(paths))
	var miss []string
	var missAt []int
	now := time.Now()
	c.mu.Lock()
	for i, p := range paths {
		if e, ok := c.m[p]; ok && now.Sub(e.at) < min(maxAge, c.TTL) {
			out[i] = e.pi
			continue
		}
		miss = append(miss, p)
		missAt = append(missAt, i)
	}
	c.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	infos, err := c.Store.PathInfos(ctx, miss)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+len(infos) > c.Max {
		for p, e := range c.m {
			if now.Sub(e.at) >= c.TTL {
				delete(c.m, p)
			}
		}
		if len(c.m)+len(infos) > c.Max {
			clear(c.m)
		}
	}
	byPath := make(map[string]*PathInfo, len(infos))
	for _, pi := range infos {
		byPath[pi.Path] = pi
		if len(c.m) < c.Max {
			c.m[pi.Path] = cachedInfo{pi: pi, at: now}
		}
	}
	for j, p := range miss {
		if out[missAt[j]] = byPath[p]; out[missAt[j]] == nil {
			return nil, fmt.Errorf("%s: %w", p, ErrNotValid)
		}
	}
	return out, nil
}

// Closure reads paths themselves from the store unless they were read
// within RootFresh, so that a root deleted since is reported as not
// valid, and their references from memory where it can: while a root is
// valid, so is its closure.
func (c *Cached) Closure(ctx context.Context, paths []string) ([]*PathInfo, error) {
	first := true
	return closureBFS(ctx, paths, func(ctx context.Context, ps []string) ([]*PathInfo, error) {
		if first {
			first = false
			return c.read(ctx, ps, RootFresh)
		}
		return c.read(ctx, ps, c.TTL)
	})
}
