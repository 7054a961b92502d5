package network

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// tokenAttempt asks the GP node's token endpoint with cert, as a peer
// would: err is a refusal at TLS, otherwise the HTTP status and body.
func tokenAttempt(t *testing.T, nw *Network, cert tls.Certificate) (int, string, error) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, pki.CertPool(nw.CA.Cert))}}
	defer hc.CloseIdleConnections()
	resp, err := hc.PostForm(nw.GPNode.PublicURL()+oauth.TokenPath, url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

func peerCert(t *testing.T, ca *pki.CA) tls.Certificate {
	t.Helper()
	c, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000033", URA: peerURA, AGB: "01000003"},
		CommonName: "Testpraktijk", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// syncBuffer is a log sink written by the nodes' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually reports whether the log comes to hold s: the server logs a
// refused handshake after the client has seen it fail.
func (s *syncBuffer) eventually(want string) bool {
	for i := 0; i < 100; i++ {
		if strings.Contains(s.String(), want) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func upOn(t *testing.T, opts Options) *Network {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	return nw
}

// TestRevokedCertificateRefused: a certificate the network's CA revoked
// (as `schakel pki issue --revoked` does) gets no token from a node of the
// network; one that is not revoked reaches the token endpoint.
func TestRevokedCertificateRefused(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	revoked, good := peerCert(t, ca), peerCert(t, ca)
	if _, err := pki.RevokeInDir(filepath.Join(dir, "pki"), ca, []*big.Int{revoked.Leaf.SerialNumber}, 0); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	nw := upOn(t, Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	if code, body, err := tokenAttempt(t, nw, revoked); err == nil {
		t.Fatalf("revoked certificate reached the token endpoint: %d %s", code, body)
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("refusal %q does not say it is about the certificate", err)
	}
	if !logs.eventually("revoked") {
		t.Errorf("the node's log does not name the revocation:\n%s", logs.String())
	}
	if code, body, err := tokenAttempt(t, nw, good); err != nil {
		t.Fatalf("certificate that is not revoked refused at TLS: %v", err)
	} else if code != http.StatusBadRequest && code != http.StatusUnauthorized {
		t.Fatalf("unrevoked certificate: status %d %s, want an OAuth error for the bad request", code, body)
	}
}

// TestNetworkRefreshesStaleCRL: a data directory whose CRL went past its
// nextUpdate (a network reused a month later) gets a fresh CRL at Up, so
// its nodes keep accepting valid certificates.
func TestNetworkRefreshesStaleCRL(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	ca, err := pki.LoadOrCreateCA(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-40 * 24 * time.Hour)
	der, err := ca.CreateCRL(nil, big.NewInt(1), past, past.Add(pki.DefaultCRLValidity))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkiDir, pki.CRLFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	nw := upOn(t, Options{DataDir: dir})
	if _, _, err := tokenAttempt(t, nw, peerCert(t, nw.CA)); err != nil {
		t.Fatalf("valid certificate refused after Up: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(pkiDir, pki.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	crl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !crl.NextUpdate.After(time.Now()) {
		t.Fatalf("CRL nextUpdate %s not refreshed", crl.NextUpdate)
	}
}

// TestNodeWithStaleCRL: once the CRL is past its nextUpdate a node of the
// network refuses every certificate of the CA (stalecrl: fail-closed, the
// default), or accepts them with a warning under stalecrl: accept.
func TestNodeWithStaleCRL(t *testing.T) {
	for _, tc := range []struct {
		policy string
		refuse bool
	}{{"", true}, {pki.StaleCRLAccept, false}} {
		t.Run("stalecrl="+tc.policy, func(t *testing.T) {
			logs := &syncBuffer{}
			later := time.Now().Add(pki.DefaultCRLValidity + 24*time.Hour)
			nw := upOn(t, Options{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil)),
				trust: func(c *pki.TrustConfig) {
					c.StaleCRL = tc.policy
					c.Now = func() time.Time { return later }
				}})
			_, _, err := tokenAttempt(t, nw, peerCert(t, nw.CA))
			if tc.refuse {
				if err == nil {
					t.Fatal("a stale CRL did not refuse the certificate")
				}
				if !logs.eventually("past its nextUpdate") {
					t.Errorf("the node's log does not name the stale CRL:\n%s", logs.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("stalecrl: accept refused: %v", err)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "past its nextUpdate") {
				t.Errorf("no warning about the stale CRL:\n%s", logs.String())
			}
		})
	}
}
