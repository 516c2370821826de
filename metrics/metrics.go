package metrics

import (
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nixpushd/nixpushd/upload"
)

// ReasonAlreadyCached is the skip reason of a path the cache already has
// (Observe of an EventPresent).
const ReasonAlreadyCached = "already_cached"

// knownReasons are the skip reasons nixpushd gives today, exported at 0
// from the start so that rates work from the first scrape. The daemon's
// own (daemon.Config.Filter) arrive with dashes: Skip turns them into
// underscores.
var knownReasons = []string{
	ReasonAlreadyCached, "derivation", "signed_by_upstream", "not_included", "excluded", "not_built_here",
}

// DurationBuckets are the upload duration histogram's upper bounds, in
// seconds: from a tiny NAR on a LAN (10 ms) to a multi-GiB one on a slow
// uplink (2 h).
var DurationBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600, 7200}

// Metrics holds the daemon's metrics and their registry.
type Metrics struct {
	reg  *prometheus.Registry
	opts Options

	uploaded       prometheus.Counter
	skipped        *prometheus.CounterVec
	failed         prometheus.Counter
	narBytes       prometheus.Counter
	storedBytes    prometheus.Counter
	duration       prometheus.Histogram
	requestRetries prometheus.Counter
	queueRetries   prometheus.Counter
	lastSuccess    prometheus.Gauge
	// The files Nix writes besides narinfos and NARs.
	buildLogs      prometheus.Counter
	narListings    prometheus.Counter
	debugInfoLinks prometheus.Counter
	realisations   prometheus.Counter
}

// New makes the metrics and registers them, with Go runtime and process
// metrics, on a registry of their own.
func New(opts Options) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "unknown"
	}
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		opts: opts,
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixpushd_paths_uploaded_total",
			Help: "Store paths uploaded (narinfo written), closure members included.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixpushd_paths_skipped_total",
			Help: "Store paths not uploaded, by reason: already_cached (found in the cache), or a filter (derivation, signed_by_upstream, not_included, excluded, not_built_here).",
		}, []string{"reason"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixpushd_paths_failed_total",
			Help: "Store paths whose upload failed in a push that otherwise ran (the queue retries them). A push that fails as a whole (cache unreachable) counts in nixpushd_queue_retries_total; permanent failures are nixpushd_queue_items{state=\"failed\"}.",
		}),
		narBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixpushd_nar_bytes_total",
			Help: "Uncompressed NAR bytes of the store paths uploaded.",
		}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixpushd_stored_bytes_total",
			Help: "Compressed NAR bytes written to the cache (NAR files already there not counted).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nixpushd_upload_duration_seconds",
			Help:    "Time to upload one store path, from the start of its NAR to its narinfo written.",
			Buckets: DurationBuckets,
		}),
		requestRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixpushd_request_retries_total",
			Help: "Requests to the cache (uploads, existence checks) that failed and were tried again.",
		}),
		queueRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixpushd_queue_retries_total",
			Help: "Queue items put back for a later attempt after their upload failed.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nixpushd_last_upload_success_timestamp_seconds",
			Help: "When a store path was last uploaded, in unix seconds (0: none since start).",
		}),
	}
	for _, r := range knownReasons {
		m.skipped.WithLabelValues(r)
	}
	m.buildLogs = newFileCounter("nixpushd_build_logs_uploaded_total",
		"Build logs uploaded to log/<drv> (--build-logs): one per derivation built here whose log Nix kept.")
	m.narListings = newFileCounter("nixpushd_nar_listings_written_total",
		"NAR listings (<hash>.ls) written (--nar-listings): one per NAR uploaded.")
	m.debugInfoLinks = newFileCounter("nixpushd_debug_info_links_written_total",
		"Debug-info links (debuginfo/<build-id>) written (--index-debug-info): one per lib/debug/.build-id file of the NARs uploaded.")
	m.realisations = newFileCounter("nixpushd_realisations_written_total",
		"Realisations (realisations/<drv hash>!<output>.doi) written (--realisations): outputs of content-addressed derivations.")
	m.reg.MustRegister(
		m.uploaded, m.skipped, m.failed, m.narBytes, m.storedBytes, m.duration,
		m.requestRetries, m.queueRetries, m.lastSuccess,
		m.buildLogs, m.narListings, m.debugInfoLinks, m.realisations,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStateCollector(m.opts),
	)
	return m
}

// Registry returns the registry the metrics are on, to gather or to add
// collectors to.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Observe counts one event of the Pusher (its OnEvent): every event is
// counted exactly once, as uploaded, skipped with reason already_cached,
// or failed.
func (m *Metrics) Observe(e upload.Event) {
	if m == nil {
		return
	}
	switch e.Kind {
	case upload.EventPresent:
		m.skipped.WithLabelValues(ReasonAlreadyCached).Inc()
	case upload.EventUploaded:
		m.uploaded.Inc()
		m.narBytes.Add(float64(max(e.NarSize, 0)))
		m.storedBytes.Add(float64(max(e.FileSize, 0)))
		m.duration.Observe(e.Duration.Seconds())
		m.lastSuccess.Set(float64(m.opts.Now().UnixNano()) / 1e9)
	case upload.EventFailed:
		m.failed.Inc()
	}
}

// Skip counts a path the daemon decided not to upload. reason is one of
// daemon.Config.Filter's ("signed-by-upstream", …) or "not-built-here";
// dashes become underscores.
func (m *Metrics) Skip(reason string) {
	if m == nil {
		return
	}
	m.skipped.WithLabelValues(NormalizeReason(reason)).Inc()
}

// NormalizeReason turns a skip reason into a label value: lower case,
// underscores for dashes and spaces.
func NormalizeReason(reason string) string {
	r := strings.ToLower(strings.TrimSpace(reason))
	r = strings.NewReplacer("-", "_", " ", "_").Replace(r)
	if r == "" {
		return "unknown"
	}
	return r
}

// Retry counts one retried request to the cache.
func (m *Metrics) Retry() {
	if m == nil {
		return
	}
	m.requestRetries.Inc()
}

// CountRetries wraps an retry.Policy's Delay (called once per
// retry) so that each retry is counted. A nil delay means no wait. On a
// nil *Metrics it returns delay unchanged.
func (m *Metrics) CountRetries(delay func(attempt int) time.Duration) func(attempt int) time.Duration {
	if m == nil {
		return delay
	}
	return func(attempt int) time.Duration {
		m.requestRetries.Inc()
		if delay == nil {
			return 0
		}
		return delay(attempt)
	}
}

// QueueRetry counts one queue item put back for a later attempt.
func (m *Metrics) QueueRetry() {
	if m == nil {
		return
	}
	m.queueRetries.Inc()
}

// The files Nix writes to a cache besides narinfos and NARs: one counter
// each, counted the same way.

func newFileCounter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func addFiles(c prometheus.Counter, n int) {
	if n > 0 {
		c.Add(float64(n))
	}
}

// BuildLogs counts n build logs uploaded.
func (m *Metrics) BuildLogs(n int) {
	if m != nil {
		addFiles(m.buildLogs, n)
	}
}

// NarListings counts n NAR listings written.
func (m *Metrics) NarListings(n int) {
	if m != nil {
		addFiles(m.narListings, n)
	}
}

// DebugInfoLinks counts n debug-info links written.
func (m *Metrics) DebugInfoLinks(n int) {
	if m != nil {
		addFiles(m.debugInfoLinks, n)
	}
}

// Realisations counts n realisations written.
func (m *Metrics) Realisations(n int) {
	if m != nil {
		addFiles(m.realisations, n)
	}
}
