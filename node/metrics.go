package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/oauth"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	events   *prometheus.CounterVec
	panics   *prometheus.CounterVec

	auditCommit         prometheus.Histogram
	auditBatch          prometheus.Histogram
	auditCommitFailures prometheus.Counter

	series

	// auditFailing is set while the audit log's last commit failed (readiness).
	auditFailing atomic.Bool
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_http_requests_total",
			Help: "HTTP requests answered, by listener, route (the route pattern), status code and partner (the peer's URA on the public listener)."},
			[]string{"listener", "route", "code", "partner"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "schakel_http_request_duration_seconds",
			Help: "Time to answer HTTP requests, by listener and route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"listener", "route"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_notifiedpull_steps_total",
			Help: "Notified Pull steps, by step."}, []string{"step"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_http_panics_total",
			Help: "HTTP handler panics recovered and answered 500, by listener."}, []string{"listener"}),
	}
	m.auditCommit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "schakel_audit_commit_duration_seconds",
		Help: "Time of each durable audit log commit (one fsync for the batch).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	m.auditBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "schakel_audit_commit_batch_records",
		Help: "Records per audit log commit (group commit batch size).", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	m.auditCommitFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "schakel_audit_commit_failures_total",
		Help: "Audit log commits that failed; the exchanges in them were refused."})
	reg.MustRegister(m.requests, m.duration, m.events, m.panics, m.auditCommit, m.auditBatch, m.auditCommitFailures)
	m.series = newSeries(reg)
	// Present at zero from the start, so that an alert on its increase fires on the first panic.
	m.panics.WithLabelValues("public")
	m.panics.WithLabelValues("internal")
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// edge is what stands between a listener and its routes: metrics, the
// request log and, innermost, panic recovery (so the 500 is counted and logged).
// The request id is outermost but for the trace, so that every log line
// and every error answer (the panic's too) carries it, and the trace id.
func (n *Node) edge(listener string, routes http.Handler) http.Handler {
	h := n.traceHandler(listener, withRequestID(n.wrapMetrics(listener, n.logRequests(listener, n.recoverPanics(listener, routes)))))
	if listener == "admin" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.requests.Add(1)
		defer n.requests.Add(-1)
		if r.ProtoMajor == 1 && n.draining.Load() {
			// Draining (Serve): the connection closes after this answer, so
			// that the client opens its next one elsewhere rather than send
			// it on a connection the node is about to close. (HTTP/2 clients
			// are told by the GOAWAY the stop sends.)
			w.Header().Set("Connection", "close")
		}
		growStack()
		h.ServeHTTP(w, r)
	})
}

// recoverPanics answers a handler panic with a 500 in the listener's error
// format, logs it at ERROR with its stack and counts it. Left to net/http, a
// panic drops the connection and is logged to the server's ErrorLog only.
func (n *Node) recoverPanics(listener string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // a deliberate abort: net/http closes the connection quietly
			}
			n.metrics.panics.WithLabelValues(listener).Inc()
			n.log.LogAttrs(r.Context(), slog.LevelError, "handler panic", slog.String("listener", listener),
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			if sw.status != 0 {
				// Part of the answer is out: only cutting the connection tells the client it is incomplete.
				panic(http.ErrAbortHandler)
			}
			writePanicAnswer(sw, listener, r.URL.Path)
		}()
		h.ServeHTTP(sw, r)
	})
}

// writePanicAnswer is the 500 for a panic, in the format the path's clients
// read: OperationOutcome for FHIR, RFC 6749 JSON for OAuth, problem+json for
// the internal API. Nothing of the panic itself reaches the client.
func writePanicAnswer(w http.ResponseWriter, listener, path string) {
	h := w.Header()
	for k := range h {
		delete(h, k) // whatever the handler set before it panicked
	}
	const detail = "internal error; the node's log has the details"
	fhirPath := strings.HasPrefix(path, "/fhir/") || strings.HasPrefix(path, "/consent/")
	if listener == "internal" {
		fhirPath = internalFHIRPath(path)
	}
	switch {
	case fhirPath:
		writeOutcome(w, fhir.Errorf(http.StatusInternalServerError, "exception", detail))
	case listener == "internal" || listener == "admin":
		writeProblem(w, http.StatusInternalServerError, "internal-error", detail)
	default:
		// RFC 6749 §5.2's error object, which the authorization server's clients parse.
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "server_error", "error_description": detail})
	}
}

// The route a request matched is kept in its edgeState; the routes' mux
// fills it in (unmatched), so that the metric names the pattern, never the
// path with its URAs and ids.
func setRoute(ctx context.Context, pattern string) {
	if st, ok := ctx.Value(edgeKey{}).(*edgeState); ok && pattern != "" {
		st.route = pattern
	}
}

// statusLabel is the code label of status: formatted once per code, not
// once per request.
func statusLabel(status int) string {
	if status >= 100 && status < 100+len(statusLabels) {
		return statusLabels[status-100]
	}
	return strconv.Itoa(status)
}

var statusLabels = func() (l [500]string) {
	for i := range l {
		l[i] = strconv.Itoa(100 + i)
	}
	return l
}()

// unmatchedRoute is the route of a request no route served.
const unmatchedRoute = "unmatched"

// tokenRoute is the authorization server's token endpoint, whose
// successful answers are counted as tokens issued.
var tokenRoute = "POST " + oauth.TokenPath

func (n *Node) wrapMetrics(listener string, h http.Handler) http.Handler {
	m := n.metrics
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		st, ok := r.Context().Value(edgeKey{}).(*edgeState)
		if !ok {
			// Not behind withRequestID: keep the route in a state of its own.
			st = &edgeState{route: unmatchedRoute}
			r = r.WithContext(context.WithValue(r.Context(), edgeKey{}, st))
		}
		h.ServeHTTP(sw, r)
		route := st.route
		partner := ""
		if listener == "public" && r.TLS != nil {
			if ura, err := n.trust.PeerURA(r.TLS); err == nil {
				partner = ura
			} else {
				partner = "unknown"
			}
		}
		nameSpan(r.Context(), listener, route)
		m.requests.WithLabelValues(listener, route, statusLabel(sw.status), partner).Inc()
		m.duration.WithLabelValues(listener, route).Observe(time.Since(start).Seconds())
		if route == tokenRoute && sw.status == http.StatusOK {
			m.tokens.WithLabelValues("issued").Inc()
		}
	})
}

// logRequests logs each request without its query string: queries carry
// BSNs, and BSNs do not belong in the application log.
func (n *Node) logRequests(listener string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !n.log.Enabled(r.Context(), slog.LevelDebug) {
			h.ServeHTTP(w, r) // the line would be dropped: build nothing for it
			return
		}
		start := time.Now()
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		h.ServeHTTP(sw, r)
		n.log.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("listener", listener),
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", sw.status),
			slog.Duration("took", time.Since(start)), slog.String("remote", r.RemoteAddr))
	})
}

// observeAudit is the audit log's report of each commit (audit.Config.Observe).
func (m *metrics) observeAudit(records int, took time.Duration, err error) {
	m.auditFailing.Store(err != nil)
	if err != nil {
		m.auditCommitFailures.Inc()
		return
	}
	m.auditCommit.Observe(took.Seconds())
	m.auditBatch.Observe(float64(records))
}
