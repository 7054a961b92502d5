package node

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The request metrics name the route pattern the mux matched, never the
// path, and "unmatched" when no route served the request; with and
// without the request id in front.
func TestRequestMetricsNameTheRoute(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /internal/referrals/{id}", func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) == "" && r.Header.Get("X-Front") == "id" {
			t.Error("no request id behind withRequestID")
		}
		w.WriteHeader(http.StatusAccepted)
	})
	for _, front := range []string{"id", "none"} {
		n := &Node{metrics: newMetrics(prometheus.NewRegistry())}
		h := n.wrapMetrics("internal", unmatched(mux))
		if front == "id" {
			h = withRequestID(h)
		}
		for _, path := range []string{"/internal/referrals/r-1", "/internal/referrals/r-2", "/nowhere"} {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			r.Header.Set("X-Front", front)
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
		if got := counterValue(t, n.metrics.requests.WithLabelValues("internal", "GET /internal/referrals/{id}", "202", "")); got != 2 {
			t.Errorf("%s: route counted %v times, want 2", front, got)
		}
		if got := counterValue(t, n.metrics.requests.WithLabelValues("internal", "unmatched", "404", "")); got != 1 {
			t.Errorf("%s: unmatched counted %v times, want 1", front, got)
		}
	}
}

func TestStatusLabel(t *testing.T) {
	for code, want := range map[int]string{200: "200", 100: "100", 599: "599", 99: "99", 600: "600", 0: "0"} {
		if got := statusLabel(code); got != want {
			t.Errorf("statusLabel(%d) = %q, want %q", code, got, want)
		}
	}
}
