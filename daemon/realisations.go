package daemon

import (
	"context"
	"log/slog"

	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// pushRealisations uploads the realisations (ca-derivations) of the
// closure just pushed, once its narinfos are in: only those whose output
// and dependencies uploaded. It returns how many it wrote. An error fails
// the batch like an upload's: its roots are retried, and the paths are
// found present then.
func pushRealisations(ctx context.Context, st store.Store, p *upload.Pusher, log *slog.Logger, closure []*store.PathInfo, res *upload.Result) (int, error) {
	if !p.Realisations {
		return 0, nil
	}
	paths := make([]string, len(closure))
	in := make(map[string]bool, len(closure))
	for i, pi := range closure {
		paths[i] = pi.Path
		in[pi.Path] = true
	}
	rs, err := store.Realisations(ctx, st, paths)
	if err != nil || len(rs) == 0 {
		return 0, err
	}
	rs = upload.Publishable(rs, func(p string) bool { return in[p] && res.Failed[p] == nil })
	n, err := p.PushRealisations(ctx, rs)
	if n > 0 {
		log.Info("pushed realisations", "count", n, "batch_paths", res.Total)
	}
	return n, err
}
