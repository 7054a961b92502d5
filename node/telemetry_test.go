package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

func TestTelemetryConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  TelemetryConfig
		want string // a part of the error; empty: valid
	}{
		{"off", TelemetryConfig{}, ""},
		{"collector", TelemetryConfig{OTLP: OTLPConfig{Endpoint: "http://otel:4318"}, SamplingRatio: 0.25}, ""},
		{"https with path", TelemetryConfig{OTLP: OTLPConfig{Endpoint: "https://otel.example/v1/traces"}}, ""},
		{"no scheme", TelemetryConfig{OTLP: OTLPConfig{Endpoint: "otel:4318"}}, "telemetry.otlp.endpoint"},
		{"grpc scheme", TelemetryConfig{OTLP: OTLPConfig{Endpoint: "grpc://otel:4317"}}, "telemetry.otlp.endpoint"},
		{"ratio above 1", TelemetryConfig{SamplingRatio: 1.5}, "telemetry.samplingratio"},
		{"negative ratio", TelemetryConfig{SamplingRatio: -0.1}, "telemetry.samplingratio"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate = %v, want an error naming %s", err, c.want)
			}
		})
	}
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://otel:4318":               "http://otel:4318/v1/traces",
		"http://otel:4318/":              "http://otel:4318/v1/traces",
		"https://otel.example/custom/tr": "https://otel.example/custom/tr",
	} {
		if got := (OTLPConfig{Endpoint: in}).tracesURL(); got != want {
			t.Errorf("tracesURL(%s) = %s, want %s", in, got, want)
		}
	}
}

// A search's query names the patient: it must not reach the collector.
func TestRedactAttrs(t *testing.T) {
	in := []attribute.KeyValue{
		attribute.String("url.full", "https://gp.example/fhir/stu3/01234567/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120"),
		attribute.String("url.query", "identifier=999911120"),
		attribute.String("url.path", "/fhir/stu3/01234567/Task"),
		attribute.Int("http.response.status_code", 200),
	}
	out := redactAttrs(in)
	got := map[attribute.Key]string{}
	for _, kv := range out {
		got[kv.Key] = kv.Value.Emit()
	}
	if strings.Contains(got["url.full"], "999911120") || got["url.full"] != "https://gp.example/fhir/stu3/01234567/Patient?[redacted]" {
		t.Errorf("url.full = %q", got["url.full"])
	}
	if _, ok := got["url.query"]; ok {
		t.Error("url.query kept")
	}
	if got["url.path"] != "/fhir/stu3/01234567/Task" || got["http.response.status_code"] != "200" {
		t.Errorf("other attributes changed: %v", got)
	}
}

func TestClientSpanName(t *testing.T) {
	for url, want := range map[string]string{
		"https://gp.example/oauth2/token":                           "oauth.token.request",
		"https://gp.example/.well-known/oauth-authorization-server": "oauth.metadata",
		"https://gp.example/fhir/stu3/01234567/Patient?x=1":         "fhir GET",
		"https://index.example/localize":                            "HTTP GET",
	} {
		r, _ := http.NewRequest(http.MethodGet, url, nil)
		if got := clientSpanName("", r); got != want {
			t.Errorf("clientSpanName(%s) = %q, want %q", url, got, want)
		}
	}
}

// Without an exporter the node records no spans, yet a traceparent that
// arrives is passed on, unchanged, to the calls the request causes; a
// request without one causes calls without one.
func TestTraceContextPassedOnWithoutExporter(t *testing.T) {
	tr, err := newTracing(context.Background(), "gp", TelemetryConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{tracing: tr}
	var sent []string
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent = append(sent, r.Header.Get("Traceparent"))
	}))
	defer partner.Close()
	client := &http.Client{Transport: n.traceTransport(&http.Transport{})}
	h := n.traceHandler("public", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, partner.URL, nil)
		resp, err := client.Do(out)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if out.Header.Get("Traceparent") != "" {
			t.Error("the caller's request was changed")
		}
	}))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tp := range []string{parent, ""} {
		r := httptest.NewRequest(http.MethodGet, "/fhir/stu3/01234567/Patient", nil)
		if tp != "" {
			r.Header.Set("Traceparent", tp)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if len(sent) != 2 || sent[0] != parent || sent[1] != "" {
		t.Errorf("traceparent sent on: %q, want %q then none", sent, parent)
	}
}

// Without an exporter the node's own spans are not started: the store's
// operations and the node's steps see the context they were given.
func TestNoSpansWithoutExporter(t *testing.T) {
	tr, err := newTracing(context.Background(), "gp", TelemetryConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if records(tr.tracer) {
		t.Fatal("the no-op tracer is taken for one that records")
	}
	n := &Node{tracing: tr}
	ctx := context.Background()
	got, span := n.span(ctx, "step")
	if got != ctx || span.IsRecording() {
		t.Error("a span was started without an exporter")
	}
	span.End() // must not panic
	if got, _, _ := (timedStore{tracer: tr.tracer}).begin(ctx, "read"); got != ctx {
		t.Error("the store's operation got a span without an exporter")
	}
}
