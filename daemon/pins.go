package daemon

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/store"
)

// pinEvery is how often the daemon looks whether a pinned link (such as
// /run/current-system) points somewhere new.
const pinEvery = 30 * time.Second

// pinLoop keeps each configured pin pointing at what its path resolves
// to now: it pushes the new closure, then moves the pin.
func (d *Daemon) pinLoop(ctx context.Context) {
	pinned := map[string]string{} // name → store path written
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range slices.Sorted(maps.Keys(d.cfg.Pins)) {
			link := d.cfg.Pins[name]
			sp, err := store.ToStorePath(link)
			if err != nil {
				d.log.Warn("pin: cannot resolve its path; will look again", "pin", name, "path", link, "err", err)
				continue
			}
			if pinned[name] == sp {
				continue
			}
			if err := d.pin(ctx, name, sp); err != nil {
				if ctx.Err() == nil {
					d.log.Warn("pin: not updated; will try again", "pin", name, "STORE_PATH", sp, "err", err)
				}
				continue
			}
			pinned[name] = sp
			d.log.Info("pin updated", "pin", name, "STORE_PATH", sp, "path", link)
		}
		t.Reset(min(pinEvery, d.cfg.ReconcileInterval))
	}
}

func (d *Daemon) pin(ctx context.Context, name, path string) error {
	closure, err := d.st.Closure(ctx, []string{path})
	if err != nil {
		return err
	}
	res, err := d.p.Push(ctx, closure)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return err
	}
	return lifecycle.SetPin(ctx, d.p, name, []string{path})
}
