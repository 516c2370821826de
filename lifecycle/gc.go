package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/cachelock"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/upload"
)

// Why gc never breaks a closure, whoever pushes meanwhile:
//
//  1. Roots are the narinfos written within Keep (by Last-Modified, the
//     server's clock) and the pinned paths; gc keeps the closure of the
//     roots through the References of the narinfos in the cache, and only
//     deletes what is outside it. A kept narinfo's references are kept by
//     construction, and so are the NARs kept narinfos point at.
//  2. gc sweeps under an exclusive lock, and nixpushd pushers publish only
//     under a shared lock (upload/lock.go): while gc sweeps, no nixpushd
//     writes a narinfo, and a pusher that saw something present before the
//     sweep checks it again (a new lock session) before relying on it.
//  3. Deletion order keeps every intermediate state valid, so kill -9 at
//     any instant leaves a valid cache: narinfos go first, each only after
//     every doomed narinfo referring to it (referrers before references);
//     NARs go last, and only those no surviving narinfo points at.
//  4. A NAR younger than Grace is never deleted even if nothing refers to
//     it: a pusher that does not take locks (nix copy) uploads the NAR
//     before the narinfo, and Grace covers that gap.
//  5. gc stops deleting as soon as its lock is no longer known to be
//     fresh, before any pusher can judge it stale.

// GCOptions configures one collection.
type GCOptions struct {
	Keep   time.Duration // narinfos written within Keep are roots
	Grace  time.Duration // NARs younger than Grace are never deleted
	DryRun bool          // report, delete nothing, take no lock
	Jobs   int           // narinfo reads in flight
	Locker *cachelock.Locker
	Log    *slog.Logger
	// Report, if set, is told each object that goes (or would go).
	Report func(key string, size int64)
}

// GCResult sums up a collection.
type GCResult struct {
	NarInfos        int // in the cache
	Roots           int // recent narinfos and pinned paths present
	Pinned          int // paths named by pins
	Kept            int // narinfos in the closure of the roots
	DeletedNarInfos int
	DeletedNARs     int
	DeletedOther    int // listings, released locks, removed pins
	BytesFreed      int64
	Requests        int64 // list pages, reads and delete batches
	Duration        time.Duration
}

func (r *GCResult) String() string {
	return fmt.Sprintf("%d narinfos, %d roots (%d pinned paths), %d kept; deleted %d narinfos, %d NARs, %d other objects; freed %s in %.1fs (%d requests)",
		r.NarInfos, r.Roots, r.Pinned, r.Kept, r.DeletedNarInfos, r.DeletedNARs, r.DeletedOther, HumanBytes(r.BytesFreed), r.Duration.Seconds(), r.Requests)
}

// HumanBytes formats n in binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// deleteBatch is how many keys one delete request carries (S3's limit).
const deleteBatch = 1000

// GC deletes what no root needs. See the argument above.
func GC(ctx context.Context, t cache.Target, opts GCOptions) (*GCResult, error) {
	start := time.Now()
	res := &GCResult{}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	if opts.Jobs <= 0 {
		opts.Jobs = upload.DefaultIOJobs
	}
	var del cache.Deleter
	var lk *cachelock.Lock
	if !opts.DryRun {
		var ok bool
		if del, ok = t.(cache.Deleter); !ok {
			return nil, fmt.Errorf("%s does not support deleting", t)
		}
		// Fail before anything else if the credentials cannot delete: a
		// missing key deletes fine with permission, and is refused without.
		if err := del.Delete(ctx, []string{cachelock.Prefix + "permission-probe"}); err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		if opts.Locker == nil {
			return nil, errors.New("gc: no lock: refusing to delete without excluding pushers")
		}
		var err error
		if lk, err = opts.Locker.Acquire(ctx, cachelock.Exclusive); err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		defer func() {
			if err := lk.Release(context.WithoutCancel(ctx)); err != nil {
				log.Warn("releasing the gc lock", "err", err)
			}
		}()
	}

	inv, err := Scan(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("gc: list: %w", err)
	}
	res.Requests += int64(countObjects(inv)/1000 + 1)
	res.NarInfos = len(inv.NarInfos)
	now := inv.Newest // our lock was just written: the server's now
	if now.IsZero() || opts.DryRun {
		now = time.Now()
	}

	// Roots.
	roots := map[string]bool{}
	for h, o := range inv.NarInfos {
		if now.Sub(o.LastModified) < opts.Keep {
			roots[h] = true
		}
	}
	var pinObjs []cache.ObjectInfo
	for _, o := range inv.Pins {
		pinObjs = append(pinObjs, o)
	}
	pins, err := readPins(ctx, t, sortedByKey(pinObjs))
	res.Requests += int64(len(pinObjs))
	if err != nil {
		return nil, fmt.Errorf("gc: %w (fix or remove the pin: nixpushd pin rm NAME)", err)
	}
	for _, pin := range pins {
		for _, p := range pin.Paths {
			sp, _ := nar.ParseStorePath(p)
			res.Pinned++
			if _, ok := inv.NarInfos[sp.Hash]; ok {
				roots[sp.Hash] = true
			} else {
				log.Warn("pinned path is not in the cache", "pin", pin.Name, "STORE_PATH", p)
			}
		}
	}
	res.Roots = len(roots)

	// Read every narinfo: the kept ones say which NARs stay, the doomed
	// ones say in which order they may go.
	f := &fetcher{t: t, jobs: opts.Jobs, retry: retry.Default}
	entries := make(map[string]*entry, len(inv.NarInfos))
	hashes := make([]string, 0, len(inv.NarInfos))
	for h := range inv.NarInfos {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	var readErr error
	unparsable := 0
	err = f.fetch(ctx, hashes, func(h string, ni *nar.NarInfo, err error) {
		var pe *ParseError
		switch {
		case errors.Is(err, cache.ErrNotFound):
			return // deleted since the listing (by hand, or an expiry rule)
		case errors.As(err, &pe):
			// What it references and points at is unknown: keep it
			// (verify reports it) and delete no NAR this run.
			unparsable++
			roots[h] = true
			log.Warn("narinfo does not parse; keeping it, and every NAR this run", "narinfo", h+".narinfo", "err", err)
		case err != nil:
			if readErr == nil {
				readErr = fmt.Errorf("read %s.narinfo: %w", h, err)
			}
			return
		}
		entries[h] = toEntry(ni, err)
	})
	res.Requests += f.requests.Load()
	if err == nil {
		err = readErr
	}
	if err != nil {
		// Deleting on a partial view could break a closure: stop first.
		return nil, fmt.Errorf("gc: read narinfos (nothing was deleted): %w", err)
	}
	res.Roots = len(roots)

	// Mark.
	kept := make(map[string]bool, len(roots))
	stack := make([]string, 0, len(roots))
	for h := range roots {
		kept[h] = true
		stack = append(stack, h)
	}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		e := entries[h]
		if e == nil {
			continue
		}
		for _, r := range e.refs {
			if _, ok := entries[r]; ok && !kept[r] {
				kept[r] = true
				stack = append(stack, r)
			}
		}
	}
	res.Kept = len(kept)

	// Doomed narinfos in layers: a layer holds narinfos no remaining doomed
	// narinfo refers to.
	referrers := map[string]int{}
	for h, e := range entries {
		if kept[h] {
			continue
		}
		for _, r := range e.refs {
			if !kept[r] {
				referrers[r]++
			}
		}
	}
	var layer []string
	for h := range entries {
		if !kept[h] && referrers[h] == 0 {
			layer = append(layer, h)
		}
	}
	keepNAR := map[string]bool{}
	for h := range kept {
		if e := entries[h]; e != nil && e.url != "" {
			keepNAR[e.url] = true
		}
	}

	deleteKeys := func(keys []string, sizes []int64) error {
		for i := 0; i < len(keys); i += deleteBatch {
			j := min(i+deleteBatch, len(keys))
			for k := i; k < j; k++ {
				if opts.Report != nil {
					opts.Report(keys[k], sizes[k])
				}
			}
			if opts.DryRun {
				continue
			}
			if !lk.Valid() {
				return errors.New("gc: the gc lock could not be refreshed in time; stopped deleting (the cache is valid; run gc again)")
			}
			if err := del.Delete(ctx, keys[i:j]); err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			res.Requests++
		}
		return nil
	}

	for len(layer) > 0 {
		slices.Sort(layer)
		keys := make([]string, 0, len(layer))
		sizes := make([]int64, 0, len(layer))
		for _, h := range layer {
			keys = append(keys, h+".narinfo")
			sizes = append(sizes, inv.NarInfos[h].Size)
		}
		if err := deleteKeys(keys, sizes); err != nil {
			return res, err
		}
		// Nix's per-path listings go with their narinfos, in one batch.
		var lsKeys []string
		var lsSizes []int64
		for i, h := range layer {
			res.DeletedNarInfos++
			res.BytesFreed += sizes[i]
			if o, ok := inv.Listings[h]; ok {
				lsKeys, lsSizes = append(lsKeys, o.Key), append(lsSizes, o.Size)
			}
		}
		if err := deleteKeys(lsKeys, lsSizes); err != nil {
			return res, err
		}
		res.DeletedOther += len(lsKeys)
		for _, n := range lsSizes {
			res.BytesFreed += n
		}
		var next []string
		for _, h := range layer {
			for _, r := range entries[h].refs {
				if kept[r] {
					continue
				}
				if referrers[r]--; referrers[r] == 0 {
					if _, ok := entries[r]; ok {
						next = append(next, r)
					}
				}
			}
		}
		layer = next
	}

	// NARs no surviving narinfo points at, past the grace period.
	var narKeys []string
	var narSizes []int64
	for k, o := range inv.NARs {
		if unparsable > 0 {
			break
		}
		if !keepNAR[k] && now.Sub(o.LastModified) >= opts.Grace {
			narKeys = append(narKeys, k)
			narSizes = append(narSizes, o.Size)
		}
	}
	if err := deleteKeys(narKeys, narSizes); err != nil {
		return res, err
	}
	res.DeletedNARs = len(narKeys)
	for _, s := range narSizes {
		res.BytesFreed += s
	}

	// Listings of paths that have no narinfo, removed pins, released or
	// stale locks (not ours).
	var other []string
	var otherSizes []int64
	for h, o := range inv.Listings {
		// A pusher writes a path's .ls before its narinfo: Grace covers
		// that gap, as for NARs.
		if _, ok := inv.NarInfos[h]; !ok && now.Sub(o.LastModified) >= opts.Grace {
			other, otherSizes = append(other, o.Key), append(otherSizes, o.Size)
		}
	}
	for _, o := range inv.Pins {
		if o.Size == 0 && now.Sub(o.LastModified) >= opts.Grace {
			other, otherSizes = append(other, o.Key), append(otherSizes, o.Size)
		}
	}
	if !opts.DryRun && opts.Locker != nil {
		if locks, err := opts.Locker.List(ctx); err == nil {
			for _, li := range locks {
				if !li.Live && li.Key != lk.Key() {
					other, otherSizes = append(other, li.Key), append(otherSizes, 0)
				}
			}
		}
	}
	if err := deleteKeys(other, otherSizes); err != nil {
		return res, err
	}
	res.DeletedOther += len(other)
	res.Duration = time.Since(start)
	return res, nil
}

func countObjects(inv *Inventory) int {
	return len(inv.NarInfos) + len(inv.NARs) + len(inv.Listings) + len(inv.Pins) + len(inv.Locks) + inv.Other
}

func sortedByKey(objs []cache.ObjectInfo) []cache.ObjectInfo {
	slices.SortFunc(objs, func(a, b cache.ObjectInfo) int {
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	return objs
}
