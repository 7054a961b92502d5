package identity

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// TestServerAndClient: the stand-in issues an identity for the organisation
// of the client certificate only, and refuses malformed requests; Client
// speaks its wire shape.
func TestServerAndClient(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := pki.LoadOrCreateIdentityIssuer(dir, ca)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ura, uzi string) *http.Client {
		c, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: uzi, URA: ura, AGB: "01000001"},
			CommonName: "org " + ura, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(c, pki.CertPool(ca.Cert))}}
	}
	srvCert, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900009955", URA: "90000995", AGB: "00000000"},
		CommonName: "issuer", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer((&Server{Signer: &Signer{Issuer: "https://issuer.example", Key: iss.Key}}).Handler())
	srv.TLS = pki.ServerTLSConfig(srvCert, pki.CertPool(ca.Cert))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hospital := &Client{URL: srv.URL, HTTP: issue("90000002", "900000022")}
	good := plateau.IdentityRequest{UZI: "900012345", Role: "01.015", URA: "90000002", LoA: plateau.LoAHigh, Audience: "https://gp.example/oauth2/token"}
	for _, tc := range []struct {
		name    string
		req     plateau.IdentityRequest
		refused string
	}{
		{"own organisation", good, ""},
		{"another organisation", func() plateau.IdentityRequest { r := good; r.URA = "90000001"; return r }(), "403"},
		{"no role code", func() plateau.IdentityRequest { r := good; r.Role = "arts"; return r }(), "rol_code"},
		{"audience not https", func() plateau.IdentityRequest { r := good; r.Audience = "http://gp.example"; return r }(), "aud"},
		{"no level of assurance", func() plateau.IdentityRequest { r := good; r.LoA = ""; return r }(), "loa_authn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := hospital.IssueIdentity(context.Background(), tc.req)
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err %v, want %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Count(tok, ".") != 2 {
				t.Fatalf("not a compact JWT: %q", tok)
			}
		})
	}
}
