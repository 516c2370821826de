package upload

import (
	"bytes"
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/nar"
)

// PushRealisations uploads realisations (ca-derivations) to
// realisations/<id>.doi as Nix's registerDrvOutput writes them
// (application/json), signed by p.Key on top of the signatures the local
// store has. Call it only once the narinfos of each one's OutPath and
// dependencies are in the cache: a client that finds a realisation
// substitutes its path next. An unsigned Pusher does not overwrite a
// realisation that is there (it may be signed). It returns how many
// were written.
func (p *Pusher) PushRealisations(ctx context.Context, rs []*nar.Realisation) (int, error) {
	p.init()
	written := make([]bool, len(rs))
	g, gctx := errgroup.WithContext(ctx)
	for i, r := range rs {
		g.Go(func() error {
			if p.Key != nil {
				r.Sign(p.Key)
			}
			body, err := r.MarshalJSON()
			if err != nil {
				return err
			}
			key := r.Key()
			if p.Key == nil {
				there, err := p.t.Exists(gctx, key)
				if err != nil {
					return fmt.Errorf("upload realisation %s: %w", key, err)
				}
				if there {
					return nil
				}
			}
			err = p.t.Put(gctx, key, bytes.NewReader(body), int64(len(body)), cache.TypeJSON)
			if err != nil {
				return fmt.Errorf("upload realisation %s: %w", key, err)
			}
			written[i] = true
			p.log().Debug("uploaded realisation", "STORE_PATH", nar.StoreDir+"/"+r.OutPath, "key", key)
			return nil
		})
	}
	err := g.Wait()
	n := 0
	for _, w := range written {
		if w {
			n++
		}
	}
	return n, err
}

// Publishable returns the realisations of rs whose output and
// dependencies are all among uploaded (full store paths now in the
// cache).
func Publishable(rs []*nar.Realisation, inCache func(path string) bool) []*nar.Realisation {
	var out []*nar.Realisation
	for _, r := range rs {
		ok := inCache(nar.StoreDir + "/" + r.OutPath)
		for _, dep := range r.DependentRealisations {
			ok = ok && inCache(nar.StoreDir+"/"+dep)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}
