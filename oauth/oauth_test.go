package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Test organisations (URA numbers).
const (
	uraA = "00000001"
	uraB = "00000002"
	// goodBase is the authorization_base the fake resolver accepts.
	goodBase = "a-secret-authorization-base"
)

// testPKI is a throwaway CA minted per test: no committed PEM files to expire.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Schakel test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pool: pool}
}

// issue mints a leaf certificate. A client certificate carries the URA in
// Subject.SerialNumber, the way testPeerURA reads it; production wiring
// passes the real UZI parser.
func (p *testPKI) issue(t testing.TB, ura string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "org " + ura, SerialNumber: ura},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func testPeerURA(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", errors.New("no client certificate")
	}
	if sn := cs.PeerCertificates[0].Subject.SerialNumber; sn != "" {
		return sn, nil
	}
	return "", errors.New("no URA in the client certificate")
}

// newSigningKey returns a private ES256 JWK with kid.
func newSigningKey(t testing.TB, kid string) jwk.Key {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		t.Fatal(err)
	}
	return k
}

// testOrg is a peer organisation: its TLS certificate and assertion key.
type testOrg struct {
	ura  string
	key  jwk.Key
	cert tls.Certificate
}

// clientKeys is a hand-written ClientKeys over fixed sets.
type clientKeys map[string]jwk.Set

func (c clientKeys) ClientKeySet(_ context.Context, id string) (jwk.Set, error) {
	if s, ok := c[id]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("unknown client %s: %w", id, ErrInvalidClient)
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testEnv is a running authorization server behind real mTLS, with a
// resource endpoint at /fhir/Patient that requires an access token.
type testEnv struct {
	pki      *testPKI
	clock    *testClock
	srv      *Server
	ts       *httptest.Server // nil for handler-level envs
	issuer   string
	audience string
	orgs     map[string]*testOrg

	mu       sync.Mutex
	lastReq  GrantRequest
	requests int
}

// newTestEnv starts a server; listen=false skips the TLS listener (benchmarks).
func newTestEnv(t testing.TB, listen bool, configure ...func(*ServerConfig)) *testEnv {
	t.Helper()
	e := &testEnv{
		pki:   newTestPKI(t),
		clock: &testClock{now: time.Now().Truncate(time.Second)},
		orgs:  map[string]*testOrg{},
	}
	keys := clientKeys{}
	for _, ura := range []string{uraA, uraB} {
		o := &testOrg{ura: ura, key: newSigningKey(t, "key-"+ura), cert: e.pki.issue(t, ura, false)}
		e.orgs[ura] = o
		pub, err := o.key.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		set := jwk.NewSet()
		if err := set.AddKey(pub); err != nil {
			t.Fatal(err)
		}
		keys[ura] = set
	}

	var mux *http.ServeMux
	e.issuer = "https://127.0.0.1:8443"
	if listen {
		mux = http.NewServeMux()
		e.ts = httptest.NewUnstartedServer(mux)
		e.issuer = "https://" + e.ts.Listener.Addr().String()
	}
	e.audience = e.issuer + "/fhir"

	cfg := ServerConfig{
		Issuer:     e.issuer,
		SigningKey: newSigningKey(t, "node-1"),
		Clients:    keys,
		Grants:     GrantResolverFunc(e.resolve),
		PeerURA:    testPeerURA,
		Now:        e.clock.Now,
		Logger:     slog.New(slog.DiscardHandler),
	}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	if listen {
		srv.Routes(mux)
		mux.HandleFunc("GET /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
			at, err := srv.Verify(r, e.audience)
			if err != nil {
				WriteBearerError(w, err)
				return
			}
			_, _ = fmt.Fprintf(w, "patient %s for %s", at.StringClaim("patient"), at.ClientID)
		})
		e.ts.TLS = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    e.pki.pool,
			Certificates: []tls.Certificate{e.pki.issue(t, "", true)},
		}
		e.ts.StartTLS()
		t.Cleanup(e.ts.Close)
	}
	return e
}

// resolve is the fake GrantResolver: jwt-bearer and Notified Pull requests
// need the known authorization_base.
func (e *testEnv) resolve(_ context.Context, req GrantRequest) (Grant, error) {
	e.mu.Lock()
	e.lastReq, e.requests = req, e.requests+1
	e.mu.Unlock()
	if req.AuthorizationBase != "" && req.AuthorizationBase != goodBase {
		return Grant{}, fmt.Errorf("no notification with this authorization base: %w", ErrInvalidGrant)
	}
	if len(req.Scope) == 1 && req.Scope[0] == "forbidden" {
		return Grant{}, fmt.Errorf("scope not allowed: %w", ErrInvalidScope)
	}
	g := Grant{Audience: e.audience, Scope: req.Scope, NotAfter: e.clock.Now().Add(time.Hour)}
	switch req.Resource {
	case "", e.audience:
	case e.issuer + "/other":
		// A resolver that ignores the resource: the server must refuse.
	default:
		return Grant{}, RefuseTarget("not a resource of this server", nil)
	}
	if req.AuthorizationBase != "" {
		g.Claims = map[string]any{"patient": "999911120", "task": "Task/123"}
	}
	return g, nil
}

// httpClient returns an mTLS client presenting org's certificate.
func (e *testEnv) httpClient(org *testOrg) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      e.pki.pool,
		Certificates: []tls.Certificate{org.cert},
	}}}
}

func (e *testEnv) client(org *testOrg) *Client {
	return &Client{ClientID: org.ura, Key: org.key, HTTP: e.httpClient(org), Now: e.clock.Now}
}

// assertionClaims are valid claims of an assertion by org.
func (e *testEnv) assertionClaims(org *testOrg) map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss": org.ura, "sub": org.ura, "aud": e.srv.TokenEndpoint(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": rand.Text(),
	}
}

// signJWT signs claims with alg and key, kid in the header. alg none yields
// an unsigned JWT.
func signJWT(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	if alg == jwa.NoSignature() {
		hdr, _ := json.Marshal(map[string]string{"alg": "none", "kid": kid, "typ": "JWT"})
		return base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	}
	if k, ok := key.(jwk.Key); ok { // raw, so that jws.Sign keeps our kid header
		if err := jwk.Export(k, &key); err != nil {
			t.Fatal(err)
		}
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, kid)
	_ = hdr.Set(jws.TypeKey, "JWT")
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// assertion is a valid assertion by org, after mutate edits its claims.
func (e *testEnv) assertion(t testing.TB, org *testOrg, mutate func(map[string]any)) string {
	t.Helper()
	c := e.assertionClaims(org)
	if mutate != nil {
		mutate(c)
	}
	kid, _ := org.key.KeyID()
	return signJWT(t, jwa.ES256(), org.key, kid, c)
}

// form is a valid client_credentials token request form of org.
func (e *testEnv) form(t testing.TB, org *testOrg) url.Values {
	return url.Values{
		"grant_type":            {GrantTypeClientCredentials},
		"client_assertion_type": {ClientAssertionTypeJWTBearer},
		"client_assertion":      {e.assertion(t, org, nil)},
	}
}

// post sends form to the token endpoint over mTLS as org.
func (e *testEnv) post(t testing.TB, org *testOrg, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := e.httpClient(org).PostForm(e.srv.TokenEndpoint(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("response %d is not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, body
}

// tlsRequest fabricates a request as if it arrived over mTLS from org.
func tlsRequest(method, target string, body io.Reader, org *testOrg) *http.Request {
	r := httptest.NewRequest(method, target, body)
	if org != nil {
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{org.cert.Leaf}}
	}
	return r
}

// issueDirect obtains a token by calling the handler with a fabricated r.TLS.
func (e *testEnv) issueDirect(t testing.TB, org *testOrg, form url.Values) string {
	t.Helper()
	r := tlsRequest(http.MethodPost, TokenPath, strings.NewReader(form.Encode()), org)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	e.srv.handleToken(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("token request: %d %s", w.Code, w.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	return tr.AccessToken
}
