package metrics

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/upload"
)

const dashboardFile = "grafana-dashboard.json"

// promqlNames returns the metric names an expression (with Grafana's
// $variables) selects. It is a small lexer, enough for the dashboard:
// strings, label matchers {…}, ranges […], numbers and durations,
// $variables, function calls, keywords and grouping label lists are
// skipped; every other identifier is a metric name.
func promqlNames(expr string) []string {
	keywords := map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	}
	// Aggregations may put "by (…)" between their name and "(".
	aggregations := map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
	}
	grouping := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }
	// skipString returns the index after the string starting at i.
	skipString := func(i int) int {
		q := expr[i]
		for i++; i < len(expr) && expr[i] != q; i++ {
			if expr[i] == '\\' && q != '`' {
				i++
			}
		}
		return i + 1
	}
	// skipTo returns the index after the bracket closing the one at i,
	// skipping strings inside.
	skipTo := func(i int, open, close byte) int {
		depth := 0
		for i < len(expr) {
			switch c := expr[i]; c {
			case '"', '\'', '`':
				i = skipString(i)
				continue
			case open:
				depth++
			case close:
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(expr)
	}
	skipSpace := func(i int) int {
		for i < len(expr) && strings.ContainsRune(" \t\n\r", rune(expr[i])) {
			i++
		}
		return i
	}
	var names []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(i)
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				i = skipTo(i, '{', '}')
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case '0' <= c && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(i)
			switch {
			case grouping[word]:
				if next < len(expr) && expr[next] == '(' {
					i = skipTo(next, '(', ')')
				}
			case keywords[word], aggregations[word] && next < len(expr) && isIdentStart(expr[next]):
			case next < len(expr) && expr[next] == '(':
				// a function or an aggregation
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names
}

func TestPromQLNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`nixpushd_up`, []string{"nixpushd_up"}},
		{`sum by (state) (nixpushd_queue_items{instance=~"$instance", state!="done"})`, []string{"nixpushd_queue_items"}},
		{`histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="}{"}[$__rate_interval])))`, []string{"a_bucket"}},
		{`sum(rate(a_total[5m])) / sum(rate(b_total[${__rate_interval}])) > 0.5`, []string{"a_total", "b_total"}},
		{`time() - max(c_seconds{instance=~"$instance"} > 0)`, []string{"c_seconds"}},
		{`sum(x) without (instance) and on (job) group_left (version) y or z unless bool_w`, []string{"x", "y", "z", "bool_w"}},
		{`count by (version, go_version) (nixpushd_build_info)`, []string{"nixpushd_build_info"}},
		{`rate(process_cpu_seconds_total{instance=~'a\'b'}[1m]) * 1e3`, []string{"process_cpu_seconds_total"}},
	} {
		if got := promqlNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promqlNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// dashboard is the part of a Grafana dashboard the tests look at.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Type       string          `json:"type"`
			Name       string          `json:"name"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                 `json:"id"`
	Type       string              `json:"type"`
	Title      string              `json:"title"`
	Datasource *datasourceRef      `json:"datasource"`
	GridPos    *struct{ W, H int } `json:"gridPos"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// exportedNames gathers a registry that has seen one event of each kind
// and has every source set, and returns the series names it exports
// (histograms as _bucket, _sum and _count).
func exportedNames(t *testing.T) (map[string]bool, []string) {
	t.Helper()
	dir := t.TempDir()
	m := New(Options{
		Version: "test", StateDir: dir, Now: time.Now,
		Queue:         func() (map[string]int, error) { return map[string]int{"pending": 1}, nil },
		OldestPending: func() (time.Time, bool, error) { return time.Now(), true, nil },
		Presence:      func() upload.PresenceStats { return upload.PresenceStats{} },
		Degraded:      func() bool { return false },
	})
	for _, k := range []upload.EventKind{upload.EventPresent, upload.EventUploaded, upload.EventFailed} {
		m.Observe(upload.Event{Kind: k})
	}
	m.Skip("derivation")
	m.Retry()
	m.QueueRetry()
	now := time.Now()
	if err := WriteLastRun(dir, "gc", GCRun(now, now, &lifecycle.GCResult{}, nil)); err != nil {
		t.Fatal(err)
	}
	if err := WriteLastRun(dir, "verify", VerifyRun(now, now, &lifecycle.VerifyResult{}, nil)); err != nil {
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	var ours []string
	for _, f := range fams {
		n := f.GetName()
		names[n] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[n+"_sum"], names[n+"_count"] = true, true
		}
		if strings.HasPrefix(n, "nixpushd_") {
			ours = append(ours, n)
		}
	}
	return names, ours
}

// Every metric the dashboard's queries name is one the daemon exports,
// and every nixpushd_* metric has a place on the dashboard.
func TestDashboardMetricsAreExported(t *testing.T) {
	d := loadDashboard(t)
	exported, ours := exportedNames(t)

	used := map[string][]string{} // metric → panel titles
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			for _, n := range promqlNames(tg.Expr) {
				used[n] = append(used[n], p.Title)
			}
		}
	}
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, v := range d.Templating.List {
		for _, m := range labelValues.FindAllStringSubmatch(v.Definition+string(v.Query), -1) {
			used[m[1]] = append(used[m[1]], "variable $"+v.Name)
		}
	}
	if len(used) < 20 {
		t.Fatalf("only %d metric names found in the dashboard: the lexer or the file is wrong", len(used))
	}
	for _, n := range slices.Sorted(maps.Keys(used)) {
		if !exported[n] {
			t.Errorf("dashboard uses %s (in %q), which is not exported", n, used[n])
		}
	}
	for _, n := range ours {
		if used[n] == nil && used[n+"_bucket"] == nil {
			t.Errorf("%s is exported but on no panel of the dashboard", n)
		}
	}
}

// The dashboard imports anywhere: it asks for a Prometheus data source and
// every query uses it.
func TestDashboardIsImportable(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard without uid or title")
	}
	var dsVar string
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		t.Fatal("no Prometheus data source variable")
	}
	want := "${" + dsVar + "}"
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: bad gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != want {
			t.Errorf("panel %q: data source %+v, want uid %s", p.Title, p.Datasource, want)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.Datasource == nil || tg.Datasource.UID != want {
				t.Errorf("panel %q: query %q with data source %+v", p.Title, tg.Expr, tg.Datasource)
			}
		}
	}
}
