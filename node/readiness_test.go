package node

import (
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/pki"
)

// TestReadiness: /readyz answers 200 with every dependency up and 503
// naming the one that is down; /livez stays 200 throughout.
func TestReadiness(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tune    func(t *testing.T, c *Config)
		breakIt func(n *Node)
		failing []string
	}{
		{"all up", nil, nil, nil},
		{"store down", nil, func(n *Node) { _ = n.stu3.Close() }, []string{"store"}},
		{"audit log down", nil, func(n *Node) { _ = n.auditLog.Close() }, []string{"audit"}},
		// A commit failed (the database was away) but the log takes one
		// again: ready without waiting for a request to commit.
		{"audit commit failed, log writable again", nil, func(n *Node) { n.metrics.auditFailing.Store(true) }, nil},
		{"Mitz unreachable", func(t *testing.T, c *Config) {
			c.Consent.URL = "https://" + freeAddr(t)
			for i := range c.Participants {
				c.Participants[i].FacilityType = "ZKH"
			}
		}, nil, []string{"consent.mitz"}},
		{"CRL past nextUpdate", func(t *testing.T, c *Config) { c.Trust.CRLFiles = []string{staleCRL(t, c)} }, nil, []string{"crl"}},
		{"CRL past nextUpdate, accepted", func(t *testing.T, c *Config) {
			c.Trust.CRLFiles = []string{staleCRL(t, c)}
			c.Trust.StaleCRL = pki.StaleCRLAccept
		}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *edgeEnv
			if tc.tune != nil {
				e = newEdgeEnv(t, func(c *Config) { tc.tune(t, c) })
			} else {
				e = newEdgeEnv(t)
			}
			if tc.breakIt != nil {
				tc.breakIt(e.n)
			}
			resp, body := do(t, e.internal, http.MethodGet, e.n.InternalURL()+"/readyz", nil, nil)
			var got struct {
				Status  string            `json:"status"`
				Failing []string          `json:"failing"`
				Checks  map[string]string `json:"checks"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("readyz: %s", body)
			}
			want := http.StatusOK
			if len(tc.failing) > 0 {
				want = http.StatusServiceUnavailable
			}
			if resp.StatusCode != want || !slices.Equal(got.Failing, tc.failing) {
				t.Errorf("readyz %d failing %v, want %d failing %v: %s", resp.StatusCode, got.Failing, want, tc.failing, body)
			}
			for _, name := range []string{"store", "audit", "crl"} {
				if _, ok := got.Checks[name]; !ok {
					t.Errorf("readyz did not check %s: %s", name, body)
				}
			}
			if resp, body := do(t, e.internal, http.MethodGet, e.n.InternalURL()+"/livez", nil, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("livez %d: %s", resp.StatusCode, body)
			}
		})
	}
}

// staleCRL writes a CRL of the configuration's CA whose nextUpdate has passed.
func staleCRL(t *testing.T, c *Config) string {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Dir(c.TLS.CAFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := ca.CreateCRL(nil, big.NewInt(1), now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "stale.crl")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
