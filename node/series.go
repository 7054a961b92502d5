package node

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
)

// Exchange patterns and roles, the labels of schakel_exchanges_total.
const (
	patternNotifiedPull = "notified-pull"
	patternDirectPull   = "direct-pull"
	patternPush         = "push"
	patternIndexedPull  = "indexed-pull"
	roleSender          = "sender"    // notified pull: makes data available and notifies
	roleReceiver        = "receiver"  // notified pull: pulls after the notification
	roleRequester       = "requester" // direct pull: asks a holder
)

// series are the node's domain metrics (docs/operations.md, "Metrics").
type series struct {
	exchanges     *prometheus.CounterVec
	exchangeTime  *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	verifications *prometheus.CounterVec
	consent       *prometheus.CounterVec
	consentTime   *prometheus.HistogramVec
	localizations *prometheus.CounterVec
	localizeTime  prometheus.Histogram
	storeTime     *prometheus.HistogramVec
}

func newSeries(reg prometheus.Registerer) series {
	latency := prometheus.ExponentialBuckets(0.0005, 2, 14)
	s := series{
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_exchanges_total",
			Help: "Exchanges started or finished here, by care application, pattern, this node's role and outcome."},
			[]string{"application", "pattern", "role", "outcome"}),
		exchangeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "schakel_exchange_duration_seconds",
			Help:    "Time of a completed exchange as this node saw it, by care application, pattern and role: the receiver from the notification to the stored data, the requester of a Direct Pull from its system's request to the answer.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"application", "pattern", "role"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_outbox_retries_total",
			Help: "Delivery attempts from the outbox that failed and were scheduled again, by pattern."}, []string{"pattern"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_oauth_token_requests_total",
			Help: "Token requests answered by the authorization server, by outcome (issued, or the RFC 6749 error class)."},
			[]string{"outcome"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_oauth_token_verifications_total",
			Help: "Access tokens presented to the resource server, by outcome (valid, invalid)."}, []string{"outcome"}),
		consent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_consent_decisions_total",
			Help: "Consent questions asked, by consent source and decision (Permit, Deny, NotApplicable, Indeterminate, error)."},
			[]string{"source", "decision"}),
		consentTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "schakel_consent_request_duration_seconds",
			Help: "Time to a consent decision, by consent source.", Buckets: latency}, []string{"source"}),
		localizations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "schakel_localization_queries_total",
			Help: "Localization queries at the referral index, by outcome (found, none, error)."}, []string{"outcome"}),
		localizeTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "schakel_localization_query_duration_seconds",
			Help: "Time to answer a localization query, consent questions included.", Buckets: latency}),
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "schakel_store_operation_duration_seconds",
			Help: "FHIR store operation latency, by operation and outcome (ok, error).", Buckets: latency},
			[]string{"operation", "outcome"}),
	}
	reg.MustRegister(s.exchanges, s.exchangeTime, s.retries, s.tokens, s.verifications, s.consent, s.consentTime, s.localizations, s.localizeTime, s.storeTime)
	return s
}

// zero makes the series an operator alerts on present from the start, at
// 0: an absent series and a quiet one look the same on a dashboard.
func (n *Node) zeroSeries() {
	s := n.metrics.series
	for _, e := range []struct {
		pattern, role string
		on            careapp.Pattern
	}{{patternNotifiedPull, roleSender, careapp.NotifiedPull}, {patternNotifiedPull, roleReceiver, careapp.NotifiedPull}, {patternDirectPull, roleRequester, careapp.DirectPull}} {
		for _, app := range n.apps.On(e.on) {
			for _, outcome := range []string{"ok", "error"} {
				s.exchanges.WithLabelValues(app.Name(), e.pattern, e.role, outcome)
			}
			if e.role != roleSender {
				s.exchangeTime.WithLabelValues(app.Name(), e.pattern, e.role)
			}
		}
	}
	s.tokens.WithLabelValues("issued")
	s.retries.WithLabelValues(patternPush)
	s.verifications.WithLabelValues("valid")
	s.verifications.WithLabelValues("invalid")
	for _, o := range []string{"found", "none", "error"} {
		s.localizations.WithLabelValues(o)
	}
	for source, on := range map[string]bool{"local": n.consents != nil, "regional": n.regional != nil, "mitz": n.mitz != nil} {
		if on {
			s.consentTime.WithLabelValues(source)
			for _, d := range []consent.Decision{consent.DecisionPermit, consent.DecisionDeny, consent.DecisionNotApplicable, consent.DecisionIndeterminate, "error"} {
				s.consent.WithLabelValues(source, string(d))
			}
		}
	}
}

// exchangeTook records the duration of an exchange that completed.
func (s series) exchangeTook(application, pattern, role string, took time.Duration) {
	s.exchangeTime.WithLabelValues(application, pattern, role).Observe(took.Seconds())
}

// exchange counts one exchange outcome.
func (s series) exchange(application, pattern, role string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.exchanges.WithLabelValues(application, pattern, role, outcome).Inc()
}

// applicationLabel is the care application of a request for a label: the
// default when it names none; "unknown" when it was refused naming one
// that is not the default, so that a caller cannot mint label values.
func applicationLabel(app, def string, err error) string {
	switch {
	case app == "":
		return def
	case err != nil && app != def:
		return "unknown"
	}
	return app
}

// exchangeEvent counts the Notified Pull exchanges as they end: a pull
// completed or failed on the receiving side, a referral failed on the
// sending side. A received referral is counted under the care application
// its pull recorded; one that failed before that, under the node's first
// application on Notified Pull.
func (n *Node) exchangeEvent(e notifiedpull.Event) {
	s := n.metrics.series
	switch {
	case e.Step == "completed":
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		r, err := n.np.ReceivedOne(ctx, e.Tenant, e.Referral)
		app := n.receivedApplication(r)
		s.exchange(app, patternNotifiedPull, roleReceiver, nil)
		if err == nil && !r.Created.IsZero() {
			s.exchangeTook(app, patternNotifiedPull, roleReceiver, e.Time.Sub(r.Created))
		}
	case e.Step == "failed" && e.Referral != "":
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		failed := errors.New("failed")
		if g, err := n.np.SentOne(ctx, e.Tenant, e.Referral); err == nil {
			s.exchange(g.Application, patternNotifiedPull, roleSender, failed)
		} else if r, err := n.np.ReceivedOne(ctx, e.Tenant, e.Referral); err == nil {
			s.exchange(n.receivedApplication(r), patternNotifiedPull, roleReceiver, failed)
		}
	}
}

// receivedApplication is the care application a received referral is
// counted under.
func (n *Node) receivedApplication(r notifiedpull.Received) string {
	if r.Application != "" {
		return r.Application
	}
	if apps := n.apps.On(careapp.NotifiedPull); len(apps) > 0 {
		return apps[0].Name()
	}
	return notifiedpull.ApplicationBgZ
}

// tokenRefused counts a refused token request by its RFC 6749 §5.2
// error code (a fixed set; anything else is "other").
func (s series) tokenRefused(code string) {
	switch code {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
		"invalid_scope", "server_error", "temporarily_unavailable", "invalid_target":
		s.tokens.WithLabelValues(code).Inc()
	default:
		s.tokens.WithLabelValues("other").Inc()
	}
}

// verify is the authorization server's Verify, counted.
func (n *Node) verify(r *http.Request, audience string) (*oauth.AccessToken, error) {
	tok, err := n.as.Verify(r, audience)
	outcome := "valid"
	if err != nil {
		outcome = "invalid"
	}
	n.metrics.verifications.WithLabelValues(outcome).Inc()
	return tok, err
}

// observedChecker times and counts the decisions of a consent source.
type observedChecker struct {
	consent.Checker
	source string
	s      series
	tracer trace.Tracer
}

func (c observedChecker) Decide(ctx context.Context, q consent.Question) (consent.Decision, error) {
	ctx, span := c.tracer.Start(ctx, "consent.decide", trace.WithAttributes(attribute.String("consent.source", c.source)))
	start := time.Now()
	d, err := c.Checker.Decide(ctx, q)
	c.s.consentTime.WithLabelValues(c.source).Observe(time.Since(start).Seconds())
	decision := string(d)
	if err != nil {
		decision = "error"
	}
	c.s.consent.WithLabelValues(c.source, decision).Inc()
	span.SetAttributes(attribute.String("consent.decision", decision))
	endSpan(span, err)
	return d, err
}

// observedConsentFor is consentFor with the answer timed and counted, by
// the kind of source (local, regional, mitz).
func (n *Node) observedConsentFor(partner string) (consent.Checker, string) {
	c, desc := n.consentFor(partner)
	var kind string
	switch c := c.(type) {
	case nil:
		return nil, desc
	case *consent.LocalChecker:
		kind = "local"
	case *consent.Client:
		kind = "mitz"
		if c == n.regional {
			kind = "regional"
		}
	default:
		kind = "other"
	}
	return observedChecker{c, kind, n.metrics.series, n.tracing.tracer}, desc
}

// timedStore times the FHIR store's operations. It keeps the optional
// interfaces the REST layer asks for (every backend has both).
type timedStore struct {
	store.Store
	s      series
	tracer trace.Tracer
}

// begin starts an operation's span; observe ends it.
func (t timedStore) begin(ctx context.Context, op string) (context.Context, trace.Span, time.Time) {
	if !records(t.tracer) {
		return ctx, noSpan, time.Now()
	}
	ctx, span := t.tracer.Start(ctx, "store."+op, trace.WithAttributes(attribute.String("db.operation.name", op)))
	return ctx, span, time.Now()
}

func (t timedStore) observe(op string, span trace.Span, start time.Time, err error) {
	outcome := "ok"
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrDeleted) {
		outcome = "error"
	}
	t.s.storeTime.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
	if outcome == "ok" {
		err = nil // not found is an answer, not a failure of the store
	}
	endSpan(span, err)
}

func (t timedStore) Create(ctx context.Context, tenant string, body json.RawMessage) (store.Resource, error) {
	ctx, span, start := t.begin(ctx, "create")
	r, err := t.Store.Create(ctx, tenant, body)
	t.observe("create", span, start, err)
	return r, err
}

func (t timedStore) Update(ctx context.Context, tenant string, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	ctx, span, start := t.begin(ctx, "update")
	r, created, err := t.Store.Update(ctx, tenant, body, ifMatch)
	t.observe("update", span, start, err)
	return r, created, err
}

func (t timedStore) Delete(ctx context.Context, tenant, typ, id string) error {
	ctx, span, start := t.begin(ctx, "delete")
	err := t.Store.Delete(ctx, tenant, typ, id)
	t.observe("delete", span, start, err)
	return err
}

func (t timedStore) Read(ctx context.Context, tenant, typ, id string) (store.Resource, error) {
	ctx, span, start := t.begin(ctx, "read")
	r, err := t.Store.Read(ctx, tenant, typ, id)
	t.observe("read", span, start, err)
	return r, err
}

func (t timedStore) VRead(ctx context.Context, tenant, typ, id, versionID string) (store.Resource, error) {
	ctx, span, start := t.begin(ctx, "vread")
	r, err := t.Store.VRead(ctx, tenant, typ, id, versionID)
	t.observe("vread", span, start, err)
	return r, err
}

func (t timedStore) Search(ctx context.Context, tenant string, q store.Query) (store.Page, error) {
	ctx, span, start := t.begin(ctx, "search")
	p, err := t.Store.Search(ctx, tenant, q)
	t.observe("search", span, start, err)
	return p, err
}

func (t timedStore) History(ctx context.Context, tenant string, q store.HistoryQuery) (store.HistoryPage, error) {
	ctx, span, start := t.begin(ctx, "history")
	p, err := t.Store.(store.Historian).History(ctx, tenant, q)
	t.observe("history", span, start, err)
	return p, err
}

func (t timedStore) InTx(ctx context.Context, tenant string, fn func(tx store.Tx) error) error {
	ctx, span, start := t.begin(ctx, "transaction")
	err := t.Store.(store.Transactional).InTx(ctx, tenant, fn)
	t.observe("transaction", span, start, err)
	return err
}

// nodeCollector reports what is read from the node's state at scrape time:
// certificate and CRL expiry, and how many exchanges wait.
type nodeCollector struct {
	n                        *Node
	certExpiry, crlNext      *prometheus.Desc
	inbox, outbox, depthFail *prometheus.Desc
}

func newNodeCollector(n *Node) *nodeCollector {
	return &nodeCollector{n: n,
		certExpiry: prometheus.NewDesc("schakel_certificate_expiry_timestamp_seconds",
			"NotAfter of the node's certificates: the node's own (tls) and each participant's.", []string{"certificate", "ura"}, nil),
		crlNext: prometheus.NewDesc("schakel_crl_next_update_timestamp_seconds",
			"nextUpdate of each loaded CRL, by issuing CA.", []string{"issuer"}, nil),
		inbox: prometheus.NewDesc("schakel_inbox_pending",
			"Exchanges received and not final (notified pull: notifications whose pull has not ended).", []string{"pattern"}, nil),
		outbox: prometheus.NewDesc("schakel_outbox_pending",
			"Exchanges sent whose partner has not reported a final status (notified pull: referrals).", []string{"pattern"}, nil),
		depthFail: prometheus.NewDesc("schakel_exchange_store_up",
			"1 when the exchange store answered the depth count of this scrape, 0 otherwise.", nil, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.certExpiry, c.crlNext, c.inbox, c.outbox, c.depthFail} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	if leaf, err := x509.ParseCertificate(n.cert.Certificate[0]); err == nil {
		ch <- prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), "tls", "")
	}
	for _, part := range n.parts.all() { // participants added at run time too
		if part.CertFile == "" {
			continue // it uses the node's certificate
		}
		if leaf, err := x509.ParseCertificate(part.cert.Certificate[0]); err == nil {
			ch <- prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), "participant", part.URA)
		}
	}
	for _, crl := range n.trust.CRLs() {
		ch <- prometheus.MustNewConstMetric(c.crlNext, prometheus.GaugeValue, float64(crl.NextUpdate.Unix()), crl.Issuer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	d, err := n.npDB.Depth(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.depthFail, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.depthFail, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.inbox, prometheus.GaugeValue, float64(d.Inbox), patternNotifiedPull)
	ch <- prometheus.MustNewConstMetric(c.outbox, prometheus.GaugeValue, float64(d.Outbox), patternNotifiedPull)
}
