package plateau

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/pki"
)

// networkFixture is a trust list with a CA (and its fresh CRL) and one
// bilaterally pinned partner certificate from a CA the node does not trust.
type networkFixture struct {
	withCRL, withoutCRL *pki.Trust
	caCert, pinnedCert  tls.Certificate
}

const (
	netCA     = "00000011" // arrives by the CA route
	netPinned = "00000012" // arrives with a pinned certificate
)

func newNetworkFixture(t *testing.T) *networkFixture {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := pki.NewCA("dev CA", now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("partner's own CA", now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f := &networkFixture{}
	if f.caCert, err = ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000011", URA: netCA, AGB: "00000011"}}); err != nil {
		t.Fatal(err)
	}
	if f.pinnedCert, err = other.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000012", URA: netPinned, AGB: "00000012"}}); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.RevokeInDir(dir, ca, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	pins := []pki.PinConfig{{Name: "bilateral", URA: netPinned, SHA256: pki.CertThumbprintS256(f.pinnedCert.Leaf)}}
	load := func(crl []string) *pki.Trust {
		tr, err := pki.LoadTrust(pki.TrustConfig{CAFiles: []string{caFile}, Pinned: pins, CRLFiles: crl, CRLPollInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	f.withCRL = load([]string{filepath.Join(dir, pki.CRLFile)})
	f.withoutCRL = load(nil)
	return f
}

func connection(cert tls.Certificate, version, suite uint16) *tls.ConnectionState {
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, _ := x509.ParseCertificate(der)
		chain = append(chain, c)
	}
	return &tls.ConnectionState{Version: version, CipherSuite: suite, PeerCertificates: chain, HandshakeComplete: true}
}

func TestNetworkCheck(t *testing.T) {
	f := newNetworkFixture(t)
	tests := []struct {
		name    string
		plateau int
		trust   *pki.Trust
		partner string
		cs      *tls.ConnectionState
		want    string // "" accepted; else part of the refusal's reason
	}{
		{"1: bilaterally pinned certificate", 1, f.withCRL, netPinned, connection(f.pinnedCert, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256), ""},
		{"1: no client certificate", 1, f.withCRL, netPinned, &tls.ConnectionState{Version: tls.VersionTLS13}, "did not come over mutual TLS"},
		{"2: CA route without a CRL", 2, f.withoutCRL, netCA, connection(f.caCert, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256), ""},
		{"2: another organisation's certificate", 2, f.withCRL, netPinned, connection(f.caCert, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256), "is organisation " + netCA + "'s"},
		{"3: CA route, TLS 1.3, fresh CRL", 3, f.withCRL, netCA, connection(f.caCert, tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384), ""},
		{"3: pinned certificate", 3, f.withCRL, netPinned, connection(f.pinnedCert, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256), "PKIoverheid/UZI CAs only"},
		{"3: TLS 1.2", 3, f.withCRL, netCA, connection(f.caCert, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), "requires TLS 1.3"},
		{"4: CA route, ChaCha20, fresh CRL", 4, f.withCRL, netCA, connection(f.caCert, tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256), ""},
		{"4: no CRL for the issuer", 4, f.withoutCRL, netCA, connection(f.caCert, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256), "fresh CRL"},
		{"4: a suite not named", 4, f.withCRL, netCA, connection(f.caCert, tls.VersionTLS13, 0x1304), "allows the cipher suites"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NetworkCheck{Trust: tt.trust}
			errToken := c.CheckToken(context.Background(), tt.plateau, &TokenContext{ClientURA: tt.partner, TLS: tt.cs})
			errAccess := c.CheckAccess(context.Background(), tt.plateau, &AccessContext{PartnerURA: tt.partner, TLS: tt.cs})
			for _, err := range []error{errToken, errAccess} {
				if tt.want == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					continue
				}
				r := AsRefusal(err)
				if r == nil {
					t.Fatalf("got %v, want a refusal", err)
				}
				if r.Function != Network || r.Required != tt.plateau || !strings.Contains(r.Reason, tt.want) {
					t.Fatalf("refusal %+v, want network plateau %d with %q", r, tt.plateau, tt.want)
				}
			}
		})
	}
}

// TestNetworkCheckInEnforcer: the enforcer runs the check at the plateau
// agreed with each partner, and its refusal names function and plateau.
func TestNetworkCheckInEnforcer(t *testing.T) {
	f := newNetworkFixture(t)
	e, err := New(Config{Agreements: []PartnerConfig{
		{URA: netPinned, Plateaus: Plateaus{Network: 3}},
		{URA: netCA, Plateaus: Plateaus{Network: 3}},
	}}, nil, NetworkCheck{Trust: f.withCRL})
	if err != nil {
		t.Fatal(err)
	}
	ok := TokenContext{ClientURA: netCA, GrantType: "client_credentials", TLS: connection(f.caCert, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)}
	if _, err := e.Authenticate(context.Background(), ok); err != nil {
		t.Fatalf("CA-route partner at network 3 refused: %v", err)
	}
	pinned := TokenContext{ClientURA: netPinned, GrantType: "client_credentials", TLS: connection(f.pinnedCert, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)}
	_, err = e.Authenticate(context.Background(), pinned)
	r := AsRefusal(err)
	if r == nil || r.Function != Network || r.Required != 3 || r.Delivered != 2 {
		t.Fatalf("pinned partner at network 3: got %v", err)
	}
	if !strings.Contains(r.Description(), "network: plateau 3 required, plateau 2 delivered") {
		t.Fatalf("description %q does not name function and plateaus", r.Description())
	}
}
