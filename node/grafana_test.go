package node

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// metricName is a schakel series name in a PromQL expression.
var metricName = regexp.MustCompile(`\bschakel_[a-z0-9_]+`)

// TestGrafanaDashboardQueriesExist checks that every series the Grafana
// dashboard in docs/grafana queries is one a node registers, so that a
// rename cannot leave a panel empty.
func TestGrafanaDashboardQueriesExist(t *testing.T) {
	raw, err := os.ReadFile("../docs/grafana/schakel-node.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana/schakel-node.json: %v", err)
	}
	// What open registers, described: a family exists on /metrics once it
	// has a series, which some have only with consent or CRLs configured.
	rec := &describedNames{names: map[string]bool{}}
	newMetrics(rec)
	rec.MustRegister(newNodeCollector(nil))
	have := rec.names
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, p.Title+": "+tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			exprs = append(exprs, "variable: "+q)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("the dashboard has %d queries", len(exprs))
	}
	for _, expr := range exprs {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 && !strings.HasPrefix(expr, "variable: prometheus") {
			t.Errorf("%s: no schakel series", expr)
		}
		for _, name := range names {
			family := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && have[base] {
					family = base
				}
			}
			if !have[family] {
				t.Errorf("%s: the node registers no %s", expr, name)
			}
		}
	}
}

// describedNames is a Registerer that keeps the names its collectors describe.
type describedNames struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describedNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describedNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describedNames) Unregister(prometheus.Collector) bool { return false }
