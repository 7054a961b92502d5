package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/pki"
)

// lockedBuffer is a log sink the node's goroutines and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// edgeEnv is a served node with two participants, a partner's client
// certificate for its public listener, and its log and metrics at hand.
type edgeEnv struct {
	n        *Node
	public   *http.Client // the partner, over mTLS
	internal *http.Client
	tokens   map[string]string // participant URA → internal API token
	log      *lockedBuffer
	reg      *prometheus.Registry
	stop     func() // stops serving; once, also at cleanup
}

const (
	edgeURA1, edgeURA2, edgePartnerURA = "90000001", "90000002", "90000005"
)

func newEdgeEnv(t *testing.T, tune ...func(*Config)) *edgeEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, ura, uzi string) tls.Certificate {
		c, err := pki.LoadOrIssueUZIServer(filepath.Join(dir, "tls"), name, ca, pki.ServerCertRequest{ID: pki.UZIServerID{UZI: uzi, URA: ura, AGB: "00000000"}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	issue("node", edgeURA1, "900000011")
	issue("p2", edgeURA2, "900000022")
	partner := issue("partner", edgePartnerURA, "900000055")
	e := &edgeEnv{tokens: map[string]string{edgeURA1: "first-participant-token-0123", edgeURA2: "second-participant-token-0123"},
		log: &lockedBuffer{}, reg: prometheus.NewRegistry()}
	cfg := Config{
		Name: "n", DataDir: filepath.Join(dir, "data"),
		Public:         ListenerConfig{Addr: "127.0.0.1:0"},
		Internal:       ListenerConfig{Addr: "127.0.0.1:0"},
		TLS:            TLSConfig{CertFile: filepath.Join(dir, "tls", "node.pem"), KeyFile: filepath.Join(dir, "tls", "node-key.pem"), CAFiles: []string{filepath.Join(dir, "ca", "ca.pem")}},
		SigningKeyFile: filepath.Join(dir, "as.pem"), AddressbookURL: "https://127.0.0.1:1/fhir",
		Participants: []ParticipantConfig{
			{URA: edgeURA1, SigningKeyFile: filepath.Join(dir, "p1.pem"), InternalToken: e.tokens[edgeURA1]},
			{URA: edgeURA2, SigningKeyFile: filepath.Join(dir, "p2.pem"), InternalToken: e.tokens[edgeURA2],
				CertFile: filepath.Join(dir, "tls", "p2.pem"), KeyFile: filepath.Join(dir, "tls", "p2-key.pem")},
		},
	}
	for _, f := range tune {
		f(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if e.n, err = New(context.Background(), cfg, Options{Logger: logger, Registry: e.reg}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.n.Serve(ctx) }()
	e.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	t.Cleanup(e.stop)
	// Redirects are answers to check, not to follow.
	noFollow := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.public = &http.Client{Timeout: 10 * time.Second, CheckRedirect: noFollow, Transport: &http.Transport{
		TLSClientConfig: pki.ClientTLSConfig(partner, pki.CertPool(ca.Cert))}}
	e.internal = &http.Client{Timeout: 10 * time.Second, CheckRedirect: noFollow}
	t.Cleanup(e.public.CloseIdleConnections)
	t.Cleanup(e.internal.CloseIdleConnections)
	return e
}

// panics is the node's panic count of one listener, as /metrics shows it.
func (e *edgeEnv) panics(t *testing.T, listener string) float64 {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "schakel_http_panics_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "listener" && l.GetValue() == listener {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// do sends one request and reads the whole answer.
func do(t *testing.T, c *http.Client, method, url string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// resourceTypeOf is the resourceType of a FHIR JSON answer, "" when it is none.
func resourceTypeOf(body []byte) string {
	var r struct{ ResourceType string }
	_ = json.Unmarshal(body, &r)
	return r.ResourceType
}

// TestPublicMetadataWithoutToken: a partner reads the CapabilityStatement
// before it has a token; refusals on that path are OperationOutcomes.
func TestPublicMetadataWithoutToken(t *testing.T) {
	e := newEdgeEnv(t)
	base := e.n.PublicURL() + "/fhir/stu3/" + edgeURA1
	for _, tc := range []struct {
		method string
		status int
		want   string
	}{
		{http.MethodGet, http.StatusOK, "CapabilityStatement"},
		{http.MethodPost, http.StatusMethodNotAllowed, "OperationOutcome"},
	} {
		resp, body := do(t, e.public, tc.method, base+"/metadata", nil, nil)
		if resp.StatusCode != tc.status || resourceTypeOf(body) != tc.want {
			t.Errorf("%s metadata: %d %s, want %d %s", tc.method, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	if logs := e.log.String(); strings.Contains(logs, "panic") {
		t.Errorf("the node logged a panic:\n%s", logs)
	}
}

// TestPanicAnswered: a handler panic on either listener is answered 500 in
// the listener's error format, logged at ERROR with its stack and counted;
// http.ErrAbortHandler still aborts the answer, as net/http expects.
func TestPanicAnswered(t *testing.T) {
	e := newEdgeEnv(t)
	boom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain") // set before the panic: must not leak into the answer
		panic("boom " + r.URL.Path)
	})
	for _, tc := range []struct {
		listener, path, contentType, says string
	}{
		{"public", "/fhir/stu3/" + edgeURA1 + "/Patient", "application/fhir+json", `"resourceType":"OperationOutcome"`},
		{"public", "/consent/notifications/" + edgeURA1, "application/fhir+json", `"resourceType":"OperationOutcome"`},
		{"public", "/oauth/token", "application/json", `"error":"server_error"`},
		{"internal", "/internal/fhir/Patient", "application/fhir+json", `"resourceType":"OperationOutcome"`},
		{"internal", "/internal/audit/AuditEvent", "application/fhir+json", `"resourceType":"OperationOutcome"`},
		{"internal", "/internal/referrals", "application/problem+json", `"status":500`},
	} {
		t.Run(tc.listener+tc.path, func(t *testing.T) {
			ts := httptest.NewServer(e.n.edge(tc.listener, boom))
			defer ts.Close()
			before := e.panics(t, tc.listener)
			resp, body := do(t, ts.Client(), http.MethodGet, ts.URL+tc.path, nil, nil)
			if resp.StatusCode != http.StatusInternalServerError || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType) ||
				!strings.Contains(string(body), tc.says) {
				t.Errorf("answer %d %s %s, want 500 %s with %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.contentType, tc.says)
			}
			if strings.Contains(string(body), "boom") {
				t.Errorf("the panic value reached the client: %s", body)
			}
			if got := e.panics(t, tc.listener); got != before+1 {
				t.Errorf("schakel_http_panics_total{listener=%q} went from %v to %v", tc.listener, before, got)
			}
		})
	}
	logs := e.log.String()
	var logged bool
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "boom") {
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "goroutine") {
				t.Errorf("panic not logged at ERROR with its stack: %s", line)
			}
			logged = true
		}
	}
	if !logged {
		t.Errorf("no panic logged:\n%s", logs)
	}

	// After the answer has begun only an abort is honest; ErrAbortHandler
	// is net/http's own way to abort and no defect.
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		counted float64
	}{
		{"panic mid-answer", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"resourceType":"Bundle"`))
			panic("mid-answer")
		}, 1},
		{"ErrAbortHandler", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(e.n.edge("internal", tc.h))
			defer ts.Close()
			before := e.panics(t, "internal")
			resp, err := ts.Client().Get(ts.URL + "/internal/fhir/Patient")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Errorf("answer %d completed, want it aborted", resp.StatusCode)
			}
			if got := e.panics(t, "internal") - before; got != tc.counted {
				t.Errorf("counted %v panics, want %v", got, tc.counted)
			}
		})
	}
	if logs := e.log.String(); strings.Contains(logs, "level=INFO") && strings.Contains(logs, "panic") {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "level=INFO") && strings.Contains(line, "panic") {
				t.Errorf("a panic logged at INFO: %s", line)
			}
		}
	}

	// Operators alert on the counter: the node exposes it from the start.
	resp, body := do(t, e.internal, http.MethodGet, e.n.InternalURL()+"/metrics", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `schakel_http_panics_total{listener="public"}`) {
		t.Errorf("metrics: %d, no schakel_http_panics_total for the public listener", resp.StatusCode)
	}
}

// TestBaseWithoutSlash: the FHIR base itself is served, not redirected: a
// transaction or batch is POSTed to it, and a redirect would make clients
// resend (or drop) the Bundle.
func TestBaseWithoutSlash(t *testing.T) {
	e := newEdgeEnv(t)
	bearer := http.Header{"Authorization": {"Bearer " + e.tokens[edgeURA1]}, "Content-Type": {"application/fhir+json"}}
	batch := []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120"}}]}`)
	for _, tc := range []struct {
		name   string
		client *http.Client
		method string
		url    string
		header http.Header
		body   []byte
		status int
		want   string
	}{
		{"internal batch", e.internal, http.MethodPost, e.n.InternalURL() + "/internal/fhir", bearer, batch, http.StatusOK, "Bundle"},
		{"internal base read", e.internal, http.MethodGet, e.n.InternalURL() + "/internal/fhir", bearer, nil, http.StatusNotFound, "OperationOutcome"},
		{"public base read", e.public, http.MethodGet, e.n.PublicURL() + "/fhir/stu3/" + edgeURA1, nil, nil, http.StatusUnauthorized, "OperationOutcome"},
		{"public batch without token", e.public, http.MethodPost, e.n.PublicURL() + "/fhir/stu3/" + edgeURA1, http.Header{"Content-Type": {"application/fhir+json"}}, batch, http.StatusUnauthorized, "OperationOutcome"},
		{"public base of no participant", e.public, http.MethodGet, e.n.PublicURL() + "/fhir/stu3/90000077", nil, nil, http.StatusNotFound, "OperationOutcome"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.client, tc.method, tc.url, tc.header, tc.body)
			if resp.StatusCode != tc.status || resourceTypeOf(body) != tc.want {
				t.Errorf("%d %s (Location %q), want %d %s", resp.StatusCode, body, resp.Header.Get("Location"), tc.status, tc.want)
			}
		})
	}
}

// lastRecord is the newest audit record of the node.
func lastRecord(t *testing.T, n *Node) audit.Record {
	t.Helper()
	recs, err := n.Audit().List(context.Background(), audit.Filter{Newest: true, Limit: 1})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records %v, %v", recs, err)
	}
	return recs[0]
}

// TestInternalRefusals: a refused internal request is answered in its
// API's format (OperationOutcome on the FHIR APIs, problem+json elsewhere)
// and audited with its source and what it named, never with the token.
func TestInternalRefusals(t *testing.T) {
	e := newEdgeEnv(t)
	const bsn = "999911120"
	byIdentifier := "identifier=" + url.QueryEscape(nl.SystemBSN+"|"+bsn)
	stranger := "a-token-of-no-participant-here-0123"
	for _, tc := range []struct {
		name, method, path, auth, body string
		format                         string // OperationOutcome or problem
		tenant, patient, names         string // what the record must hold
	}{
		{"no token, FHIR search", http.MethodGet, "/internal/fhir/Patient?" + byIdentifier, "", "", "OperationOutcome", "", bsn, "/internal/fhir/Patient"},
		{"unknown token, FHIR base", http.MethodPost, "/internal/fhir", "Bearer " + stranger, `{"resourceType":"Bundle","type":"batch"}`, "OperationOutcome", "", "", "/internal/fhir"},
		{"mangled token", http.MethodGet, "/internal/fhir/Observation", "Bearer " + e.tokens[edgeURA1] + "x", "", "OperationOutcome", "", "", "/internal/fhir/Observation"},
		{"no token, audit trail", http.MethodGet, "/internal/audit/AuditEvent?patient=" + bsn, "", "", "OperationOutcome", "", bsn, "/internal/audit/AuditEvent"},
		{"unknown token, referral", http.MethodPost, "/internal/referrals", "Bearer " + stranger,
			`{"patient":"` + bsn + `","receiver":"00000003","application":"bgz"}`, "problem", "", bsn, "receiver=00000003"},
		{"unknown token, consult", http.MethodPost, "/internal/consult", "Bearer " + stranger,
			`{"patient":"` + bsn + `","holder":"00000004"}`, "problem", "", bsn, "holder=00000004"},
		{"a participant's token under another scheme", http.MethodGet, "/internal/referrals", "Basic " + e.tokens[edgeURA2], "", "problem", edgeURA2, "", "/internal/referrals"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Content-Type": {"application/json"}}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			resp, body := do(t, e.internal, tc.method, e.n.InternalURL()+tc.path, h, []byte(tc.body))
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("answer %d (WWW-Authenticate %q), want 401 with a Bearer challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			switch ct := resp.Header.Get("Content-Type"); tc.format {
			case "OperationOutcome":
				if !strings.HasPrefix(ct, "application/fhir+json") || resourceTypeOf(body) != "OperationOutcome" {
					t.Errorf("answer %s %s, want an OperationOutcome", ct, body)
				}
			default:
				if ct != "application/problem+json" || !strings.Contains(string(body), `"status":401`) {
					t.Errorf("answer %s %s, want problem+json", ct, body)
				}
			}
			rec := lastRecord(t, e.n)
			if rec.Outcome != http.StatusUnauthorized || rec.Tenant != tc.tenant || rec.Patient != tc.patient ||
				!strings.HasPrefix(rec.Address, "127.0.0.1:") || !strings.Contains(rec.Query, tc.names) {
				t.Errorf("audit record %+v, want outcome 401, tenant %q, patient %q, address 127.0.0.1, query naming %q",
					rec, tc.tenant, tc.patient, tc.names)
			}
			for _, tok := range []string{stranger, e.tokens[edgeURA1], e.tokens[edgeURA2]} {
				if strings.Contains(fmt.Sprintf("%+v", rec), tok) {
					t.Errorf("the audit record holds the token: %+v", rec)
				}
			}
		})
	}
}

// TestInternalBearerScheme: the auth-scheme is case-insensitive (RFC 7235
// §2.1; RFC 6750 §2.1), and one or more spaces separate it from the token.
func TestInternalBearerScheme(t *testing.T) {
	e := newEdgeEnv(t)
	for _, auth := range []string{"Bearer ", "bearer ", "BEARER ", "bEaReR ", "Bearer   "} {
		resp, body := do(t, e.internal, http.MethodGet, e.n.InternalURL()+"/internal/referrals",
			http.Header{"Authorization": {auth + e.tokens[edgeURA1]}}, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: %d %s, want 200", auth, resp.StatusCode, body)
		}
	}
}

func TestBearerCredentials(t *testing.T) {
	for _, tc := range []struct {
		header, credentials string
		bearer              bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc", "abc", true},
		{"Bearer", "", true},
		{"", "", false},
		{"Basic abc", "abc", false},
		{"abc", "abc", false}, // a bare token, named in the audit but refused
		{"Bearerabc", "Bearerabc", false},
	} {
		if c, b := bearerCredentials(tc.header); c != tc.credentials || b != tc.bearer {
			t.Errorf("%q: %q, %v; want %q, %v", tc.header, c, b, tc.credentials, tc.bearer)
		}
	}
}

// TestServeStoppedWhileStarting: a node whose context ends before it has
// resumed its pulls shuts down cleanly (no error, stores closed).
func TestServeStoppedWhileStarting(t *testing.T) {
	env := newNotifyEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := env.n.Serve(ctx); err != nil {
		t.Fatalf("serve of a stopped node: %v", err)
	}
	if _, err := env.n.Audit().Count(context.Background(), audit.Filter{}); err == nil {
		t.Error("the audit log is still open after Serve returned")
	}
}

// TestUnmatchedPaths: a path or method no route serves is answered in the
// listener's shape (OperationOutcome under a FHIR base, problem+json
// elsewhere), never ServeMux's plain text; a 405 keeps its Allow header.
func TestUnmatchedPaths(t *testing.T) {
	e := newEdgeEnv(t)
	auth := http.Header{"Authorization": {"Bearer " + e.tokens[edgeURA1]}}
	for _, tc := range []struct {
		name         string
		client       *http.Client
		method, url  string
		header       http.Header
		status       int
		contentType  string
		allowPresent bool
	}{
		{"public unknown FHIR version", e.public, http.MethodGet, e.n.PublicURL() + "/fhir/r5/" + edgeURA1 + "/Patient", nil, http.StatusNotFound, "application/fhir+json", false},
		{"public unknown path", e.public, http.MethodGet, e.n.PublicURL() + "/nothing-here", nil, http.StatusNotFound, "application/problem+json", false},
		{"public wrong method", e.public, http.MethodDelete, e.n.PublicURL() + "/jwks/" + edgeURA1, nil, http.StatusMethodNotAllowed, "application/problem+json", true},
		{"internal unknown path", e.internal, http.MethodGet, e.n.InternalURL() + "/internal/nothing", auth, http.StatusNotFound, "application/problem+json", false},
		{"internal wrong method", e.internal, http.MethodDelete, e.n.InternalURL() + "/internal/referrals", auth, http.StatusMethodNotAllowed, "application/problem+json", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.client, tc.method, tc.url, tc.header, nil)
			if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType) {
				t.Fatalf("%d %s %s, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.contentType)
			}
			if (resp.Header.Get("Allow") != "") != tc.allowPresent {
				t.Errorf("Allow header %q", resp.Header.Get("Allow"))
			}
		})
	}
}
