package daemon

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// Notifier speaks the sd_notify protocol when systemd set NOTIFY_SOCKET and
// does nothing otherwise, so the daemon runs the same under systemd, in a
// terminal and in tests (which point NOTIFY_SOCKET at their own socket).
type Notifier struct {
	log      *slog.Logger
	mu       sync.Mutex
	lastStat string
	// Watchdog is the interval systemd expects pings within (WatchdogSec),
	// zero when the watchdog is off.
	Watchdog time.Duration
	beat     atomic.Int64 // unix nanos of the dispatcher's last turn
}

func NewNotifier(log *slog.Logger) *Notifier {
	n := &Notifier{log: log}
	if d, err := sddaemon.SdWatchdogEnabled(false); err == nil {
		n.Watchdog = d
	} else {
		log.Warn("ignoring malformed WATCHDOG_USEC", "err", err)
	}
	return n
}

func (n *Notifier) send(state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		n.log.Debug("sd_notify failed", "state", state, "err", err)
	}
}

func (n *Notifier) Ready()    { n.send(sddaemon.SdNotifyReady) }
func (n *Notifier) Stopping() { n.send(sddaemon.SdNotifyStopping) }
func (n *Notifier) Ping()     { n.send(sddaemon.SdNotifyWatchdog) }

// Status sends STATUS= when it changed, so `systemctl status` shows the
// queue without flooding systemd.
func (n *Notifier) Status(s string) {
	n.mu.Lock()
	changed := s != n.lastStat
	n.lastStat = s
	n.mu.Unlock()
	if changed {
		n.send("STATUS=" + s)
	}
}

// Beat tells the watchdog that the dispatcher is alive.
func (n *Notifier) Beat() { n.beat.Store(time.Now().UnixNano()) }

// watchdog pings systemd while the dispatcher beats. A wedged dispatcher
// stops the pings, and systemd restarts the service.
func (n *Notifier) watchdog(ctx context.Context) {
	t := time.NewTicker(n.Watchdog / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, n.beat.Load())) < n.Watchdog {
				n.Ping()
			}
		}
	}
}
