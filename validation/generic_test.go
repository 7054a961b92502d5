package validation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// fakeNode is an authorization server on 127.0.0.1 whose token endpoint
// answers as answer says: the kit must tell a node that refuses a bad
// assertion from one that does not.
func fakeNode(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*Env, func()) {
	t.Helper()
	ca, err := pki.NewCA("Test CA", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000011", URA: "90000001", AGB: "00000000"}})
	if err != nil {
		t.Fatal(err)
	}
	kitCert, err := ca.IssueUZIServer(pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900009955", URA: "90000995", AGB: "00000000"}})
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signing, err := pki.SigningJWK(ec)
	if err != nil {
		t.Fatal(err)
	}
	roots := pki.CertPool(ca.Cert)
	srv := httptest.NewUnstartedServer(nil)
	srv.TLS = pki.ServerTLSConfig(nodeCert, roots)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+oauth.MetadataPath, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(oauth.Metadata{Issuer: srv.URL, TokenEndpoint: srv.URL + oauth.TokenPath})
	})
	mux.HandleFunc("POST "+oauth.TokenPath, answer)
	srv.Config.Handler = mux
	srv.StartTLS()
	id := Identity{URA: "90000995", SystemUZI: "900009955", Cert: kitCert, Signing: signing, Roots: roots}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(kitCert, roots)}}
	env := &Env{Config: Config{Kit: id}, HTTP: client, OAuth: &oauth.Client{ClientID: id.URA, Key: signing, HTTP: client},
		Target: Target{URL: srv.URL, URA: "90000001", Endpoints: map[string]string{addressbook.PayloadAuthServer: srv.URL}},
		red:    &redactor{}, memo: map[string]*memo{}}
	return env, srv.Close
}

func genericCase(t *testing.T, id string) Case {
	for _, c := range GenericCases() {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no case %s", id)
	return Case{}
}

func TestCasesTellConformantFromBroken(t *testing.T) {
	grants := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln","token_type":"Bearer","expires_in":300}`))
	}
	refuses := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"assertion refused"}`))
	}
	serverError := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"server_error"}`))
	}
	for _, tc := range []struct {
		name   string
		caseID string
		answer func(http.ResponseWriter, *http.Request)
		want   Status
	}{
		{"alg none granted", "generic.oauth.alg-none", grants, Failed},
		{"alg none refused", "generic.oauth.alg-none", refuses, Passed},
		{"alg none crashes the server", "generic.oauth.alg-none", serverError, Failed},
		{"HMAC granted", "generic.oauth.hmac", grants, Failed},
		{"HMAC refused", "generic.oauth.hmac", refuses, Passed},
		{"wrong audience granted", "generic.oauth.wrong-audience", grants, Failed},
		{"expired granted", "generic.oauth.expired", grants, Failed},
		{"replay granted twice", "generic.oauth.replay", grants, Failed},
		{"replay: nothing granted at all", "generic.oauth.replay", refuses, Errored},
		{"a token that is not bound", "generic.oauth.client-assertion", grants, Failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, stop := fakeNode(t, tc.answer)
			defer stop()
			c := genericCase(t, tc.caseID)
			p := &Probe{env: env, ctx: context.Background()}
			v := c.Run(p.ctx, p)
			if v.Status != tc.want {
				t.Fatalf("%s: verdict %s (%s), want %s", tc.caseID, v.Status, v.Detail, tc.want)
			}
			if len(p.ex) == 0 {
				t.Error("no exchange recorded as evidence")
			}
			for _, ex := range p.ex {
				if jwtPattern.MatchString(ex.RequestBody + ex.ResponseBody) {
					t.Errorf("a JWT is shown in the report: %s / %s", ex.RequestBody, ex.ResponseBody)
				}
			}
		})
	}
}
