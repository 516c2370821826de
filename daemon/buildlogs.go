package daemon

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/upload"
)

// Build logs (--build-logs): a derivation that reaches the daemon through
// the hook's socket or spool was just built here — the post-build-hook
// sends its DRV_PATH among the paths — so its build log is in Nix's log
// directory. Such a .drv is queued even when derivations themselves are
// not pushed; processBatch hands it to buildLogs.take first, which uploads
// its log to log/<drv> and completes it (or leaves it to the closure push
// with --push-derivations). Derivations found by the watcher or reconcile
// are only instantiated, mostly never built: they are not looked at.

// buildLogWorkers bounds the log uploads of one batch at once; the
// Pusher's IOJobs bounds the requests themselves.
const buildLogWorkers = 8

// buildLogs uploads the build logs of the derivations the hook sends.
type buildLogs struct {
	cfg   *Config
	p     *upload.Pusher
	q     *queue.Queue
	log   *slog.Logger
	items itemOutcomes
}

// itemOutcomes records what became of a queue item that failed (the
// Daemon's fail and retry).
type itemOutcomes interface {
	fail(it queue.Item, log *slog.Logger, reason string)
	retry(ctx context.Context, it queue.Item, log *slog.Logger, cause error)
}

// fromHook says whether source delivers what Nix just built.
func fromHook(source string) bool { return source == "socket" || source == "spool" }

func isDrv(p string) bool { return strings.HasSuffix(p, ".drv") }

// drvs returns the derivations among paths whose build logs are to be
// uploaded: none unless the Pusher has a BuildLogDir.
func (b *buildLogs) drvs(paths []string, source string) []string {
	if b.p.BuildLogDir == "" || !fromHook(source) {
		return nil
	}
	var drvs []string
	for _, p := range paths {
		if isDrv(p) {
			drvs = append(drvs, p)
		}
	}
	return drvs
}

// withBuildLogDrvs adds to kept (what prefilter kept) the derivations of
// drvs it dropped: they are queued for their logs.
func withBuildLogDrvs(kept, drvs []string) []string {
	for _, drv := range drvs {
		if !slices.Contains(kept, drv) {
			kept = append(kept, drv)
		}
	}
	return kept
}

// take uploads the build logs of the hook's derivations among items and
// returns the items left for the closure push — the others, and those
// derivations when derivations are pushed too — and how many logs it
// uploaded. A derivation whose log upload failed is retried or failed
// here, like a path.
func (b *buildLogs) take(ctx context.Context, items []queue.Item) (rest []queue.Item, uploadedLogs int) {
	if b.p.BuildLogDir == "" {
		return items, 0
	}
	var jobs []int
	for i, it := range items {
		if isDrv(it.Path) && fromHook(it.Source) {
			jobs = append(jobs, i)
		}
	}
	if len(jobs) == 0 {
		return items, 0
	}
	errs := make([]error, len(jobs))
	uploaded := make([]bool, len(jobs))
	sem := make(chan struct{}, buildLogWorkers)
	var wg sync.WaitGroup
	for j, i := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[j] = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			uploaded[j], errs[j] = b.p.PushBuildLog(ctx, items[i].Path)
		})
	}
	wg.Wait()

	done := map[int]bool{} // items finished here
	var complete []string
	n := 0
	for j, i := range jobs {
		it := items[i]
		log := b.log.With("STORE_PATH", it.Path)
		switch err := errs[j]; {
		case err == nil:
			if uploaded[j] {
				n++
				log.Info("pushed build log", "key", upload.BuildLogKey(it.Path), "source", it.Source)
			} else {
				log.Debug("no build log kept by Nix", "log_dir", b.p.BuildLogDir)
			}
			if !b.cfg.PushDerivations {
				done[i] = true
				complete = append(complete, it.Path)
			}
		case cache.IsPathPermanent(err):
			done[i] = true
			b.items.fail(it, log, err.Error())
		default:
			done[i] = true
			b.items.retry(ctx, it, log, err)
		}
	}
	if len(complete) > 0 {
		if err := b.q.CompleteAll(complete, time.Now()); err != nil {
			b.log.Error("recording completion", "err", err, "count", len(complete))
		}
	}
	for i, it := range items {
		if !done[i] {
			rest = append(rest, it)
		}
	}
	return rest, n
}
