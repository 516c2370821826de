package daemon

// The daemon's sources besides the hook socket (which Run serves with
// hook.Serve): the store watcher, the hook's spool and reconciliation.

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/store"
)

// sources finds the paths to push and hands them to enq (the Daemon).
type sources struct {
	cfg *Config
	q   *queue.Queue
	st  store.Store
	log *slog.Logger
	enq enqueuer
}

// enqueuer is where sources hand their paths: Daemon.Enqueue.
type enqueuer interface {
	Enqueue(ctx context.Context, paths []string, source string) (int, error)
}

// Where reconcile has looked up to: metaSeq holds the Seq of the last
// registration seen (store.Registered), metaCheckpoint the registration
// time (unix seconds) that older versions used, and that a state without
// metaSeq is reconciled from once, with a scan of the whole database.
const (
	metaSeq        = "reconcile-seq"
	metaCheckpoint = "reconcile-checkpoint"
)

// initCheckpoint records, on the very first start, that reconcile begins
// now: the store's history is `nixpushd push`'s job, not the daemon's.
func (s *sources) initCheckpoint() error {
	_, ok, err := s.q.Meta(metaCheckpoint)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	now := time.Now().Unix()
	s.log.Info("first start: pushing paths registered from now on (use `nixpushd push` for older ones)")
	if seq, err := s.st.LastSeq(context.Background()); err == nil {
		if err := s.q.SetMeta(metaSeq, strconv.FormatInt(seq, 10)); err != nil {
			return err
		}
	}
	return s.q.SetMeta(metaCheckpoint, strconv.FormatInt(now, 10))
}

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
func (s *sources) watch(ctx context.Context, w *fsnotify.Watcher, reconcileNow chan<- struct{}) {
	defer w.Close()
	s.watchEvents(ctx, w.Events, w.Errors, reconcileNow)
}

// watchEvents is watch's loop over the watcher's channels.
func (s *sources) watchEvents(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error, reconcileNow chan<- struct{}) {
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
			if p := lockTarget(s.cfg.StoreDir, ev.Name); p != "" {
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
				s.log.Warn("store watcher overflowed; reconciling now")
				select {
				case reconcileNow <- struct{}{}:
				default:
				}
			} else {
				s.log.Warn("store watcher", "err", err)
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
			if _, err := s.enq.Enqueue(ctx, paths, "watch"); err != nil {
				s.log.Error("enqueue from store watcher; reconcile will catch them", "err", err)
			}
		}
	}
}

// reconcileLoop drains the hook spool and reconciles at start, every
// ReconcileInterval, and when asked. The spool goes first, so paths a hook
// left while the daemon was down are recorded as coming from it; it is
// drained again later in case a hook spooled while the socket was briefly
// unavailable.
func (s *sources) reconcileLoop(ctx context.Context, now <-chan struct{}) {
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
		s.drainSpool(ctx)
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reconcile", "err", err)
		}
		if err := s.q.PruneDone(10000); err != nil {
			s.log.Warn("pruning queue history", "err", err)
		}
		t.Reset(s.cfg.ReconcileInterval)
	}
}

// drainSpool queues the paths hooks left in the spool directory.
func (s *sources) drainSpool(ctx context.Context) {
	n, err := hook.DrainSpool(ctx, s.cfg.SpoolDir, func(ctx context.Context, paths []string) error {
		_, err := s.enq.Enqueue(ctx, paths, "spool")
		return err
	}, s.log)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("draining the hook spool", "dir", s.cfg.SpoolDir, "err", err)
	case n > 0:
		s.log.Info("took paths the hook spooled while the daemon was unreachable", "count", n, "dir", s.cfg.SpoolDir)
	}
}

// reconcile enqueues paths registered since the checkpoint that the queue
// has never seen: those whose watcher event was missed, or that were built
// while the daemon was down. It reads only the registrations after the
// last one it saw; a state from before such checkpoints is reconciled from
// its registration time once.
func (s *sources) reconcile(ctx context.Context) error {
	start := time.Now()
	v, bySeq, err := s.q.Meta(metaSeq)
	if err != nil {
		return err
	}
	seq, _ := strconv.ParseInt(v, 10, 64)
	var regs []store.Registered
	if bySeq {
		regs, err = s.st.RegisteredAfter(ctx, seq)
	} else {
		// Read the newest Seq first: whatever is registered during the
		// scan has a larger one, and is found next time if the scan
		// missed it.
		if seq, err = s.st.LastSeq(ctx); err == nil {
			v, _, err = s.q.Meta(metaCheckpoint)
			if err != nil {
				return err
			}
			cp, _ := strconv.ParseInt(v, 10, 64)
			regs, err = s.st.RegisteredSince(ctx, cp)
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
		if _, ok, err := s.q.Get(r.Path); err != nil {
			return err
		} else if !ok {
			fresh = append(fresh, r.Path)
		}
	}
	if len(fresh) > 0 {
		if _, err := s.enq.Enqueue(ctx, fresh, "reconcile"); err != nil {
			return err
		}
		s.log.Info("reconcile found paths without a watcher event", "count", len(fresh))
	}
	s.log.Debug("reconciled", "registered_since_checkpoint", len(regs), "new", len(fresh), "took", time.Since(start))
	if newSeq != seq || !bySeq {
		return s.q.SetMeta(metaSeq, strconv.FormatInt(newSeq, 10))
	}
	return nil
}
