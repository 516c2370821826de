package daemon

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// realisations uploads the realisations (ca-derivations) of what the
// daemon's batches upload. A batch's closure is mostly paths earlier
// batches pushed, whose realisations went with them: only the paths a
// batch uploaded are looked up in the Nix database, and those of a batch
// whose realisations failed, until they are written.
type realisations struct {
	mu      sync.Mutex
	pending map[string]bool // looked up, not written yet (an error)
}

// push uploads the realisations of closure's members that res uploaded
// (or that are pending), once their narinfos are in: only those whose
// output and dependencies uploaded. It returns how many it wrote. An
// error fails the batch like an upload's: its roots are retried, and the
// paths, found present then, stay pending.
func (r *realisations) push(ctx context.Context, st store.Store, p *upload.Pusher, log *slog.Logger, closure []*store.PathInfo, res *upload.Result) (int, error) {
	if !p.Realisations {
		return 0, nil
	}
	in := make(map[string]bool, len(closure))
	var paths []string
	r.mu.Lock()
	for _, pi := range closure {
		in[pi.Path] = true
		if _, up := res.Uploads[pi.Path]; up || r.pending[pi.Path] {
			paths = append(paths, pi.Path)
		}
	}
	r.mu.Unlock()
	if len(paths) == 0 {
		return 0, nil
	}
	n, err := func() (int, error) {
		rs, err := store.Realisations(ctx, st, paths)
		if err != nil || len(rs) == 0 {
			return 0, err
		}
		rs = upload.Publishable(rs, func(p string) bool { return in[p] && res.Failed[p] == nil })
		return p.PushRealisations(ctx, rs)
	}()
	r.mu.Lock()
	for _, path := range paths {
		if err != nil {
			if r.pending == nil {
				r.pending = map[string]bool{}
			}
			r.pending[path] = true
		} else {
			delete(r.pending, path)
		}
	}
	r.mu.Unlock()
	if n > 0 {
		log.Info("pushed realisations", "count", n, "batch_paths", res.Total)
	}
	return n, err
}
