package daemon

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/upload"
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
	BuildLogs int `json:"build_logs_since_start,omitempty"`
	// NarListings, DebugInfoLinks and Realisations count the .ls
	// listings, debuginfo/ links and realisations written
	// (--nar-listings, --index-debug-info, --realisations).
	NarListings    int            `json:"nar_listings_since_start,omitempty"`
	DebugInfoLinks int            `json:"debug_info_links_since_start,omitempty"`
	Realisations   int            `json:"realisations_since_start,omitempty"`
	Skipped        map[string]int `json:"skipped_since_start"`
	LastError      string         `json:"last_error,omitempty"`
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

// counters are what the daemon counts and remembers since start, for
// status, systemd's STATUS= and the journal: skips, uploads, and whether
// the target fails.
type counters struct {
	mu        sync.Mutex
	skipped   map[string]int // reason → count
	lastError string         // last failure of the target as a whole
	errSince  time.Time      // when uploads began failing (zero: they work)
	uploaded  int            // store paths uploaded (closures included)
	buildLogs int            // build logs uploaded (buildlogs.go)
	// Written with the uploads: .ls listings, debug-info links,
	// realisations.
	listings, debugInfoLinks, realisations int
	// degraded: the last failure was the target's configuration
	// (cache.IsConfig: credentials, bucket, TLS…): nothing can upload
	// until a human acts. Reported in STATUS=, status and the journal.
	degraded  bool
	loggedBad time.Time // last journal line about the degraded state
}

func newCounters() *counters { return &counters{skipped: map[string]int{}} }

func (c *counters) skip(reason string) {
	c.mu.Lock()
	c.skipped[reason]++
	c.mu.Unlock()
}

// addPush counts what a push wrote: res's paths and files, and the
// realisations written after it.
func (c *counters) addPush(res *upload.Result, realisations int) {
	c.mu.Lock()
	c.uploaded += res.Uploaded
	c.listings += res.NarListings
	c.debugInfoLinks += res.DebugInfoLinks
	c.realisations += realisations
	c.mu.Unlock()
}

func (c *counters) addBuildLogs(n int) {
	c.mu.Lock()
	c.buildLogs += n
	c.mu.Unlock()
}

// failed records a failure of the target at now. logIt says that a
// degraded state is due a journal line (at once, then every logEvery);
// changed, that the degraded state changed.
func (c *counters) failed(err error, now time.Time, logEvery time.Duration) (logIt, changed bool, since time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastError = err.Error()
	if c.errSince.IsZero() {
		c.errSince = now
	}
	was := c.degraded
	c.degraded = cache.IsConfig(err)
	logIt = c.degraded && now.Sub(c.loggedBad) >= logEvery
	if logIt {
		c.loggedBad = now
	}
	return logIt, c.degraded != was, c.errSince
}

// succeeded clears the failure state, and says whether the target was
// degraded, since when.
func (c *counters) succeeded() (wasDegraded bool, since time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wasDegraded, since = c.degraded, c.errSince
	c.lastError, c.errSince, c.degraded, c.loggedBad = "", time.Time{}, false, time.Time{}
	return wasDegraded, since
}

func (c *counters) isDegraded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.degraded
}

// fill copies the counts into st.
func (c *counters) fill(st *Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.skipped {
		st.Skipped[k] = v
	}
	st.LastError, st.Uploaded, st.Degraded = c.lastError, c.uploaded, c.degraded
	st.BuildLogs, st.NarListings, st.DebugInfoLinks, st.Realisations = c.buildLogs, c.listings, c.debugInfoLinks, c.realisations
	if !c.errSince.IsZero() {
		st.ErrorSince = c.errSince.Format(time.RFC3339)
	}
}

// systemdStatus is STATUS= for the queue's stats with active items being
// worked on (shown by systemctl status).
func (c *counters) systemdStatus(stats queue.Stats, active int64) string {
	s := fmt.Sprintf("%d pending, %d in flight, %d done, %d failed", stats.Pending, active, stats.Done, stats.Failed)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.degraded:
		s = fmt.Sprintf("DEGRADED since %s, cache unusable: %s; %s", c.errSince.Format(time.TimeOnly), FirstLine(c.lastError, 120), s)
	case c.lastError != "":
		s += "; last error: " + FirstLine(c.lastError, 120)
	}
	return s
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
