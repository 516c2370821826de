package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/queue"
)

// Status is what `nixpushd status` shows.
type Status struct {
	Target   string `json:"target"`
	Uptime   string `json:"uptime"`
	Pending  int    `json:"pending"`
	InFlight int    `json:"in_flight"`
	Done     int    `json:"done"`
	Failed   int    `json:"failed"`
	Uploaded int    `json:"uploaded_since_start"`
	// BuildLogs counts the build logs uploaded (--build-logs).
	BuildLogs int            `json:"build_logs_since_start,omitempty"`
	Skipped   map[string]int `json:"skipped_since_start"`
	LastError string         `json:"last_error,omitempty"`
	// ErrorSince is when uploads began failing (RFC 3339).
	ErrorSince string `json:"last_error_since,omitempty"`
	// Degraded: the cache's configuration is wrong (credentials, bucket,
	// TLS…); nothing uploads until it is fixed.
	Degraded bool `json:"degraded,omitempty"`
	// PublicKey is the signing key's public half, for clients'
	// trusted-public-keys ("" when unsigned).
	PublicKey string `json:"public_key,omitempty"`
	// SecretKeyFile is the file the signing key was read from.
	SecretKeyFile string       `json:"secret_key_file,omitempty"`
	Items         []queue.Item `json:"items"` // failed, in flight, pending (first ones), recent done
}

// QueueStatus reads the status straight from a queue (used by `nixpushd
// status` when no daemon is running).
func QueueStatus(q *queue.Queue) (*Status, error) {
	stats, err := q.Stats()
	if err != nil {
		return nil, err
	}
	st := &Status{
		Pending: stats.Pending, InFlight: stats.InFlight, Done: stats.Done, Failed: stats.Failed,
		Skipped: map[string]int{},
	}
	for _, s := range []struct {
		state queue.State
		n     int
	}{{queue.Failed, 100}, {queue.InFlight, 100}, {queue.Pending, 50}, {queue.Done, 20}} {
		items, err := q.List(s.state, s.n)
		if err != nil {
			return nil, err
		}
		st.Items = append(st.Items, items...)
	}
	return st, nil
}

// Snapshot gathers the current status.
func (d *Daemon) Snapshot() (*Status, error) {
	st, err := QueueStatus(d.q)
	if err != nil {
		return nil, err
	}
	st.Target, st.Uptime = d.p.Target.String(), time.Since(d.started).Round(time.Second).String()
	d.mu.Lock()
	for k, v := range d.skipped {
		st.Skipped[k] = v
	}
	st.LastError, st.Uploaded, st.Degraded = d.lastError, d.uploaded, d.degraded
	st.BuildLogs = d.buildLogs
	if !d.errSince.IsZero() {
		st.ErrorSince = d.errSince.Format(time.RFC3339)
	}
	d.mu.Unlock()
	if d.p.Key != nil {
		st.PublicKey = d.p.Key.Public().String()
		st.SecretKeyFile = d.cfg.SecretKeyFile
	}
	return st, nil
}

// The daemon answers the hook socket (see Run).
var _ hook.Handler = (*Daemon)(nil)

// StatusJSON answers the socket's STATUS request.
func (d *Daemon) StatusJSON(context.Context) ([]byte, error) {
	st, err := d.Snapshot()
	if err != nil {
		return nil, err
	}
	return json.Marshal(st)
}

// updateStatus tells systemd the queue's shape (shown by systemctl status).
func (d *Daemon) updateStatus() {
	stats, err := d.q.Stats()
	if err != nil {
		return
	}
	s := fmt.Sprintf("%d pending, %d in flight, %d done, %d failed", stats.Pending, d.active.Load(), stats.Done, stats.Failed)
	d.mu.Lock()
	switch {
	case d.degraded:
		s = fmt.Sprintf("DEGRADED since %s, cache unusable: %s; %s", d.errSince.Format(time.TimeOnly), FirstLine(d.lastError, 120), s)
	case d.lastError != "":
		s += "; last error: " + FirstLine(d.lastError, 120)
	}
	d.mu.Unlock()
	d.notify.Status(s)
}

// FirstLine returns the first line of an error message for a one-line
// display (systemd's STATUS=, `nixpushd status`), cut to at most max bytes
// and marked with "…" when longer; max <= 0 does not cut.
func FirstLine(s string, max int) string {
	s, _, _ = strings.Cut(s, "\n")
	if max <= 0 || len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max] + "…"
}
