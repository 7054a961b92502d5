package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/plateau"
)

// The logging function of the growth model, both plateau groups:
//
//   - 1–2, the own NEN 7513 log available on request: a partner asks over
//     the public listener for the records of its own requests, as an export
//     signed with the audit checkpoint key (audit.Store.Export). The
//     partner is the URA of its verified client certificate, as for the
//     client JWKS and consent notifications: the export is about the
//     organisation, not a care application, so no access token (which is
//     per care application and participant) is asked for.
//   - 3–4, logging and monitoring by the national agreements: the node
//     ships its log to the central log service (audit.central.url) with
//     audit.Shipper, in order and from the acknowledged position.

// validateLogging refuses an agreement at logging plateau 3–4 on a node
// that does not ship to a central log: the agreement would promise what the
// node does not do.
func (c *Config) validateLogging() []error {
	var errs []error
	if u := c.Audit.Central.URL; u != "" {
		if pu, err := url.Parse(u); err != nil || pu.Scheme != "https" || pu.Host == "" {
			errs = append(errs, errors.New("audit.central.url must be an https URL"))
		}
		return errs
	}
	if c.Partners.Default != nil {
		if p := c.Partners.Default[plateau.Logging]; p >= 3 {
			errs = append(errs, fmt.Errorf("partners.default: logging is agreed at plateau %d, which requires shipping to the central log: set audit.central.url", p))
		}
	}
	for i, a := range c.Partners.Agreements {
		if p := c.Partners.Plateau(a, plateau.Logging); p >= 3 {
			errs = append(errs, fmt.Errorf("%s: logging is agreed at plateau %d, which requires shipping to the central log: set audit.central.url",
				plateau.AgreementPath(i, a), p))
		}
	}
	return errs
}

// setupShipping creates the shipper when a central log is configured and
// publishes its position and lag as metrics.
func (n *Node) setupShipping(reg prometheus.Registerer) error {
	if n.cfg.Audit.Central.URL == "" {
		return nil
	}
	sh, err := audit.NewShipper(audit.ShipperConfig{Store: n.auditLog, URL: n.cfg.Audit.Central.URL,
		HTTP:       n.httpClient(n.trust.ClientTLSConfig(n.cert)),
		CursorFile: filepath.Join(n.cfg.DataDir, "audit-central.cursor"), Logger: n.log})
	if err != nil {
		return fmt.Errorf("audit.central.url: %w", err)
	}
	n.shipper = sh
	// Back-pressure is the lag, never a lost record or a blocked request:
	// alert on it growing.
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "schakel_audit_ship_lag_records",
			Help: "Audit records the central log does not hold yet."}, func() float64 { return float64(sh.Lag()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "schakel_audit_ship_acknowledged_seq",
			Help: "Highest audit record seq the central log has acknowledged."}, func() float64 { return float64(sh.Acknowledged()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "schakel_audit_ship_failures_total",
			Help: "Failed shipments to the central log (retried with back-off)."}, func() float64 { return float64(sh.Failures()) }),
	)
	return nil
}

// startShipping runs the shipper until ctx ends or the returned stop is
// called; Serve stops it and waits for it before it closes the audit log.
func (n *Node) startShipping(ctx context.Context) (stop func()) {
	if n.shipper == nil {
		return func() {}
	}
	ctx, stop = context.WithCancel(ctx)
	n.background.Go(func() { n.shipper.Run(ctx) })
	return stop
}

// Shipper is the node's shipper to the central log; nil without one.
func (n *Node) Shipper() *audit.Shipper { return n.shipper }

// serveAuditExport answers GET /audit/export: the signed export of the
// calling organisation's own records (logging plateau 1–2).
func (n *Node) serveAuditExport(w http.ResponseWriter, r *http.Request) {
	peer, err := n.trust.PeerURA(r.TLS)
	if err != nil || peer == "" {
		writeProblem(w, http.StatusForbidden, "forbidden", "a client certificate with an URA is required")
		return
	}
	q := r.URL.Query()
	rec := audit.Record{Action: audit.ActionRead, Type: "audit-export", Interaction: "audit-export", ActorURA: peer,
		Address: r.RemoteAddr, Query: r.URL.RawQuery,
		Checks: []string{"mtls: TLS 1.3 client certificate verified against the trust list"}}
	status, detail := http.StatusOK, ""
	var after int64
	for k := range q {
		if k != "after" && k != "agent" {
			status, detail = http.StatusBadRequest, "unknown parameter "+strconv.Quote(k)+"; known: after, agent"
		}
	}
	if v := q.Get("after"); status == http.StatusOK && v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			status, detail = http.StatusBadRequest, "after must be a non-negative integer (the last seq received)"
		}
	}
	ag, agreed := n.plateaus.Agreement(peer)
	if a := q.Get("agent"); status == http.StatusOK && a != "" && a != peer {
		status, detail = http.StatusForbidden, fmt.Sprintf("the export holds the records of your own organisation (URA %s) only, not of URA %s", peer, a)
		if agreed {
			// The logging plateau agreed is what makes the log available
			// on request, and for the partner's own requests only.
			detail += fmt.Sprintf(" (logging, plateau %d)", ag.Plateau(plateau.Logging))
		}
	}
	if status == http.StatusOK && !agreed {
		status, detail = http.StatusForbidden, fmt.Sprintf("no agreement with URA %s", peer)
	}
	rec.Outcome, rec.OutcomeText = status, detail
	// The request is itself recorded, before anything is answered.
	if err := n.auditLog.Append(r.Context(), rec); err != nil {
		n.log.Error("audit export: audit log unavailable", "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the audit log is unavailable; nothing was returned")
		return
	}
	if status != http.StatusOK {
		writeProblem(w, status, map[int]string{http.StatusBadRequest: "bad-request", http.StatusForbidden: "forbidden"}[status], detail)
		return
	}
	compact, err := n.auditLog.Export(r.Context(), peer, after, audit.MaxExportRecords)
	if err != nil {
		n.log.Error("audit export failed", "peer", peer, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "the export could not be made; retry later")
		return
	}
	w.Header().Set("Content-Type", "application/jose")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(compact))
}

// serveAuditKeys publishes the public checkpoint key, which verifies
// exports and checkpoints.
func (n *Node) serveAuditKeys(w http.ResponseWriter, _ *http.Request) {
	set, err := n.auditLog.PublicKeys()
	if err != nil {
		n.log.Error("publish audit keys", "err", err)
		writeProblem(w, http.StatusInternalServerError, "internal-error", "the audit keys could not be published")
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=300")
	_ = json.NewEncoder(w).Encode(set)
}
