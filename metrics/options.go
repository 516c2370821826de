package metrics

import (
	"log/slog"
	"time"

	"github.com/nixpushd/nixpushd/upload"
)

// Options are the scrape-time sources. Any may be nil: its metrics are
// then left out.
type Options struct {
	// Version is the nixpushd version, shown by nixpushd_build_info.
	Version string
	// StateDir is where gc and verify leave their last results
	// (WriteLastRun); "" leaves out the gc and verify metrics.
	StateDir string
	// Queue returns the number of queue items in each state (see
	// QueueDepth).
	Queue func() (map[string]int, error)
	// OldestPending returns when the oldest item not yet uploaded was
	// enqueued, and false if there is none (see OldestPending).
	OldestPending func() (time.Time, bool, error)
	// Presence returns the existence-check counters
	// ((*upload.Pusher).PresenceStats).
	Presence func() upload.PresenceStats
	// Degraded reports whether uploads are failing now: the last attempt
	// failed and none has succeeded since.
	Degraded func() bool
	// Log receives the errors of scrape-time sources and of the HTTP
	// server; nil: slog.Default().
	Log *slog.Logger
	// Now is the clock for ages; nil: time.Now.
	Now func() time.Time
}
