// Package daemon is the long-running service. It takes store paths from
// its sources — the store watcher, the hook socket and spool (served and
// drained with package hook), periodic reconciliation — keeps them in the
// durable queue, and uploads them with an upload.Pusher from a dispatcher
// that claims due items in batches. It keeps pins pointing at the closures
// of configured links, tells systemd its state (sd_notify, watchdog), and
// answers status requests.
//
// Files: daemon.go (Daemon, Enqueue, Run, the dispatcher, the outcome of
// each batch, Snapshot), sources.go (watcher, spool, reconcile), pins.go,
// buildlogs.go, realisations.go, status.go (Status and the counters behind
// it), notify.go (sd_notify, watchdog), config.go. Each concern's file has
// its own type or functions, which daemon.go wires; none of them uses
// daemon.go's declarations back (internal/layout checks).
//
// It holds no format or storage logic of its own: NARs are nar's, uploads
// upload's, durability queue's.
package daemon
