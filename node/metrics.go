package node

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	events   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_http_requests_total",
			Help: "HTTP requests answered, by listener and status code."}, []string{"listener", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "schakel_http_request_duration_seconds",
			Help: "Time to answer HTTP requests, by listener.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"listener"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_notifiedpull_steps_total",
			Help: "Notified Pull steps, by step."}, []string{"step"}),
	}
	reg.MustRegister(m.requests, m.duration, m.events)
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

func (m *metrics) wrap(listener string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		h.ServeHTTP(sw, r)
		m.requests.WithLabelValues(listener, strconv.Itoa(sw.status)).Inc()
		m.duration.WithLabelValues(listener).Observe(time.Since(start).Seconds())
	})
}

// logRequests logs each request without its query string: queries carry
// BSNs, and BSNs do not belong in the application log.
func (n *Node) logRequests(listener string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		n.log.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("listener", listener),
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", sw.status),
			slog.Duration("took", time.Since(start)), slog.String("remote", r.RemoteAddr))
	})
}
