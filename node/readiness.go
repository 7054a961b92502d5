package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/pki"
)

// probeTimeout bounds each readiness check, so that a dependency that
// hangs fails the probe instead of holding it past the kubelet's timeout.
const probeTimeout = 2 * time.Second

// readyCheck is one dependency the node needs to serve.
type readyCheck struct {
	name  string
	check func(context.Context) error
}

// readyChecks are the dependencies /readyz asks after: the FHIR store, the
// audit log (no exchange goes unaudited), each consent service the node is
// configured to ask (an exchange that needs consent waits on it), and the
// CRLs (past nextUpdate, every peer of that CA is refused under
// trust.stalecrl fail-closed).
func (n *Node) readyChecks() []readyCheck {
	checks := []readyCheck{
		{"store", n.checkStore},
		{"audit", n.checkAudit},
		{"crl", n.checkCRLs},
		{"drain", n.checkDrain},
	}
	for _, svc := range []struct{ name, url string }{
		{"consent.regional", n.cfg.Consent.Regional.URL},
		{"consent.mitz", n.cfg.Consent.URL},
	} {
		if svc.url != "" && n.consentConfigured(svc.name) {
			u := svc.url
			checks = append(checks, readyCheck{svc.name, func(ctx context.Context) error { return dialService(ctx, u) }})
		}
	}
	return checks
}

// checkDrain fails while the node drains before it stops (Serve).
func (n *Node) checkDrain(context.Context) error {
	if n.draining.Load() {
		return errors.New("draining before the node stops")
	}
	return nil
}

func (n *Node) consentConfigured(name string) bool {
	if name == "consent.regional" {
		return n.regional != nil
	}
	return n.mitz != nil
}

// checkStore asks the store for a resource that does not exist: only a
// store that answers says "not found".
func (n *Node) checkStore(ctx context.Context) error {
	tenant := "readiness"
	if len(n.cfg.Participants) > 0 {
		tenant = n.cfg.Participants[0].URA
	}
	for _, v := range servedVersions {
		_, err := n.StoreFor(v).Read(ctx, tenant, "Patient", "schakel-readiness-probe")
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrDeleted) {
			return errors.New("the FHIR " + strings.ToUpper(string(v)) + " store does not answer")
		}
	}
	return nil
}

// checkAudit reads the log's newest checkpoint and looks at how the last
// commit went: a log that cannot be written refuses every exchange.
func (n *Node) checkAudit(ctx context.Context) error {
	if _, _, err := n.auditLog.LastCheckpoint(ctx); err != nil {
		return errors.New("the audit log cannot be read")
	}
	if n.metrics != nil && n.metrics.auditFailing.Load() {
		// Ready again once the log can take a commit: waiting for the next
		// request would wait forever behind a load balancer that sends none
		// to a replica that is not ready.
		if err := n.auditLog.Writable(ctx); err != nil {
			return errors.New("the audit log's last commit failed")
		}
		n.metrics.auditFailing.CompareAndSwap(true, false)
	}
	return nil
}

// checkCRLs fails when a CRL is past its nextUpdate and the trust refuses
// on a stale CRL (the default); with trust.stalecrl accept, the operator
// chose to go on with it.
func (n *Node) checkCRLs(context.Context) error {
	if n.cfg.Trust.StaleCRL == pki.StaleCRLAccept {
		return nil
	}
	now := time.Now()
	for _, c := range n.trust.CRLs() {
		if now.After(c.NextUpdate) {
			return fmt.Errorf("the CRL of %s is past its nextUpdate (%s)", c.Issuer, c.NextUpdate.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// dialService opens (and closes) a TCP connection to the service at base:
// enough to tell a service that is down from one that is up, without
// asking it a question about a patient.
func dialService(ctx context.Context, base string) error {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return errors.New("its URL has no host")
	}
	host := u.Host
	if u.Port() == "" {
		port := "443"
		if u.Scheme == "http" {
			port = "80"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("%s cannot be reached", u.Host)
	}
	return conn.Close()
}

// readyz answers 200 when every dependency answers, 503 naming those that
// do not. The checks run together, each bounded by probeTimeout.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	checks := n.readyChecks()
	results := make(map[string]string, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
			defer cancel()
			res := "ok"
			if err := c.check(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			results[c.name] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	status, failing := http.StatusOK, []string{}
	for name, res := range results {
		if res != "ok" {
			failing = append(failing, name)
		}
	}
	sort.Strings(failing)
	body := map[string]any{"status": "ready", "node": n.cfg.Name, "checks": results}
	if len(failing) > 0 {
		status = http.StatusServiceUnavailable
		body["status"] = "not ready"
		body["failing"] = failing
		n.log.WarnContext(r.Context(), "not ready", "failing", failing)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, body)
}

// livez answers 200 while the node's listener serves: it asks nothing of
// the dependencies, so that a down store restarts nobody.
func (n *Node) livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": "live", "node": n.cfg.Name})
}
