package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/count"
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
//     under a shared lock (cachelock/lock.go): while gc sweeps, no nixpushd
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
	// DeletedLocks counts the lock objects among DeletedOther: released
	// ones that pushers without delete rights leave, and stale ones.
	DeletedLocks int
	BytesFreed   int64
	Requests     int64 // list pages, reads and delete batches
	Duration     time.Duration
}

func (r *GCResult) String() string {
	other := plural(r.DeletedOther, "other object")
	if r.DeletedLocks > 0 {
		other += " (" + plural(r.DeletedLocks, "leftover lock") + ")"
	}
	return fmt.Sprintf("%s, %s (%s), %d kept; deleted %s, %s, %s; freed %s in %.1fs (%s)",
		plural(r.NarInfos, "narinfo"), plural(r.Roots, "root"), plural(r.Pinned, "pinned path"), r.Kept, plural(r.DeletedNarInfos, "narinfo"),
		plural(r.DeletedNARs, "NAR"), other, HumanBytes(r.BytesFreed), r.Duration.Seconds(), plural(int(r.Requests), "request"))
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

// GC deletes what no root needs: PlanGC, then Execute (for a dry run,
// the plan's deletions told to opts.Report and its figures). See the
// argument above.
func GC(ctx context.Context, t cache.Target, opts GCOptions) (*GCResult, error) {
	plan, err := PlanGC(ctx, t, opts)
	if err != nil {
		return nil, err
	}
	if !opts.DryRun {
		return plan.Execute(ctx)
	}
	if opts.Report != nil {
		for _, d := range plan.Deletions() {
			opts.Report(d.Key, d.Size)
		}
	}
	return plan.Result(), nil
}

// GCPlan is the mark phase of one collection: what goes, in the order it
// may go. A plan is only valid under the exclusive lock it was made
// under: PlanGC takes the lock (unless opts.DryRun) and the plan holds
// it, refreshed in the background, until Execute or Release releases it.
// Every plan that is not a dry run must be ended by one of them. A dry-run
// plan holds no lock and cannot be executed; its deletions are what gc
// would delete at that moment. The lock, not the plan, is what excludes
// pushers: Execute deletes nothing once the lock is no longer known to be
// valid, so a plan cannot outlive the guarantee it was made under. A
// GCPlan is for one goroutine.
type GCPlan struct {
	t       cache.Target // counted: every request of the plan and its sweep
	counter *count.Counter
	del     cache.Deleter // t's, nil for a dry run
	lk      *cachelock.Lock
	opts    GCOptions
	log     *slog.Logger
	start   time.Time
	done    bool // executed or released: the lock is gone

	res   GCResult // the mark's figures
	steps []gcStep // in deletion order
}

// stepKind says which figures of GCResult a step adds to.
type stepKind int

const (
	stepNarInfos stepKind = iota // DeletedNarInfos, BytesFreed
	stepListings                 // DeletedOther, BytesFreed: a layer's <hash>.ls
	stepNARs                     // DeletedNARs, BytesFreed
	stepOther                    // DeletedOther: orphan listings, removed pins
)

// gcStep is a set of keys deleted together (in batches of deleteBatch),
// only after every step before it completed.
type gcStep struct {
	kind  stepKind
	keys  []string
	sizes []int64
}

// GCDeletion is one object a plan deletes.
type GCDeletion struct {
	Key  string
	Size int64
}

// PlanGC is the mark phase: it lists the cache, takes the roots (recent
// narinfos and pins), reads every narinfo, marks the closure of the roots
// and orders what is outside it for deletion (see the argument above).
// It deletes nothing. Unless opts.DryRun, it first checks that the
// credentials may delete and takes the exclusive lock, which the returned
// plan holds: call Execute, or Release to give up. On error no lock is
// held.
func PlanGC(ctx context.Context, t cache.Target, opts GCOptions) (_ *GCPlan, err error) {
	p := &GCPlan{opts: opts, log: opts.Log, start: time.Now()}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.opts.Jobs <= 0 {
		p.opts.Jobs = upload.DefaultIOJobs
	}
	if !opts.DryRun {
		del, ok := t.(cache.Deleter)
		if !ok {
			return nil, fmt.Errorf("%s does not support deleting", t)
		}
		// Fail before anything else if the credentials cannot delete.
		// (Not counted, like the lock's requests: the figure is the
		// collection's work.)
		if err := probeDelete(ctx, del); err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		if opts.Locker == nil {
			return nil, errors.New("gc: no lock: refusing to delete without excluding pushers")
		}
		if p.lk, err = opts.Locker.Acquire(ctx, cachelock.Exclusive); err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		defer func() {
			if err != nil {
				p.Release(ctx)
			}
		}()
	}
	ct, counter := count.Wrap(t)
	p.counter = counter
	// Reads are retried, each try counted. Deletes are not: a batch is
	// sent only while the lock is known to be valid, and after a backoff
	// it might not be.
	p.t = retry.Default.Wrap(ct, nil)
	if !opts.DryRun {
		p.del = ct.(cache.Deleter)
	}
	if err := p.mark(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// mark fills p.res and p.steps.
func (p *GCPlan) mark(ctx context.Context) error {
	t, opts, log, res := p.t, p.opts, p.log, &p.res
	inv, err := Scan(ctx, t)
	if err != nil {
		return fmt.Errorf("gc: list: %w", err)
	}
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
	if err != nil {
		return fmt.Errorf("gc: %w (fix or remove the pin: nixpushd pin rm NAME)", err)
	}
	for _, pin := range pins {
		for _, path := range pin.Paths {
			sp, _ := nar.ParseStorePath(path)
			res.Pinned++
			if _, ok := inv.NarInfos[sp.Hash]; ok {
				roots[sp.Hash] = true
			} else {
				log.Warn("pinned path is not in the cache", "pin", pin.Name, "STORE_PATH", path)
			}
		}
	}
	res.Roots = len(roots)

	// Read every narinfo: the kept ones say which NARs stay, the doomed
	// ones say in which order they may go.
	f := &fetcher{t: t, jobs: opts.Jobs}
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
	if err == nil {
		err = readErr
	}
	if err != nil {
		// Deleting on a partial view could break a closure: stop first.
		return fmt.Errorf("gc: read narinfos (nothing was deleted): %w", err)
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

	for len(layer) > 0 {
		slices.Sort(layer)
		ni := gcStep{kind: stepNarInfos}
		// Nix's per-path listings go with their narinfos, in one batch.
		ls := gcStep{kind: stepListings}
		for _, h := range layer {
			ni.keys, ni.sizes = append(ni.keys, h+".narinfo"), append(ni.sizes, inv.NarInfos[h].Size)
			if o, ok := inv.Listings[h]; ok {
				ls.keys, ls.sizes = append(ls.keys, o.Key), append(ls.sizes, o.Size)
			}
		}
		p.steps = append(p.steps, ni, ls)
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

	// Build logs and debug-info links of what goes (formats.go), before
	// the NARs the links name.
	sidecars, err := p.markSidecars(ctx, inv, entries, kept, keepNAR, now)
	if err != nil {
		return fmt.Errorf("gc: %w (nothing was deleted)", err)
	}
	p.steps = append(p.steps, sidecars)

	// NARs no surviving narinfo points at, past the grace period.
	nars := gcStep{kind: stepNARs}
	if unparsable == 0 {
		for _, k := range slices.Sorted(maps.Keys(inv.NARs)) {
			if o := inv.NARs[k]; !keepNAR[k] && now.Sub(o.LastModified) >= opts.Grace {
				nars.keys, nars.sizes = append(nars.keys, k), append(nars.sizes, o.Size)
			}
		}
	}
	p.steps = append(p.steps, nars)

	// Listings of paths that have no narinfo, removed pins; Execute adds
	// released or stale locks (not ours), listed when it gets there.
	other := gcStep{kind: stepOther}
	for _, h := range slices.Sorted(maps.Keys(inv.Listings)) {
		// A pusher writes a path's .ls before its narinfo: Grace covers
		// that gap, as for NARs.
		_, hasNarInfo := inv.NarInfos[h]
		if o := inv.Listings[h]; !hasNarInfo && now.Sub(o.LastModified) >= opts.Grace {
			other.keys, other.sizes = append(other.keys, o.Key), append(other.sizes, o.Size)
		}
	}
	for _, o := range sortedByKey(pinObjs) {
		if o.Size == 0 && now.Sub(o.LastModified) >= opts.Grace {
			other.keys, other.sizes = append(other.keys, o.Key), append(other.sizes, o.Size)
		}
	}
	p.steps = append(p.steps, other)
	return nil
}

// Deletions lists what the plan deletes, in the order Execute deletes it
// (without the released and stale locks Execute lists at the end).
func (p *GCPlan) Deletions() []GCDeletion {
	var ds []GCDeletion
	for _, s := range p.steps {
		for i, k := range s.keys {
			ds = append(ds, GCDeletion{Key: k, Size: s.sizes[i]})
		}
	}
	return ds
}

// Result is what the plan would achieve: the mark's figures, the
// deletions as if they all succeeded, and the requests and time spent
// so far. It is what gc --dry-run reports.
func (p *GCPlan) Result() *GCResult {
	res := p.res
	for _, s := range p.steps {
		res.add(s)
	}
	res.Requests = p.counter.Requests()
	res.Duration = time.Since(p.start)
	return &res
}

// add counts the completed step s.
func (r *GCResult) add(s gcStep) {
	switch s.kind {
	case stepNarInfos:
		r.DeletedNarInfos += len(s.keys)
	case stepListings, stepOther:
		r.DeletedOther += len(s.keys)
	case stepNARs:
		r.DeletedNARs += len(s.keys)
	}
	if s.kind != stepOther {
		for _, n := range s.sizes {
			r.BytesFreed += n
		}
	}
}

// Release gives up the plan without deleting: it releases the lock the
// plan holds. It is safe to call more than once, and after Execute.
func (p *GCPlan) Release(ctx context.Context) {
	if p.done || p.lk == nil {
		p.done = true
		return
	}
	p.done = true
	if err := p.lk.Release(context.WithoutCancel(ctx)); err != nil {
		p.log.Warn("releasing the gc lock", "err", err)
	}
}

// Execute is the sweep: it deletes the plan's steps in order, each only
// after the one before it completed, and stops before any delete request
// once the plan's lock is no longer known to be valid (point 5 above).
// Last it lists the locks and deletes the released and stale ones (not
// its own). It releases the lock when it returns, whatever happened; a
// plan is executed at most once. On error the result (if any) counts what
// was deleted until then.
func (p *GCPlan) Execute(ctx context.Context) (*GCResult, error) {
	if p.lk == nil {
		return nil, errors.New("gc: a dry-run plan holds no lock and cannot be executed")
	}
	if p.done {
		return nil, errors.New("gc: the plan's lock was released; plan again")
	}
	defer p.Release(ctx)
	res := p.res
	deleteKeys := func(keys []string, sizes []int64) error {
		for i := 0; i < len(keys); i += deleteBatch {
			j := min(i+deleteBatch, len(keys))
			for k := i; k < j; k++ {
				if p.opts.Report != nil {
					p.opts.Report(keys[k], sizes[k])
				}
			}
			if !p.lk.Valid() {
				return errors.New("gc: the gc lock could not be refreshed in time; stopped deleting (the cache is valid; run gc again)")
			}
			if err := p.del.Delete(ctx, keys[i:j]); err != nil {
				return fmt.Errorf("gc: %w", err)
			}
		}
		return nil
	}
	for _, s := range p.steps {
		locks := 0
		if s.kind == stepOther && p.opts.Locker != nil {
			if list, err := p.opts.Locker.List(ctx); err == nil {
				s.keys, s.sizes = slices.Clip(s.keys), slices.Clip(s.sizes)
				for _, li := range list {
					if !li.Live && li.Key != p.lk.Key() {
						s.keys, s.sizes = append(s.keys, li.Key), append(s.sizes, 0)
						locks++
					}
				}
			}
		}
		if err := deleteKeys(s.keys, s.sizes); err != nil {
			res.Requests = p.counter.Requests()
			return &res, err
		}
		res.add(s)
		res.DeletedLocks += locks
	}
	res.Requests = p.counter.Requests()
	res.Duration = time.Since(p.start)
	return &res, nil
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

// probeDelete asks whether the credentials may delete, changing nothing:
// deleting a missing key succeeds with the permission and is refused
// without it.
func probeDelete(ctx context.Context, del cache.Deleter) error {
	return del.Delete(ctx, []string{cachelock.Prefix + "permission-probe"})
}
