package daemon

// The daemon's sources besides the hook socket (which Run serves with
// hook.Serve): the store watcher, the hook's spool and reconciliation.

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

func newStoreWatcher(dir string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// lockTarget returns the store path whose lock file name is, or "".
// Nix deletes /nix/store/<path>.lock only after registering <path>.
func lockTarget(storeDir, name string) string {
	if filepath.Dir(name) != storeDir || !strings.HasSuffix(name, ".lock") {
		return ""
	}
	p := strings.TrimSuffix(name, ".lock")
	if _, err := nar.ParseStorePath(p); err != nil {
		return ""
	}
	return p
}

// How long the watcher gathers lock removals before it hands them over:
// a build registers its outputs together. In a burst (a flush less than
// burstWindow ago) it gathers longer, so that a stream of new paths costs
// a durable queue write and a database read per burstSettle, not per
// settle.
const (
	settle      = 50 * time.Millisecond
	burstSettle = 250 * time.Millisecond
	burstWindow = time.Second
)

// watch turns lock removals into candidates, batches them for a moment (a
// build registers its outputs together), keeps the valid ones and enqueues
// them. An event overflow asks reconcile to run at once.
func (d *Daemon) watch(ctx context.Context, w *fsnotify.Watcher, reconcileNow chan<- struct{}) {
	defer w.Close()
	d.watchEvents(ctx, w.Events, w.Errors, reconcileNow)
}

// watchEvents is watch's loop over the watcher's channels.
func (d *Daemon) watchEvents(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error, reconcileNow chan<- struct{}) {
	pending := map[string]bool{}
	var flush <-chan time.Time
	var t *time.Timer
	var lastFlush time.Time
	for {
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
				continue
			}
			if p := lockTarget(d.cfg.StoreDir, ev.Name); p != "" {
				pending[p] = true
				if flush == nil {
					wait := settle
					if time.Since(lastFlush) < burstWindow {
						wait = burstSettle
					}
					t = time.NewTimer(wait)
					flush = t.C
				}
			}
		case err, ok := <-errs:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				d.log.Warn("store watcher overflowed; reconciling now")
				select {
				case reconcileNow <- struct{}{}:
				default:
				}
			} else {
				d.log.Warn("store watcher", "err", err)
			}
		case <-flush:
			flush, t, lastFlush = nil, nil, time.Now()
			paths := make([]string, 0, len(pending))
			for p := range pending {
				paths = append(paths, p)
			}
			clear(pending)
			// Enqueue's prefilter drops the paths that are not valid: a
			// failed build removes its lock too.
			if _, err := d.Enqueue(ctx, paths, "watch"); err != nil {
				d.log.Error("enqueue from store watcher; reconcile will catch them", "err", err)
			}
		}
	}
}

// reconcileLoop drains the hook spool and reconciles at start, every
// ReconcileInterval, and when asked. The spool goes first, so paths a hook
// left while the daemon was down are recorded as coming from it; it is
// drained again later in case a hook spooled while the socket was briefly
// unavailable.
func (d *Daemon) reconcileLoop(ctx context.Context, now <-chan struct{}) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-now:
			t.Stop()
		}
		d.drainSpool(ctx)
		if err := d.reconcile(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("reconcile", "err", err)
		}
		if err := d.q.PruneDone(10000); err != nil {
			d.log.Warn("pruning queue history", "err", err)
		}
		t.Reset(d.cfg.ReconcileInterval)
	}
}

// drainSpool queues the paths hooks left in the spool directory.
func (d *Daemon) drainSpool(ctx context.Context) {
	n, err := hook.DrainSpool(ctx, d.cfg.SpoolDir, func(ctx context.Context, paths []string) error {
		_, err := d.Enqueue(ctx, paths, "spool")
		return err
	}, d.log)
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Error("draining the hook spool", "dir", d.cfg.SpoolDir, "err", err)
	case n > 0:
		d.log.Info("took paths the hook spooled while the daemon was unreachable", "count", n, "dir", d.cfg.SpoolDir)
	}
}

// reconcile enqueues paths registered since the checkpoint that the queue
// has never seen: those whose watcher event was missed, or that were built
// while the daemon was down. It reads only the registrations after the
// last one it saw; a state from before such checkpoints is reconciled from
// its registration time once.
func (d *Daemon) reconcile(ctx context.Context) error {
	start := time.Now()
	v, bySeq, err := d.q.Meta(metaSeq)
	if err != nil {
		return err
	}
	seq, _ := strconv.ParseInt(v, 10, 64)
	var regs []store.Registered
	if bySeq {
		regs, err = d.st.RegisteredAfter(ctx, seq)
	} else {
		// Read the newest Seq first: whatever is registered during the
		// scan has a larger one, and is found next time if the scan
		// missed it.
		if seq, err = d.st.LastSeq(ctx); err == nil {
			v, _, err = d.q.Meta(metaCheckpoint)
			if err != nil {
				return err
			}
			cp, _ := strconv.ParseInt(v, 10, 64)
			regs, err = d.st.RegisteredSince(ctx, cp)
		}
	}
	if errors.Is(err, errors.ErrUnsupported) {
		return nil // CLI backend: the watcher and the hook must do
	}
	if err != nil {
		return err
	}
	var fresh []string
	newSeq := seq
	for _, r := range regs {
		newSeq = max(newSeq, r.Seq)
		if _, ok, err := d.q.Get(r.Path); err != nil {
			return err
		} else if !ok {
			fresh = append(fresh, r.Path)
		}
	}
	if len(fresh) > 0 {
		if _, err := d.Enqueue(ctx, fresh, "reconcile"); err != nil {
			return err
		}
		d.log.Info("reconcile found paths without a watcher event", "count", len(fresh))
	}
	d.log.Debug("reconciled", "registered_since_checkpoint", len(regs), "new", len(fresh), "took", time.Since(start))
	if newSeq != seq || !bySeq {
		return d.q.SetMeta(metaSeq, strconv.FormatInt(newSeq, 10))
	}
	return nil
}
