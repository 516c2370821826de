package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cachelock"
	"github.com/nixpushd/nixpushd/nar"
)

// Inventory is what one listing of the cache shows. Memory is a few
// hundred bytes per object: a 100,000-path cache lists in tens of MiB.
type Inventory struct {
	NarInfos  map[string]cache.ObjectInfo // hash part → <hash>.narinfo
	NARs      map[string]cache.ObjectInfo // key (nar/…) → object
	Listings  map[string]cache.ObjectInfo // hash part → <hash>.ls
	Pins      map[string]cache.ObjectInfo // pin name → pins/<name>
	DebugInfo map[string]cache.ObjectInfo // key (debuginfo/<build-id>) → link
	Logs      map[string]cache.ObjectInfo // .drv base name → log/<drv>
	// Realisations: key (realisations/<id>.doi) → object.
	Realisations map[string]cache.ObjectInfo
	Locks        []cache.ObjectInfo
	CacheInfo    *cache.ObjectInfo
	Other        int // objects nixpushd does not know; left alone
	// Stray are the *.narinfo objects whose name is not a hash part (in
	// Other too): no client asks for them.
	Stray []cache.ObjectInfo
	// Newest is the newest Last-Modified seen: the server's "now", as near
	// as a listing tells it.
	Newest time.Time
}

// Scan lists the whole cache once.
func Scan(ctx context.Context, t cache.Target) (*Inventory, error) {
	l, ok := t.(cache.Lister)
	if !ok {
		return nil, fmt.Errorf("%s cannot be listed", t)
	}
	inv := &Inventory{
		NarInfos: map[string]cache.ObjectInfo{}, NARs: map[string]cache.ObjectInfo{},
		Listings: map[string]cache.ObjectInfo{}, Pins: map[string]cache.ObjectInfo{},
		DebugInfo: map[string]cache.ObjectInfo{}, Logs: map[string]cache.ObjectInfo{},
		Realisations: map[string]cache.ObjectInfo{},
	}
	err := l.List(ctx, "", func(o cache.ObjectInfo) error {
		if o.LastModified.After(inv.Newest) {
			inv.Newest = o.LastModified
		}
		k := o.Key
		switch {
		case k == "nix-cache-info":
			inv.CacheInfo = &o
		case strings.HasPrefix(k, "nar/"):
			inv.NARs[k] = o
		case strings.HasPrefix(k, cachelock.Prefix):
			inv.Locks = append(inv.Locks, o)
		case strings.HasPrefix(k, PinPrefix):
			inv.Pins[strings.TrimPrefix(k, PinPrefix)] = o
		case strings.HasSuffix(k, ".narinfo") && isHashPart(strings.TrimSuffix(k, ".narinfo")):
			inv.NarInfos[strings.TrimSuffix(k, ".narinfo")] = o
		case strings.HasSuffix(k, ".ls") && isHashPart(strings.TrimSuffix(k, ".ls")):
			inv.Listings[strings.TrimSuffix(k, ".ls")] = o
		case isDebugInfoKey(k):
			inv.DebugInfo[k] = o
		case isLogKey(k):
			inv.Logs[strings.TrimPrefix(k, logPrefix)] = o
		case strings.HasPrefix(k, nar.RealisationPrefix) && strings.HasSuffix(k, ".doi"):
			inv.Realisations[k] = o
		default:
			inv.Other++
			if strings.HasSuffix(k, ".narinfo") && !strings.Contains(k, "/") {
				inv.Stray = append(inv.Stray, o)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

func isHashPart(s string) bool {
	if len(s) != nar.HashLen {
		return false
	}
	_, err := nar.NixBase32.DecodeString(s)
	return err == nil
}

// entry is what gc and verify keep of one narinfo: enough to follow
// references and find the NAR, not the whole text.
type entry struct {
	url      string
	fileSize int64
	deriver  string   // .drv base name, "" if none
	refs     []string // hash parts, self excluded
	err      error    // unreadable or unparsable
}

// fetcher reads narinfos in parallel, from a target that retries.
type fetcher struct {
	t    cache.Target
	jobs int
}

// fetch reads the narinfos of hashes and calls fn (serialised) with each.
func (f *fetcher) fetch(ctx context.Context, hashes []string, fn func(hash string, ni *nar.NarInfo, err error)) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.jobs)
	for _, h := range hashes {
		g.Go(func() error {
			b, err := f.t.Get(gctx, h+".narinfo")
			if err != nil && gctx.Err() != nil {
				return gctx.Err()
			}
			var ni *nar.NarInfo
			if err == nil {
				ni, err = nar.ParseNarInfo(b)
				if err == nil {
					if sp, perr := nar.ParseStorePath(ni.StorePath); perr != nil || sp.Hash != h {
						err = fmt.Errorf("StorePath %s does not match the object name %s.narinfo", ni.StorePath, h)
					}
				}
				if err != nil {
					err = &ParseError{Err: err}
				}
			}
			mu.Lock()
			fn(h, ni, err)
			mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// ParseError marks a narinfo that was read but is not valid.
type ParseError struct{ Err error }

func (e *ParseError) Error() string { return "unparsable: " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

func toEntry(ni *nar.NarInfo, err error) *entry {
	if err != nil {
		return &entry{err: err}
	}
	// Clones: a substring would keep the whole narinfo text alive.
	e := &entry{url: strings.Clone(ni.URL), fileSize: ni.FileSize, deriver: strings.Clone(ni.Deriver)}
	self := ""
	if sp, err := nar.ParseStorePath(ni.StorePath); err == nil {
		self = sp.Hash
	}
	for _, r := range ni.References {
		if sp, err := nar.ParseBaseName(r); err == nil && sp.Hash != self {
			e.refs = append(e.refs, strings.Clone(sp.Hash))
		}
	}
	return e
}

// Keys of the files Nix writes beside narinfos and NARs (formats.go says
// how gc and verify treat them), as the inventory sorts them.
const (
	debugInfoPrefix = "debuginfo/"
	logPrefix       = "log/"
)

// isDebugInfoKey is debuginfo/<build-id>.
func isDebugInfoKey(k string) bool {
	id, ok := strings.CutPrefix(k, debugInfoPrefix)
	return ok && id != "" && !strings.Contains(id, "/")
}

// isLogKey is log/<drv base name>.
func isLogKey(k string) bool {
	base, ok := strings.CutPrefix(k, logPrefix)
	if !ok || !strings.HasSuffix(base, ".drv") {
		return false
	}
	_, err := nar.ParseBaseName(base)
	return err == nil
}
