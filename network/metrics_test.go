package network

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/schakel-nl/schakel/node"
)

// scrape reads a node's /metrics as the Prometheus server would.
func scrape(t *testing.T, n *node.Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(n.InternalURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%s: /metrics does not parse: %v", n.Name(), err)
	}
	return fams
}

// TestMetricsAfterOneExchange: after one Notified Pull exchange, each node's
// /metrics has every series family docs/operations.md lists, and the
// exchange shows in them.
func TestMetricsAfterOneExchange(t *testing.T) {
	nw := startNetwork(t, 1)
	if _, err := nw.Exchange(context.Background()); err != nil {
		t.Fatal(err)
	}
	families := []string{
		"schakel_http_requests_total", "schakel_http_request_duration_seconds",
		"schakel_exchanges_total", "schakel_exchange_duration_seconds", "schakel_outbox_retries_total",
		"schakel_oauth_token_requests_total", "schakel_oauth_token_verifications_total",
		"schakel_consent_decisions_total", "schakel_consent_request_duration_seconds",
		"schakel_localization_queries_total",
		"schakel_audit_commit_duration_seconds", "schakel_audit_commit_batch_records",
		"schakel_inbox_pending", "schakel_outbox_pending",
		"schakel_certificate_expiry_timestamp_seconds",
		"schakel_store_operation_duration_seconds",
	}
	for _, n := range []*node.Node{nw.GPNode, nw.HospNode} {
		fams := scrape(t, n)
		for _, f := range families {
			if fams[f] == nil {
				t.Errorf("%s: /metrics has no %s", n.Name(), f)
			}
		}
	}
	// The exchange itself: the sender referred and served a pull, the
	// receiver pulled with a token the sender issued and verified.
	for _, c := range []struct {
		n      *node.Node
		family string
		labels map[string]string
	}{
		{nw.GPNode, "schakel_exchanges_total", map[string]string{"application": "bgz", "pattern": "notified-pull", "role": "sender", "outcome": "ok"}},
		{nw.HospNode, "schakel_exchanges_total", map[string]string{"application": "bgz", "pattern": "notified-pull", "role": "receiver", "outcome": "ok"}},
		{nw.HospNode, "schakel_exchange_duration_seconds", map[string]string{"application": "bgz", "pattern": "notified-pull", "role": "receiver"}},
		{nw.GPNode, "schakel_oauth_token_requests_total", map[string]string{"outcome": "issued"}},
		{nw.GPNode, "schakel_oauth_token_verifications_total", map[string]string{"outcome": "valid"}},
		{nw.GPNode, "schakel_http_requests_total", map[string]string{"listener": "public", "partner": Hospital.URA, "code": "200"}},
	} {
		if v := sum(scrape(t, c.n)[c.family], c.labels); v < 1 {
			t.Errorf("%s: %s%v = %v, want ≥ 1", c.n.Name(), c.family, c.labels, v)
		}
	}
}

// sum adds the counters of a family whose labels include want.
func sum(f *dto.MetricFamily, want map[string]string) float64 {
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			if have[k] != v {
				ok = false
			}
		}
		if ok {
			total += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}
