package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

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
//     debuginfod clients would fail on it.
//   - log/<drv> follows the paths the derivation built: it stays while a
//     surviving narinfo names the .drv as its Deriver, and goes past Grace
//     once none does (the daemon may upload the log before the outputs'
//     narinfos). Verify notes a log that no narinfo's Deriver names.
//   - realisations/<id>.doi follows its outPath: it goes once that path's
//     narinfo does, past Grace. Verify reports one that does not parse or
//     whose outPath has no narinfo (a ca-derivations client fails on it).

const (
	debugInfoPrefix = "debuginfo/"
	logPrefix       = "log/"
)

// Kinds of what verify finds in them.
const (
	ProblemDebugInfo   = "debuginfo"      // a link that does not parse, or names a missing NAR
	ProblemRealisation = "realisation"    // a .doi that does not parse, or whose outPath has no narinfo
	NoteOrphanListing  = "orphan-listing" // a .ls without its narinfo
	NoteOrphanBuildLog = "orphan-log"     // a log/<drv> no narinfo's Deriver names
)

func isDebugInfoKey(k string) bool {
	id, ok := strings.CutPrefix(k, debugInfoPrefix)
	return ok && id != "" && !strings.Contains(id, "/")
}

func isLogKey(k string) bool {
	base, ok := strings.CutPrefix(k, logPrefix)
	if !ok || !strings.HasSuffix(base, ".drv") {
		return false
	}
	_, err := nar.ParseBaseName(base)
	return err == nil
}

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

// markSidecars is gc's step for build logs and debug-info links: those of
// paths that go, past Grace. A link that does not parse stays (verify
// reports it): what it names is unknown.
func (p *GCPlan) markSidecars(ctx context.Context, inv *Inventory, entries map[string]*entry, kept, keepNAR map[string]bool, now time.Time) (gcStep, error) {
	step := gcStep{kind: stepOther}
	keptDrv := map[string]bool{}
	for h := range kept {
		if e := entries[h]; e != nil && e.deriver != "" {
			keptDrv[e.deriver] = true
		}
	}
	for _, drv := range slices.Sorted(maps.Keys(inv.Logs)) {
		if o := inv.Logs[drv]; !keptDrv[drv] && now.Sub(o.LastModified) >= p.opts.Grace {
			step.keys, step.sizes = append(step.keys, o.Key), append(step.sizes, o.Size)
		}
	}
	outOf, _, err := readRealisations(ctx, p.t, inv, p.opts.Jobs)
	if err != nil {
		return step, err
	}
	for _, k := range slices.Sorted(maps.Keys(outOf)) {
		if o := inv.Realisations[k]; !kept[outOf[k]] && now.Sub(o.LastModified) >= p.opts.Grace {
			step.keys, step.sizes = append(step.keys, o.Key), append(step.sizes, o.Size)
		}
	}
	if len(inv.DebugInfo) == 0 {
		return step, nil
	}
	narOf, _, err := readDebugInfoLinks(ctx, p.t, inv, p.opts.Jobs)
	if err != nil {
		return step, err
	}
	for _, k := range slices.Sorted(maps.Keys(narOf)) {
		if o := inv.DebugInfo[k]; !keepNAR[narOf[k]] && now.Sub(o.LastModified) >= p.opts.Grace {
			step.keys, step.sizes = append(step.keys, o.Key), append(step.sizes, o.Size)
		}
	}
	return step, nil
}

// verifySidecars checks the listings, links and logs of a listed cache:
// derivers are the Deriver fields of the narinfos read.
func verifySidecars(ctx context.Context, t cache.Target, inv *Inventory, derivers map[string]bool, opts VerifyOptions, res *VerifyResult, add func(Problem)) error {
	for _, h := range slices.Sorted(maps.Keys(inv.Listings)) {
		if _, ok := inv.NarInfos[h]; !ok {
			res.note(opts, Note{Kind: NoteOrphanListing, Key: inv.Listings[h].Key, Detail: "no narinfo for its path; harmless, gc deletes it once older than --grace"})
		}
	}
	for _, drv := range slices.Sorted(maps.Keys(inv.Logs)) {
		if !derivers[drv] {
			res.note(opts, Note{Kind: NoteOrphanBuildLog, Key: inv.Logs[drv].Key, Detail: "no narinfo names this derivation as its Deriver; nix log finds it only by the .drv; gc deletes it once older than --grace"})
		}
	}
	outOf, badDoi, err := readRealisations(ctx, t, inv, opts.Jobs)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(badDoi)) {
		add(Problem{Kind: ProblemRealisation, Key: k, Detail: badDoi[k].Error() + "; ca-derivations clients fail on it: delete it (push writes it again)"})
	}
	for _, k := range slices.Sorted(maps.Keys(outOf)) {
		if _, ok := inv.NarInfos[outOf[k]]; !ok {
			add(Problem{Kind: ProblemRealisation, Key: k, Detail: "its outPath has no narinfo; ca-derivations clients fail to substitute it: push the path again, or delete it"})
		}
	}
	if len(inv.DebugInfo) == 0 {
		return nil
	}
	narOf, bad, err := readDebugInfoLinks(ctx, t, inv, opts.Jobs)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(bad)) {
		add(Problem{Kind: ProblemDebugInfo, Key: k, Detail: bad[k].Error() + "; delete it (push --index-debug-info writes it again)"})
	}
	for _, k := range slices.Sorted(maps.Keys(narOf)) {
		if _, ok := inv.NARs[narOf[k]]; !ok {
			add(Problem{Kind: ProblemDebugInfo, Key: k, Detail: fmt.Sprintf("its NAR file %s is missing; debuginfod clients fail on it: delete it, or push the path again with --index-debug-info", narOf[k])})
		}
	}
	return nil
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
