package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/metrics"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// Daemon ties the sources, the queue and the pusher together.
type Daemon struct {
	cfg    *Config
	q      *queue.Queue
	st     store.Store
	p      *upload.Pusher
	log    *slog.Logger
	notify *Notifier
	m      *metrics.Metrics // nil: metrics off (its methods do nothing)

	stats *counters    // since start (status.go)
	src   *sources     // watcher, spool, reconcile (sources.go)
	logs  *buildLogs   // build logs (buildlogs.go)
	real  realisations // ca-derivations' realisations (realisations.go)

	wake    chan struct{} // something was enqueued or finished
	active  atomic.Int64  // queue items being worked on
	started time.Time
}

// degradedLogEvery spaces the journal's reminders that the cache is
// unusable: steady, not one line per retried path.
const degradedLogEvery = time.Minute

// New makes a Daemon. It does not start anything.
func New(cfg *Config, q *queue.Queue, st store.Store, p *upload.Pusher, log *slog.Logger) *Daemon {
	d := &Daemon{
		cfg: cfg, q: q, st: st, p: p, log: log,
		notify: NewNotifier(log),
		stats:  newCounters(),
		wake:   make(chan struct{}, 1),
	}
	d.src = &sources{cfg: cfg, q: q, st: st, log: log, enq: d}
	d.logs = &buildLogs{cfg: cfg, p: p, q: q, log: log, items: d}
	return d
}

// SetMetrics makes the daemon count skips and queue retries in m. Call it
// before Run.
func (d *Daemon) SetMetrics(m *metrics.Metrics) { d.m = m }

// Degraded reports whether the cache is unusable as configured (wrong
// credentials, an untrusted certificate, a missing bucket): what status
// and systemd's STATUS= call DEGRADED.
func (d *Daemon) Degraded() bool { return d.stats.isDegraded() }

func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Enqueue records paths durably and wakes the dispatcher. It is the one
// way in for every source.
func (d *Daemon) Enqueue(ctx context.Context, paths []string, source string) (int, error) {
	if len(paths) == 0 {
		return 0, nil
	}
	if source == "socket" || source == "spool" {
		paths = d.withOutputs(ctx, paths)
	}
	logDrvs := d.logs.drvs(paths, source)
	paths = d.prefilter(ctx, paths, source)
	if source == "watch" || source == "reconcile" {
		paths = d.notJustPushed(paths)
	}
	paths = withBuildLogDrvs(paths, logDrvs)
	if len(paths) == 0 {
		return 0, nil
	}
	added, err := d.q.Enqueue(paths, source, time.Now())
	if err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	for _, p := range paths {
		d.log.Debug("enqueued", "STORE_PATH", p, "source", source)
	}
	if added > 0 {
		d.poke()
	}
	return added, nil
}

// justPushed is how long a path the hook had pushed is not queued again
// for the watcher's or reconcile's later sight of the same registration.
const justPushed = time.Hour

// notJustPushed drops the paths pushed within justPushed: the hook's PUSH
// usually arrives before the watcher sees the registration, and a second
// push would only log a no-op line.
func (d *Daemon) notJustPushed(paths []string) []string {
	keep := paths[:0:0]
	now := time.Now()
	for _, p := range paths {
		it, ok, err := d.q.Get(p)
		if err == nil && ok && it.State == queue.Done && now.Sub(it.Updated) < justPushed {
			d.log.Debug("already pushed", "STORE_PATH", p, "pushed_via", it.Source)
			continue
		}
		keep = append(keep, p)
	}
	return keep
}

// prefilter drops, before they cost a durable write, the paths the daemon
// would skip anyway: derivations, include/exclude, paths signed by an
// upstream key, and (from the watcher and reconcile) signed paths Nix did
// not build here — substituted or copied in. What cannot be looked up now
// is kept, for processBatch to decide, except the watcher's candidates,
// which are only kept once the database says they are valid.
func (d *Daemon) prefilter(ctx context.Context, paths []string, source string) []string {
	var named []string
	for _, p := range paths {
		if reason := d.cfg.Filter(p, nil); reason != "" {
			d.skip(reason, p)
			continue
		}
		named = append(named, p)
	}
	if len(named) == 0 {
		return nil
	}
	// Usually every path is valid, and one read answers both questions.
	infos, err := d.st.PathInfos(ctx, named)
	if err == nil {
		return d.keepBuiltHere(named, infos, source)
	}
	if errors.Is(err, store.ErrNotValid) && ctx.Err() == nil {
		var valid []string
		if valid, err = d.st.ValidPaths(ctx, named); err == nil {
			if infos, err = d.st.PathInfos(ctx, valid); err == nil {
				return d.keepBuiltHere(named, infos, source)
			}
		}
	}
	if source == "watch" {
		// The watcher's paths are only candidates (a failed build
		// removes its lock too): without the database's word, none is
		// recorded, and reconcile finds the valid ones later.
		d.log.Warn("checking new store paths; reconcile will catch them", "err", err)
		return nil
	}
	return named
}

// keepBuiltHere is prefilter's second half: infos are the valid paths
// among named.
func (d *Daemon) keepBuiltHere(named []string, infos []*store.PathInfo, source string) []string {
	keep := named[:0:0]
	known := make(map[string]bool, len(infos))
	for _, pi := range infos {
		known[pi.Path] = true
		reason := d.cfg.Filter(pi.Path, pi.Sigs)
		// Substituted or copied in: not built here (Nix's "ultimate" flag
		// unset) and signed by whoever it came from. Paths added locally
		// (builtins.toFile, nix-store --add) have neither, and are pushed.
		if reason == "" && !pi.Ultimate && len(pi.Sigs) > 0 && (source == "watch" || source == "reconcile") {
			reason = "not-built-here"
		}
		if reason != "" {
			d.skip(reason, pi.Path)
			continue
		}
		keep = append(keep, pi.Path)
	}
	if source == "watch" {
		return keep // a lock removed without a registration: a failed build
	}
	for _, p := range named {
		if !known[p] {
			keep = append(keep, p) // not valid (yet): process says why
		}
	}
	return keep
}

func (d *Daemon) skip(reason, path string) {
	d.stats.skip(reason)
	d.m.Skip(reason)
	d.log.Debug("skipped", "STORE_PATH", path, "reason", reason)
}

// Run serves until ctx ends, then shuts down: it stops taking work, gives
// in-flight uploads cfg.ShutdownTimeout to finish, and puts the rest back in
// the queue. ln is the hook socket (nil: no socket).
func (d *Daemon) Run(ctx context.Context, ln net.Listener) error {
	d.started = time.Now()
	if n, err := d.q.Requeue(time.Now()); err != nil {
		return fmt.Errorf("recover queue: %w", err)
	} else if n > 0 {
		d.log.Info("resuming uploads interrupted by the last stop", "count", n)
	}
	if err := d.src.initCheckpoint(); err != nil {
		return err
	}
	if err := d.noteTarget(); err != nil {
		return err
	}
	if err := d.p.EnsureCacheInfo(ctx); err != nil {
		// Not fatal: the cache may be down now and up later, or its
		// configuration fixed; uploads retry.
		d.noteFailure(err)
		if !cache.IsConfig(err) {
			d.log.Error("cannot reach the cache yet; uploads will be retried", "target", d.p.Target.String(), "err", err)
		}
	}

	// Sources stop with ctx; workers get their own context so that they
	// can finish after ctx ends, within the shutdown deadline.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var sources sync.WaitGroup
	if ln != nil {
		sources.Add(1)
		go func() {
			defer sources.Done()
			if err := hook.Serve(ctx, ln, d, d.log); err != nil {
				d.log.Error("hook socket stopped", "err", err)
			}
		}()
	}
	reconcileNow := make(chan struct{}, 1)
	if d.cfg.WatchStore {
		w, err := newStoreWatcher(d.cfg.StoreDir)
		if err != nil {
			d.log.Error("cannot watch the store; relying on reconcile and the hook", "dir", d.cfg.StoreDir, "err", err)
		} else {
			sources.Add(1)
			go func() {
				defer sources.Done()
				d.src.watch(ctx, w, reconcileNow)
			}()
		}
	}
	sources.Add(1)
	go func() {
		defer sources.Done()
		d.src.reconcileLoop(ctx, reconcileNow)
	}()
	if len(d.cfg.Pins) > 0 {
		pins := &pinner{pins: d.cfg.Pins, every: min(pinEvery, d.cfg.ReconcileInterval), st: d.st, p: d.p, log: d.log}
		sources.Add(1)
		go func() {
			defer sources.Done()
			pins.loop(ctx)
		}()
	}
	sources.Add(1)
	go func() {
		defer sources.Done()
		d.probeLoop(ctx)
	}()
	if d.notify.Watchdog > 0 {
		sources.Add(1)
		go func() {
			defer sources.Done()
			d.notify.watchdog(ctx)
		}()
	}

	d.notify.Ready()
	attrs := []any{"target", d.p.Target.String(), "compression", d.p.Compressor.String(), "socket", addrOf(ln), "watch_store", d.cfg.WatchStore, "state_dir", d.cfg.StateDir}
	if d.p.Key != nil {
		attrs = append(attrs, "public_key", d.p.Key.Public().String())
	}
	if d.stats.isDegraded() {
		d.log.Warn("nixpushd ready, but DEGRADED: the cache cannot be used until its configuration is fixed; uploads are retried", attrs...)
	} else {
		d.log.Info("nixpushd ready", attrs...)
	}

	var workers sync.WaitGroup
	d.dispatch(ctx, workCtx, &workers)

	// Shutdown: what fails from now on is not retried, so that an
	// unreachable cache does not hold the stop for the retry schedule.
	d.p.StopRetrying()
	d.notify.Stopping()
	d.log.Info("stopping: no new work; waiting for uploads in flight", "active", d.active.Load(), "deadline", d.cfg.ShutdownTimeout)
	finished := make(chan struct{})
	go func() { workers.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(d.cfg.ShutdownTimeout):
		d.log.Warn("shutdown deadline reached; unfinished uploads go back to the queue", "active", d.active.Load())
		cancelWork()
		<-finished
	}
	sources.Wait()
	if n, err := d.q.Requeue(time.Now()); err != nil {
		return fmt.Errorf("persist unfinished work: %w", err)
	} else if n > 0 {
		d.log.Info("unfinished uploads saved for the next start", "count", n)
	}
	return nil
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// dispatch claims due items while there is room and starts a worker for
// each, until ctx ends. It sleeps until something is enqueued, a worker
// finishes, or the next retry is due: an idle daemon uses no CPU.
func (d *Daemon) dispatch(ctx, workCtx context.Context, workers *sync.WaitGroup) {
	for {
		d.notify.Beat()
		if ctx.Err() != nil {
			return
		}
		free := d.cfg.MaxActive - int(d.active.Load())
		if free > 0 {
			// Items claimed together are one batch: one closure, one
			// set of existence checks, one pool.
			items, err := d.q.Claim(time.Now(), free)
			if err != nil {
				d.log.Error("reading the queue", "err", err)
			}
			if len(items) > 0 {
				d.active.Add(int64(len(items)))
				workers.Add(1)
				go func() {
					defer workers.Done()
					d.processBatch(workCtx, items)
					d.active.Add(-int64(len(items)))
					d.poke()
				}()
			}
		}
		d.updateStatus()
		wait := time.Duration(-1)
		if next, ok, err := d.q.NextDue(); err == nil && ok {
			wait = max(time.Until(next), 0)
			if wait == 0 && free <= 0 {
				wait = -1 // due, but no room: a finishing worker pokes us
			}
		}
		if d.notify.Watchdog > 0 && (wait < 0 || wait > d.notify.Watchdog/3) {
			wait = d.notify.Watchdog / 3 // keep the heartbeat fresh
		}
		var timer <-chan time.Time
		var t *time.Timer
		if wait >= 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// processBatch uploads queue items (root paths) with their closures, as
// one push, and records each item's outcome in the queue.
func (d *Daemon) processBatch(ctx context.Context, items []queue.Item) {
	start := time.Now()
	items, logs := d.logs.take(ctx, items)
	d.stats.addBuildLogs(logs)
	d.m.BuildLogs(logs)
	if len(items) == 0 {
		return
	}
	paths := make([]string, len(items))
	for i, it := range items {
		paths[i] = it.Path
	}
	// The common case first: every root is valid and still wanted, and
	// the closure's query reads the roots' infos too.
	if closure, err := d.st.Closure(ctx, paths); err == nil && d.allWanted(items, closure) {
		d.pushClosure(ctx, start, items, closure)
		return
	}
	valid, err := d.st.ValidPaths(ctx, paths)
	if err != nil {
		d.retryAll(ctx, items, err)
		return
	}
	isValid := map[string]bool{}
	for _, p := range valid {
		isValid[p] = true
	}
	var infos []*store.PathInfo
	if len(valid) > 0 {
		if infos, err = d.st.PathInfos(ctx, valid); err != nil {
			d.retryAll(ctx, items, err)
			return
		}
	}
	sigs := map[string][]string{}
	for _, pi := range infos {
		sigs[pi.Path] = pi.Sigs
	}
	var roots []queue.Item
	for _, it := range items {
		log := d.log.With("STORE_PATH", it.Path)
		if !isValid[it.Path] {
			d.fail(it, log, "not a valid store path any more (garbage-collected before upload?)")
			continue
		}
		if reason := d.cfg.Filter(it.Path, sigs[it.Path]); reason != "" {
			d.skip(reason, it.Path)
			if err := d.q.Complete(it.Path, time.Now()); err != nil {
				log.Error("recording skip", "err", err)
			}
			continue
		}
		roots = append(roots, it)
	}
	if len(roots) == 0 {
		return
	}
	rootPaths := make([]string, len(roots))
	for i, it := range roots {
		rootPaths[i] = it.Path
	}
	closure, err := d.st.Closure(ctx, rootPaths)
	if errors.Is(err, store.ErrNotValid) && len(roots) > 1 {
		// One root's closure lost a path: work out which, one by one.
		for _, it := range roots {
			d.processBatch(ctx, []queue.Item{it})
		}
		return
	}
	if errors.Is(err, store.ErrNotValid) {
		d.fail(roots[0], d.log.With("STORE_PATH", roots[0].Path), "part of its closure is no longer valid (garbage-collected before upload?)")
		return
	}
	if err != nil {
		d.retryAll(ctx, roots, err)
		return
	}
	d.pushClosure(ctx, start, roots, closure)
}

// allWanted reports whether no root of items is filtered out now (the
// configuration or a path's signatures may have changed since enqueue).
func (d *Daemon) allWanted(items []queue.Item, closure []*store.PathInfo) bool {
	sigs := make(map[string][]string, len(items))
	for _, it := range items {
		sigs[it.Path] = nil
	}
	for _, pi := range closure {
		if _, ok := sigs[pi.Path]; ok {
			sigs[pi.Path] = pi.Sigs
		}
	}
	for _, it := range items {
		if d.cfg.Filter(it.Path, sigs[it.Path]) != "" {
			return false
		}
	}
	return true
}

// pushClosure uploads closure, the closure of roots, and records each
// root's outcome.
func (d *Daemon) pushClosure(ctx context.Context, start time.Time, roots []queue.Item, closure []*store.PathInfo) {
	res, err := d.p.Push(ctx, closure)
	realisations := 0
	if err == nil {
		realisations, err = d.real.push(ctx, d.st, d.p, d.log, closure, res)
	}
	d.stats.addPush(res, realisations)
	d.m.NarListings(res.NarListings)
	d.m.DebugInfoLinks(res.DebugInfoLinks)
	d.m.Realisations(realisations)
	if err != nil {
		for _, it := range roots {
			log := d.log.With("STORE_PATH", it.Path)
			if cache.IsPathPermanent(err) {
				d.fail(it, log, err.Error())
			} else {
				d.retry(ctx, it, log, err)
			}
		}
		return
	}
	outs := newOutcomes(closure, res)
	d.noteSuccess()
	var done []queue.Item
	var counts []rootCounts
	for _, it := range roots {
		log := d.log.With("STORE_PATH", it.Path)
		failedPath, c, ferr := outs.root(it.Path)
		switch {
		case ferr == nil:
			done = append(done, it)
			counts = append(counts, c)
		case cache.IsPathPermanent(ferr):
			// A corrupt or vanished path in the closure will never
			// upload: the root cannot either.
			reason := ferr.Error()
			if failedPath != it.Path {
				reason = "closure member " + failedPath + " cannot be uploaded: " + reason
			}
			d.fail(it, log, reason)
		default:
			d.retry(ctx, it, log, ferr)
		}
	}
	donePaths := make([]string, len(done))
	for i, it := range done {
		donePaths[i] = it.Path
	}
	if err := d.q.CompleteAll(donePaths, time.Now()); err != nil {
		d.log.Error("recording completion", "err", err, "count", len(donePaths))
		return
	}
	// The other files the batch wrote, when there are any: the batch's,
	// like batch_paths.
	var files []any
	for _, f := range []struct {
		key string
		n   int
	}{{"batch_nar_listings", res.NarListings}, {"batch_debug_info_links", res.DebugInfoLinks}, {"batch_realisations", realisations}} {
		if f.n > 0 {
			files = append(files, f.key, f.n)
		}
	}
	for i, it := range done {
		// The counts are the root's closure's: uploaded + already_cached
		// + signed = closure (a path uploaded for another root of the
		// batch counts as uploaded for each; signed: cached, and given
		// our signature); stored_bytes leaves out NAR files that were
		// already there (reused_nars). batch_paths is the union of the
		// closures of the batch's roots.
		c := counts[i]
		attrs := []any{"STORE_PATH", it.Path, "closure", c.closure, "batch", len(roots), "batch_paths", res.Total,
			"uploaded", c.uploaded, "already_cached", c.closure - c.uploaded - c.signed, "signed", c.signed, "reused_nars", c.reused,
			"nar_bytes", c.narBytes, "stored_bytes", c.stored}
		attrs = append(attrs, files...)
		d.log.Info("pushed", append(attrs, "duration", time.Since(start).Round(time.Millisecond), "source", it.Source)...)
	}
}

func (d *Daemon) retryAll(ctx context.Context, items []queue.Item, err error) {
	for _, it := range items {
		d.retry(ctx, it, d.log.With("STORE_PATH", it.Path), err)
	}
}

// withOutputs adds to paths the valid outputs of the derivations among
// them. Nix 2.8's post-build-hook passes an empty OUT_PATHS and only
// DRV_PATH (NixOS/nix#6446): what was built are the derivation's outputs,
// and they are queued before the hook is acknowledged.
func (d *Daemon) withOutputs(ctx context.Context, paths []string) []string {
	out := paths
	for _, p := range paths {
		if !strings.HasSuffix(p, ".drv") {
			continue
		}
		outs, err := d.st.DerivationOutputs(ctx, p)
		if err == nil && len(outs) > 0 {
			outs, err = d.st.ValidPaths(ctx, outs)
		}
		if err != nil {
			d.log.Warn("cannot list the derivation's outputs; reconcile will find them", "STORE_PATH", p, "err", err)
			continue
		}
		out = append(out, outs...)
	}
	return out
}

func (d *Daemon) fail(it queue.Item, log *slog.Logger, reason string) {
	log.Error("upload failed permanently; fix the path and push it again", "reason", reason)
	if err := d.q.Fail(it.Path, reason, time.Now()); err != nil {
		log.Error("recording failure", "err", err)
	}
}

// retry puts the item back with capped, jittered exponential backoff. An
// item interrupted by shutdown stays in flight: Run requeues it.
func (d *Daemon) retry(ctx context.Context, it queue.Item, log *slog.Logger, cause error) {
	if ctx.Err() != nil {
		return
	}
	delay := retry.Backoff(it.Attempts+1, time.Second, d.cfg.MaxRetryDelay, rand.Float64)
	d.m.QueueRetry()
	msg := cause.Error()
	d.noteFailure(cause)
	lvl := slog.LevelWarn
	if cache.IsConfig(cause) {
		// Every path fails alike: noteFailure says so once a minute.
		lvl = slog.LevelDebug
	}
	log.Log(ctx, lvl, "upload failed; will retry", "attempt", it.Attempts+1, "retry_in", delay.Round(time.Millisecond), "err", msg)
	if err := d.q.Retry(it.Path, msg, time.Now().Add(delay), time.Now()); err != nil {
		log.Error("recording retry", "err", err)
	}
}

// noteFailure records a failure of the target. A configuration error
// makes the daemon degraded, logged at once and then once a minute.
func (d *Daemon) noteFailure(err error) {
	logIt, changed, since := d.stats.failed(err, time.Now(), degradedLogEvery)
	if logIt {
		pending := 0
		if st, err := d.q.Stats(); err == nil {
			pending = st.Pending + st.InFlight
		}
		d.log.Error("DEGRADED: the cache cannot be used until this is fixed; uploads are retried", "target", d.p.Target.String(),
			"err", err.Error(), "since", since.Format(time.RFC3339), "waiting", pending)
	}
	if changed {
		d.poke() // the dispatcher refreshes STATUS=
	}
}

// noteSuccess clears the failure state after an upload went through.
func (d *Daemon) noteSuccess() {
	if was, since := d.stats.succeeded(); was {
		d.log.Info("the cache works again", "target", d.p.Target.String(), "degraded_for", time.Since(since).Round(time.Second))
		d.poke()
	}
}

// probeLoop checks a degraded cache once a minute, even with nothing to
// upload, so that a fixed configuration shows at once (and a broken one
// keeps its steady line in the journal).
func (d *Daemon) probeLoop(ctx context.Context) {
	t := time.NewTicker(cmp.Or(d.cfg.ProbeEvery, degradedLogEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !d.stats.isDegraded() {
			continue
		}
		if err := d.p.CheckCache(ctx); err != nil {
			if ctx.Err() == nil {
				d.noteFailure(err)
			}
			continue
		}
		d.noteSuccess()
	}
}

// metaTarget is the cache the queue's history of pushes is about.
const metaTarget = "target"

// noteTarget forgets the pushes done to another cache than this start's:
// status lists only pushes to the current target, and a path pushed to
// the old cache is not taken as pushed to the new one.
func (d *Daemon) noteTarget() error {
	target := d.p.Target.String()
	old, ok, err := d.q.Meta(metaTarget)
	if err != nil || (ok && old == target) {
		return err
	}
	if ok {
		if err := d.q.PruneDone(0); err != nil {
			return err
		}
		d.log.Info("the cache changed since the last start: the history of pushes to the old one is cleared", "target", target, "old_target", old)
	}
	return d.q.SetMeta(metaTarget, target)
}

// Snapshot gathers the current status.
func (d *Daemon) Snapshot() (*Status, error) {
	st, err := QueueStatus(d.q)
	if err != nil {
		return nil, err
	}
	st.Target, st.Uptime = d.p.Target.String(), time.Since(d.started).Round(time.Second).String()
	d.stats.fill(st)
	if d.p.Key != nil {
		st.PublicKey = d.p.Key.Public().String()
		st.SecretKeyFile = d.cfg.SecretKeyFile
	}
	return st, nil
}

// The daemon answers the hook socket (see Run).
var _ hook.Handler = (*Daemon)(nil)

// StatusJSON answers the socket's STATUS request.
func (d *Daemon) StatusJSON(context.Context) ([]byte, error) {
	st, err := d.Snapshot()
	if err != nil {
		return nil, err
	}
	return json.Marshal(st)
}

// updateStatus tells systemd the queue's shape.
func (d *Daemon) updateStatus() {
	stats, err := d.q.Stats()
	if err != nil {
		return
	}
	d.notify.Status(d.stats.systemdStatus(stats, d.active.Load()))
}
