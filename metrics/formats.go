package metrics

import "github.com/prometheus/client_golang/prometheus"

// The files Nix writes to a cache besides narinfos and NARs.

func newBuildLogsCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nixpushd_build_logs_uploaded_total",
		Help: "Build logs uploaded to log/<drv> (--build-logs): one per derivation built here whose log Nix kept.",
	})
}

// BuildLogs counts n build logs uploaded.
func (m *Metrics) BuildLogs(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.buildLogs.Add(float64(n))
}
