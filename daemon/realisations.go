package daemon

import (
	"context"

	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// pushRealisations uploads the realisations (ca-derivations) of the
// closure just pushed, once its narinfos are in: only those whose output
// and dependencies uploaded. An error fails the batch like an upload's:
// its roots are retried, and the paths are found present then.
func (d *Daemon) pushRealisations(ctx context.Context, closure []*store.PathInfo, res *upload.Result) error {
	if !d.p.Realisations {
		return nil
	}
	paths := make([]string, len(closure))
	in := make(map[string]bool, len(closure))
	for i, pi := range closure {
		paths[i] = pi.Path
		in[pi.Path] = true
	}
	rs, err := store.Realisations(ctx, d.st, paths)
	if err != nil || len(rs) == 0 {
		return err
	}
	rs = upload.Publishable(rs, func(p string) bool { return in[p] && res.Failed[p] == nil })
	n, err := d.p.PushRealisations(ctx, rs)
	if n > 0 {
		d.log.Info("pushed realisations", "count", n, "batch_paths", res.Total)
	}
	return err
}
