package metrics

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scraped is one scrape of the handler, parsed.
type scraped map[string]*dto.MetricFamily

// scrape GETs /metrics from m's handler as Prometheus would and parses
// the text format.
func scrape(t *testing.T, m *Metrics) scraped {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return parse(t, rec.Body)
}

func parse(t *testing.T, r io.Reader) scraped {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// value returns the value of the sample of name whose labels include
// labels ("k=v" each), failing the test if there is none.
func (s scraped) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := s.lookup(name, labels...)
	if !ok {
		t.Fatalf("no sample %s%v in scrape; families: %v", name, labels, slices.Sorted(maps.Keys(s)))
	}
	return v
}

func (s scraped) has(name string, labels ...string) bool {
	_, ok := s.lookup(name, labels...)
	return ok
}

func (s scraped) lookup(name string, labels ...string) (float64, bool) {
	fam := s[name]
	if fam == nil {
		return 0, false
	}
metric:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue metric
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// histogram returns the histogram name.
func (s scraped) histogram(t *testing.T, name string) *dto.Histogram {
	t.Helper()
	fam := s[name]
	if fam == nil || len(fam.Metric) != 1 || fam.Metric[0].Histogram == nil {
		t.Fatalf("no histogram %s in scrape", name)
	}
	return fam.Metric[0].Histogram
}
