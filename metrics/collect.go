package metrics

import (
	"fmt"
	"maps"
	"runtime"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// goVersion is reported by nixpushd_build_info.
var goVersion = runtime.Version()

// stateCollector reads, at each scrape, what has a current value
// elsewhere: the queue, the presence counters, the daemon's health and
// the last gc and verify results.
type stateCollector struct {
	opts Options

	up, degraded, buildInfo                                      *prometheus.Desc
	queueItems, oldestPending                                    *prometheus.Desc
	checks, hits, shared, requests, listings                     *prometheus.Desc
	gcTime, gcSuccess, gcLastSuccess, gcDuration, gcDel, gcFreed *prometheus.Desc
	vTime, vSuccess, vLastSuccess, vDuration, vProblems, vNarIs  *prometheus.Desc
}

func newStateCollector(opts Options) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		opts:      opts,
		up:        d("nixpushd_up", "1 while the daemon runs and serves metrics."),
		degraded:  d("nixpushd_degraded", "1 while uploads fail: the last attempt failed and none has succeeded since (`nixpushd status` shows the error); 0 otherwise."),
		buildInfo: d("nixpushd_build_info", "Always 1; the labels say which nixpushd runs.", "version", "go_version"),

		queueItems:    d("nixpushd_queue_items", "Queue items by state (pending, inflight, done, failed).", "state"),
		oldestPending: d("nixpushd_queue_oldest_pending_age_seconds", "Age of the oldest queue item not yet uploaded (pending, waiting for a retry, or in flight); 0 when there is none."),

		checks:   d("nixpushd_existence_checks_total", "Questions \"is this path in the cache?\" asked."),
		hits:     d("nixpushd_existence_check_cache_hits_total", "Existence checks answered from a remembered answer, without a request."),
		shared:   d("nixpushd_existence_check_shared_total", "Existence checks answered by joining another check's request."),
		requests: d("nixpushd_existence_requests_total", "Existence requests and listing pages sent to the cache."),
		listings: d("nixpushd_cache_listings_total", "Listings of the cache's top level, each answering many existence checks."),

		gcTime:        d("nixpushd_gc_last_run_timestamp_seconds", "When the last `nixpushd gc` finished, in unix seconds."),
		gcSuccess:     d("nixpushd_gc_last_run_success", "1 if the last `nixpushd gc` succeeded, 0 if it failed."),
		gcLastSuccess: d("nixpushd_gc_last_success_timestamp_seconds", "When `nixpushd gc` last succeeded, in unix seconds."),
		gcDuration:    d("nixpushd_gc_last_run_duration_seconds", "How long the last `nixpushd gc` ran."),
		gcDel:         d("nixpushd_gc_last_run_deleted_objects", "Objects (narinfos, NARs, others) the last `nixpushd gc` deleted."),
		gcFreed:       d("nixpushd_gc_last_run_freed_bytes", "Bytes the last `nixpushd gc` freed."),

		vTime:        d("nixpushd_verify_last_run_timestamp_seconds", "When the last `nixpushd verify` finished, in unix seconds."),
		vSuccess:     d("nixpushd_verify_last_run_success", "1 if the last `nixpushd verify` ran to the end (problems or not), 0 if it failed."),
		vLastSuccess: d("nixpushd_verify_last_success_timestamp_seconds", "When `nixpushd verify` last ran to the end, in unix seconds."),
		vDuration:    d("nixpushd_verify_last_run_duration_seconds", "How long the last `nixpushd verify` ran."),
		vProblems:    d("nixpushd_verify_last_run_problems", "Problems (missing references, bad signatures, …) the last `nixpushd verify` found."),
		vNarIs:       d("nixpushd_verify_last_run_narinfos", "Narinfos the last `nixpushd verify` checked."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.up, c.degraded, c.buildInfo, c.queueItems, c.oldestPending,
		c.checks, c.hits, c.shared, c.requests, c.listings,
		c.gcTime, c.gcSuccess, c.gcLastSuccess, c.gcDuration, c.gcDel, c.gcFreed,
		c.vTime, c.vSuccess, c.vLastSuccess, c.vDuration, c.vProblems, c.vNarIs,
	} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(c.up, 1)
	gauge(c.buildInfo, 1, c.opts.Version, goVersion)
	if c.opts.Degraded != nil {
		gauge(c.degraded, b2f(c.opts.Degraded()))
	}
	if c.opts.Queue != nil {
		if depth, err := c.opts.Queue(); err != nil {
			ch <- prometheus.NewInvalidMetric(c.queueItems, fmt.Errorf("read queue: %w", err))
		} else {
			for _, s := range slices.Sorted(maps.Keys(depth)) {
				gauge(c.queueItems, float64(depth[s]), s)
			}
		}
	}
	if c.opts.OldestPending != nil {
		if t, ok, err := c.opts.OldestPending(); err != nil {
			ch <- prometheus.NewInvalidMetric(c.oldestPending, fmt.Errorf("read queue: %w", err))
		} else {
			age := 0.0
			if ok {
				age = max(c.opts.Now().Sub(t).Seconds(), 0)
			}
			gauge(c.oldestPending, age)
		}
	}
	if c.opts.Presence != nil {
		s := c.opts.Presence()
		counter(c.checks, s.Checks)
		counter(c.hits, s.Hits)
		counter(c.shared, s.Shared)
		counter(c.requests, s.Requests)
		counter(c.listings, s.Listings)
	}
	if c.opts.StateDir != "" {
		c.collectRun(ch, "gc")
		c.collectRun(ch, "verify")
	}
}

// collectRun exports the last result of command, if it ever ran.
func (c *stateCollector) collectRun(ch chan<- prometheus.Metric, command string) {
	r, ok, err := ReadLastRun(c.opts.StateDir, command)
	if !ok && err == nil {
		return
	}
	t, success, last, dur := c.gcTime, c.gcSuccess, c.gcLastSuccess, c.gcDuration
	if command == "verify" {
		t, success, last, dur = c.vTime, c.vSuccess, c.vLastSuccess, c.vDuration
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(t, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(t, unixSeconds(r.End))
	gauge(success, b2f(r.Success))
	if !r.LastSuccess.IsZero() {
		gauge(last, unixSeconds(r.LastSuccess))
	}
	gauge(dur, max(r.End.Sub(r.Start).Seconds(), 0))
	if command == "gc" {
		gauge(c.gcDel, float64(r.DeletedObjects))
		gauge(c.gcFreed, float64(r.FreedBytes))
	} else {
		gauge(c.vProblems, float64(r.Problems))
		gauge(c.vNarIs, float64(r.NarInfos))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
