package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
}

const (
	edgeURA1, edgeURA2, edgePartnerURA = "90000001", "90000002", "90000005"
)

func newEdgeEnv(t *testing.T) *edgeEnv {
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
	logger := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if e.n, err = New(context.Background(), cfg, Options{Logger: logger, Registry: e.reg}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	e.public = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.ClientTLSConfig(partner, pki.CertPool(ca.Cert))}}
	e.internal = &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(e.public.CloseIdleConnections)
	t.Cleanup(e.internal.CloseIdleConnections)
	return e
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
