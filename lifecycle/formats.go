package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/nar"
)

// The files Nix writes beside narinfos and NARs, and how gc and verify
// treat them:
//
//   - <hash>.ls goes with its narinfo (gc.go); one without a narinfo is
//     deleted past Grace (a pusher writes it first) and is a note to verify.
//   - debuginfo/<build-id> names a NAR: it goes once that NAR is no longer
//     named by a surviving narinfo and the link is older than Grace (a
//     pusher writes it after the NAR, before the narinfo). Verify reports
//     a link whose NAR is missing, or that does not parse, as a problem:
//     debuginfod clients would fail on it. Repair writes it again from the
//     local store, or deletes it (repair_sidecars.go).
//   - log/<drv> follows the paths the derivation built: it stays while a
//     surviving narinfo names the .drv as its Deriver, and goes past Grace
//     once none does (the daemon may upload the log before the outputs'
//     narinfos). Verify notes a log that no narinfo's Deriver names.
//   - realisations/<id>.doi follows its outPath: it goes once that path's
//     narinfo does, past Grace. Verify reports one that does not parse or
//     whose outPath has no narinfo (a ca-derivations client fails on it);
//     repair pushes the outPath, writes it again from the local store, or
//     deletes it.

// Kinds of what verify finds in them.
const (
	ProblemDebugInfo   = "debuginfo"      // a link that does not parse, or names a missing NAR
	ProblemRealisation = "realisation"    // a .doi that does not parse, or whose outPath has no narinfo
	NoteOrphanListing  = "orphan-listing" // a .ls without its narinfo
	NoteOrphanBuildLog = "orphan-log"     // a log/<drv> no narinfo's Deriver names
)

// readDebugInfoLinks reads every link of inv and returns the NAR key each
// names (missing from the map: the link is gone since the listing), and
// per link the parse error of one that does not parse.
func readDebugInfoLinks(ctx context.Context, t cache.Target, inv *Inventory, jobs int) (narOf map[string]string, bad map[string]error, err error) {
	narOf, bad = map[string]string{}, map[string]error{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(jobs, 1))
	for _, k := range slices.Sorted(maps.Keys(inv.DebugInfo)) {
		g.Go(func() error {
			var b []byte
			err := retry.Default.Do(gctx, func() (err error) {
				b, err = t.Get(gctx, k)
				if errors.Is(err, cache.ErrNotFound) {
					return &cache.PermanentError{Err: err}
				}
				return err
			})
			if errors.Is(err, cache.ErrNotFound) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", k, err)
			}
			narKey, _, perr := nar.ParseDebugInfoLink(b)
			mu.Lock()
			defer mu.Unlock()
			if perr != nil {
				bad[k] = perr
			} else {
				narOf[k] = narKey
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return narOf, bad, nil
}

// readRealisations reads every realisation of inv and returns the hash
// part of the outPath each names, and per key the parse error of one that
// does not parse.
func readRealisations(ctx context.Context, t cache.Target, inv *Inventory, jobs int) (outOf map[string]string, bad map[string]error, err error) {
	outOf, bad = map[string]string{}, map[string]error{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(jobs, 1))
	for _, k := range slices.Sorted(maps.Keys(inv.Realisations)) {
		g.Go(func() error {
			b, err := getSmall(gctx, t, k)
			if errors.Is(err, cache.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			r, perr := nar.ParseRealisation(b)
			var sp nar.StorePath
			if perr == nil {
				sp, perr = nar.ParseBaseName(r.OutPath)
			}
			mu.Lock()
			defer mu.Unlock()
			if perr != nil {
				bad[k] = perr
			} else {
				outOf[k] = sp.Hash
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return outOf, bad, nil
}

// getSmall reads key, retried; a missing key is cache.ErrNotFound at once.
func getSmall(ctx context.Context, t cache.Target, key string) ([]byte, error) {
	var b []byte
	err := retry.Default.Do(ctx, func() (err error) {
		b, err = t.Get(ctx, key)
		if errors.Is(err, cache.ErrNotFound) {
			return &cache.PermanentError{Err: err}
		}
		return err
	})
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, err
}
