package daemon

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// pinEvery is how often the daemon looks whether a pinned link (such as
// /run/current-system) points somewhere new.
const pinEvery = 30 * time.Second

// pinner keeps the configured pins (Config.Pins) pointing at their
// closures.
type pinner struct {
	pins  map[string]string // name → path (often a link)
	every time.Duration
	st    store.Store
	p     *upload.Pusher
	log   *slog.Logger
}

// loop keeps each pin pointing at what its path resolves to now: it
// pushes the new closure, then moves the pin.
func (pn *pinner) loop(ctx context.Context) {
	pinned := map[string]string{} // name → store path written
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range slices.Sorted(maps.Keys(pn.pins)) {
			link := pn.pins[name]
			sp, err := store.ToStorePath(link)
			if err != nil {
				pn.log.Warn("pin: cannot resolve its path; will look again", "pin", name, "path", link, "err", err)
				continue
			}
			if pinned[name] == sp {
				continue
			}
			if err := pn.pin(ctx, name, sp); err != nil {
				if ctx.Err() == nil {
					pn.log.Warn("pin: not updated; will try again", "pin", name, "STORE_PATH", sp, "err", err)
				}
				continue
			}
			pinned[name] = sp
			pn.log.Info("pin updated", "pin", name, "STORE_PATH", sp, "path", link)
		}
		t.Reset(pn.every)
	}
}

func (pn *pinner) pin(ctx context.Context, name, path string) error {
	closure, err := pn.st.Closure(ctx, []string{path})
	if err != nil {
		return err
	}
	res, err := pn.p.Push(ctx, closure)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return err
	}
	return lifecycle.SetPin(ctx, pn.p, name, []string{path})
}
