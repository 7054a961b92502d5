package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/oauth"
)

// TelemetryConfig is where the node's traces go. Without an endpoint
// nothing is exported and the tracer is a no-op; W3C trace context that
// arrives on a request is still passed on to the calls it causes.
type TelemetryConfig struct {
	OTLP OTLPConfig `koanf:"otlp"`
	// SamplingRatio is the fraction of traces this node starts that it
	// records, in (0, 1]; 0 (unset) records every one. A trace a partner
	// started follows the partner's decision (parent-based sampling).
	SamplingRatio float64 `koanf:"samplingratio"`
}

// OTLPConfig is the OpenTelemetry collector the node exports spans to.
type OTLPConfig struct {
	// Endpoint is the collector's OTLP/HTTP URL, e.g.
	// http://otel-collector:4318 (the path /v1/traces is added when
	// the URL has none).
	Endpoint string `koanf:"endpoint"`
}

// Validate checks the endpoint and the ratio.
func (c TelemetryConfig) Validate() error {
	var errs []error
	if c.OTLP.Endpoint != "" {
		u, err := url.Parse(c.OTLP.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("telemetry.otlp.endpoint %q: want an http(s) URL of an OTLP/HTTP collector", c.OTLP.Endpoint))
		}
	}
	if c.SamplingRatio < 0 || c.SamplingRatio > 1 {
		errs = append(errs, fmt.Errorf("telemetry.samplingratio %v: want a fraction between 0 and 1", c.SamplingRatio))
	}
	return errors.Join(errs...)
}

// tracesURL is the endpoint with the OTLP traces path when it has none.
func (c OTLPConfig) tracesURL() string {
	u, _ := url.Parse(c.Endpoint) // Validate parsed it
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String()
}

// tracing is the node's tracer provider and what ends it.
type tracing struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
	shutdown func(context.Context) error
	// propagateOnly is set when nothing records spans (no exporter, no
	// provider given): the listeners and the client then only carry W3C
	// trace context through, without otelhttp's per-request work.
	propagateOnly bool
}

// tracerName is the instrumentation scope of the node's own spans.
const tracerName = "github.com/schakel-nl/schakel/node"

// propagator is W3C trace context, set explicitly: otelhttp's default is
// the global propagator, which does nothing unless a program sets one.
var propagator = propagation.TraceContext{}

// newTracing builds the provider: the one given (tests), an OTLP exporter
// when configured, else a no-op.
func newTracing(ctx context.Context, node string, cfg TelemetryConfig, given trace.TracerProvider) (*tracing, error) {
	t := &tracing{shutdown: func(context.Context) error { return nil }}
	switch {
	case given != nil:
		t.provider = given
	case cfg.OTLP.Endpoint != "":
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.OTLP.tracesURL()))
		if err != nil {
			return nil, fmt.Errorf("telemetry.otlp.endpoint: %w", err)
		}
		ratio := cfg.SamplingRatio
		if ratio == 0 {
			ratio = 1
		}
		res := resource.NewSchemaless(semconv.ServiceName("schakel"), semconv.ServiceInstanceID(node))
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(redactingExporter{exp}), sdktrace.WithResource(res),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
		t.provider, t.shutdown = tp, tp.Shutdown
	default:
		t.provider, t.propagateOnly = noop.NewTracerProvider(), true
	}
	t.tracer = t.provider.Tracer(tracerName)
	return t, nil
}

// traceHandler starts (or continues, from the request's traceparent) a
// server span for each request on a listener.
func (n *Node) traceHandler(listener string, h http.Handler) http.Handler {
	if n.tracing.propagateOnly {
		return propagateHandler(h)
	}
	return otelhttp.NewHandler(h, listener, otelhttp.WithTracerProvider(n.tracing.provider),
		otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return listener + " " + r.Method }))
}

// traceTransport gives an outgoing call a client span and sends its
// context as traceparent, so that the partner's spans join the trace.
func (n *Node) traceTransport(rt *http.Transport) http.RoundTripper {
	if n.tracing.propagateOnly {
		return propagateTransport{rt}
	}
	return tracedTransport{otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(n.tracing.provider), otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(clientSpanName)), rt}
}

// clientSpanName names an outgoing call by what it is, never by its
// URL (which carries URAs, ids and, in a query, BSNs): a token request is
// the client side of token issuance.
func clientSpanName(_ string, r *http.Request) string {
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, oauth.TokenPath):
		return "oauth.token.request"
	case strings.HasSuffix(p, oauth.MetadataPath):
		return "oauth.metadata"
	case strings.Contains(p, "/fhir/"):
		return "fhir " + r.Method
	}
	return "HTTP " + r.Method
}

// tracedResolveGrant is the token issuance's decision (plateau checks,
// grant, audit record), spanned under the token request's server span.
func (n *Node) tracedResolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	ctx, span := n.span(ctx, "oauth.token.issue", attribute.String("oauth.grant_type", req.GrantType),
		attribute.String("oauth.client_id", req.ClientID))
	g, err := n.resolveGrant(ctx, req)
	err = grantStoreUnavailable(err)
	endSpan(span, err)
	return g, err
}

// nameSpan names the request's server span by the route it matched (the
// pattern, not the path), once the mux has chosen it.
func nameSpan(ctx context.Context, listener, route string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetName(listener + " " + route)
	span.SetAttributes(attribute.String("http.route", route))
}

// tracedTransport passes CloseIdleConnections on to the transport under
// otelhttp's, which does not: http.Client finds it only on its Transport.
type tracedTransport struct {
	http.RoundTripper
	inner *http.Transport
}

func (t tracedTransport) CloseIdleConnections() { t.inner.CloseIdleConnections() }

// propagateHandler is the listener's trace handling when no span is
// recorded: a request's traceparent (and tracestate) go into its context,
// as the no-op tracer under otelhttp would leave them, so that the calls
// it causes carry the same trace context on.
func propagateHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Traceparent"]; ok {
			r = r.WithContext(propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		h.ServeHTTP(w, r)
	})
}

// propagateTransport is the client's trace handling when no span is
// recorded: a call made in a trace's context sends that context on as
// traceparent; other calls go out as they are.
type propagateTransport struct{ inner *http.Transport }

func (t propagateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if trace.SpanContextFromContext(r.Context()).IsValid() {
		r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
		propagator.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	}
	return t.inner.RoundTrip(r)
}

func (t propagateTransport) CloseIdleConnections() { t.inner.CloseIdleConnections() }

// stopTracing flushes the spans still buffered to the collector.
func (n *Node) stopTracing() {
	if n.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := n.tracing.shutdown(ctx); err != nil {
		n.log.Warn("telemetry: flushing the last spans failed", "err", err)
	}
}

// span starts one of the node's own spans.
func (n *Node) span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !records(n.tracing.tracer) {
		return ctx, noSpan
	}
	return n.tracing.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// records reports whether tracer can record spans: the no-op tracer (no
// exporter) cannot, and a span of its would only carry the context's own
// span context on, so none is started.
func records(tracer trace.Tracer) bool {
	_, isNoop := tracer.(noop.Tracer)
	return !isNoop
}

// noSpan stands in for a span that is not started: it records nothing and
// ends nothing.
var noSpan = trace.SpanFromContext(context.Background())

// endSpan ends span, marking it failed with err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// tracedLog spans the wait for an audit record to be committed: the
// exchange is answered only after it, so it belongs in the trace.
type tracedLog struct {
	audit.Log
	tracer trace.Tracer
}

func (l tracedLog) Append(ctx context.Context, rec audit.Record) error {
	ctx, span := l.tracer.Start(ctx, "audit.append", trace.WithAttributes(attribute.String("audit.interaction", rec.Interaction)))
	err := l.Log.Append(ctx, rec)
	endSpan(span, err)
	return err
}

// auditAppender is the audit log the exchanges write to: faults applied
// (module tests only) and, when spans are recorded, each append spanned.
func (n *Node) auditAppender() audit.Log {
	l := n.faults.auditLog(n.auditLog)
	if n.tracing.propagateOnly {
		return l
	}
	return tracedLog{l, n.tracing.tracer}
}

// redactingExporter keeps query strings out of exported spans: FHIR
// searches carry the patient's BSN there, and no BSN leaves the node in
// telemetry. otelhttp records the full URL of outgoing calls (url.full).
type redactingExporter struct{ sdktrace.SpanExporter }

func (e redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redactedSpan{s}
	}
	return e.SpanExporter.ExportSpans(ctx, out)
}

type redactedSpan struct{ sdktrace.ReadOnlySpan }

func (s redactedSpan) Attributes() []attribute.KeyValue {
	return redactAttrs(s.ReadOnlySpan.Attributes())
}

// redactAttrs drops url.query and cuts the query off url.full.
func redactAttrs(in []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(in))
	for _, kv := range in {
		switch kv.Key {
		case "url.query":
			continue
		case "url.full", "http.url":
			if u, _, found := strings.Cut(kv.Value.AsString(), "?"); found {
				kv = attribute.String(string(kv.Key), u+"?[redacted]")
			}
		}
		out = append(out, kv)
	}
	return out
}

// RedactSpans wraps an exporter the way the node's own is wrapped, for a
// provider handed to the node in Options.TracerProvider.
func RedactSpans(e sdktrace.SpanExporter) sdktrace.SpanExporter { return redactingExporter{e} }

// addTraceAttrs puts the trace and span of ctx, when it is sampled, into a
// log record: the line then leads to the trace, and the trace to the line.
func addTraceAttrs(ctx context.Context, r *slog.Record) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
}

// shutdownTimeout bounds the flush of the last spans at shutdown.
const shutdownTimeout = 5 * time.Second
