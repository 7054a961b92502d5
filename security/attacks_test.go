package security

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
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

var updateDoc = flag.Bool("update", false, "rewrite the attack catalogue table in docs/security.md")

// Organisations of the test network.
const (
	uraNode    = "10000000" // the node under attack
	uraA       = "00000001" // a CA-route client
	uraB       = "00000002" // another CA-route client
	uraPartner = "00000003" // a pinned bilateral partner, own CA
	uraUnknown = "00000009" // a CA-route certificate whose URA has no registered key set
	goodBase   = "the-authorization-base"
	readScope  = "patient/*.read"
)

// handshake marks a case refused during the TLS handshake (no HTTP status).
const handshake = 0

// org is a client organisation: TLS certificate and assertion key.
type org struct {
	ura  string
	cert tls.Certificate
	key  jwk.Key
}

// clock is the authorization server's settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// countingReplay records how many assertion IDs were stored.
type countingReplay struct {
	oauth.ReplayCache
	mu sync.Mutex
	n  int
}

func (c *countingReplay) Use(ctx context.Context, iss, jti string, exp time.Time) error {
	err := c.ReplayCache.Use(ctx, iss, jti, exp)
	if err == nil {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return err
}

func (c *countingReplay) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// env is a node's public listener: pki.Trust mTLS with the oauth.Server
// and a FHIR-like resource behind it.
type env struct {
	ca, otherCA *pki.CA
	trust       *pki.Trust
	clock       *clock
	srv         *oauth.Server
	signingKey  jwk.Key
	ts          *httptest.Server
	issuer      string
	audience    string
	orgs        map[string]*org
	certs       map[string]tls.Certificate // attacker certificates by name
	idp         *pki.IdentityIssuer
	replay      *countingReplay

	mu       sync.Mutex
	approved int // grants the resolver allowed
}

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
	_ = k.Set(jwk.KeyIDKey, kid)
	_ = k.Set(jwk.AlgorithmKey, jwa.ES256())
	return k
}

func id(ura string) pki.UZIServerID {
	return pki.UZIServerID{UZI: "9" + ura, URA: ura, AGB: "0" + ura[1:]}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{clock: &clock{now: time.Now().Truncate(time.Second)}, orgs: map[string]*org{}, certs: map[string]tls.Certificate{}}
	var err error
	if e.ca, err = pki.NewCA("dev CA", time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if e.otherCA, err = pki.NewCA("untrusted CA", time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	partnerCA, err := pki.NewCA("partner's own CA", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(f func(pki.ServerCertRequest) (tls.Certificate, error), ura string) tls.Certificate {
		t.Helper()
		c, err := f(pki.ServerCertRequest{ID: id(ura), CommonName: "org " + ura})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, ura := range []string{uraA, uraB} {
		e.orgs[ura] = &org{ura: ura, cert: issue(e.ca.IssueUZIServer, ura), key: newSigningKey(t, "key-"+ura)}
	}
	e.orgs[uraPartner] = &org{ura: uraPartner, cert: issue(partnerCA.IssueUZIServer, uraPartner), key: newSigningKey(t, "key-"+uraPartner)}
	e.certs["expired"] = issue(e.ca.IssueExpired, uraA)
	e.certs["not-yet-valid"] = issue(e.ca.IssueNotYetValid, uraA)
	e.certs["revoked"] = issue(e.ca.IssueUZIServer, uraA)
	e.certs["denied"] = issue(e.ca.IssueUZIServer, uraA)
	e.certs["untrusted-ca"] = issue(e.otherCA.IssueUZIServer, uraA)
	e.certs["no-uzi"] = issue(e.ca.IssueWithoutUZIIdentity, uraA)
	e.certs["partner-unpinned"] = issue(partnerCA.IssueUZIServer, uraPartner)
	e.certs["wrong-ura"] = issue(e.ca.IssueWrongURA, uraA) // claims A, carries WrongURA(A) = B
	e.certs["unlisted"] = issue(e.ca.IssueUZIServer, uraUnknown)

	if _, err := pki.RevokeInDir(dir, e.ca, []*big.Int{e.certs["revoked"].Leaf.SerialNumber}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if e.idp, err = pki.LoadOrCreateIdentityIssuer(dir, e.ca); err != nil {
		t.Fatal(err)
	}
	e.trust, err = pki.LoadTrust(pki.TrustConfig{
		CACerts:     []*x509.Certificate{e.ca.Cert},
		CRLFiles:    []string{filepath.Join(dir, pki.CRLFile)},
		Pinned:      []pki.PinConfig{{Name: "partner", URA: uraPartner, SHA256: pki.CertThumbprintS256(e.orgs[uraPartner].cert.Leaf)}},
		DenySerials: []string{e.certs["denied"].Leaf.SerialNumber.String()},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	e.ts = httptest.NewUnstartedServer(mux)
	e.issuer = "https://" + e.ts.Listener.Addr().String()
	e.audience = e.issuer + "/fhir"
	keys := map[string]jwk.Set{}
	for ura, o := range e.orgs {
		pub, _ := o.key.PublicKey()
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		keys[ura] = set
	}
	e.replay = &countingReplay{ReplayCache: oauth.NewMemoryReplayCache(0, e.clock.Now)}
	e.signingKey = newSigningKey(t, "node-key-1")
	e.srv, err = oauth.NewServer(oauth.ServerConfig{
		Issuer:          e.issuer,
		SigningKey:      e.signingKey,
		Clients:         clientKeys(keys),
		Grants:          oauth.GrantResolverFunc(e.resolve),
		PeerURA:         e.trust.PeerURA,
		Now:             e.clock.Now,
		Replay:          e.replay,
		Logger:          slog.New(slog.DiscardHandler),
		IdentityIssuers: []oauth.IdentityIssuer{{Issuer: "urn:test:idp", Roots: pki.CertPool(e.ca.Cert)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Routes(mux)
	mux.HandleFunc("GET /fhir/Patient", func(w http.ResponseWriter, r *http.Request) {
		at, err := e.srv.Verify(r, e.audience)
		if err == nil && !at.HasScope(readScope) {
			err = fmt.Errorf("scope %q needed: %w", readScope, oauth.ErrInsufficientScope)
		}
		if err != nil {
			oauth.WriteBearerError(w, err)
			return
		}
		_, _ = io.WriteString(w, `{"resourceType":"Bundle"}`)
	})
	server, err := e.ca.IssueUZIServer(pki.ServerCertRequest{ID: id(uraNode)})
	if err != nil {
		t.Fatal(err)
	}
	e.ts.TLS = e.trust.ServerTLSConfig(server)
	e.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected here
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)
	return e
}

type clientKeys map[string]jwk.Set

func (c clientKeys) ClientKeySet(_ context.Context, id string) (jwk.Set, error) {
	if s, ok := c[id]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("unknown client: %w", oauth.ErrInvalidClient)
}

// resolve grants readScope (and "task") to any authenticated client; a sent
// authorization_base must be the known one.
func (e *env) resolve(_ context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	if req.AuthorizationBase != "" && req.AuthorizationBase != goodBase {
		return oauth.Grant{}, fmt.Errorf("unknown authorization base: %w", oauth.ErrInvalidGrant)
	}
	for _, s := range req.Scope {
		if s != readScope && s != "task" {
			return oauth.Grant{}, fmt.Errorf("scope %s: %w", s, oauth.ErrInvalidScope)
		}
	}
	e.mu.Lock()
	e.approved++
	e.mu.Unlock()
	return oauth.Grant{Audience: e.audience, Scope: req.Scope}, nil
}

func (e *env) approvals() int { e.mu.Lock(); defer e.mu.Unlock(); return e.approved }

// client is an HTTP client presenting cert (none when cert is empty),
// trusting the node by the dev CA, with the given TLS version cap.
func (e *env) client(cert tls.Certificate, maxVersion uint16) *http.Client {
	cfg := pki.ClientTLSConfig(tls.Certificate{}, pki.CertPool(e.ca.Cert))
	cfg.Certificates = nil
	// Present the certificate whatever the server asks for: the server's
	// own check is under test, not the client's politeness.
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	if maxVersion != 0 {
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, maxVersion
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// claims are valid assertion claims of o.
func (e *env) claims(o *org) map[string]any {
	now := e.clock.Now()
	return map[string]any{"iss": o.ura, "sub": o.ura, "aud": e.srv.TokenEndpoint(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": rand.Text()}
}

// sign signs claims as a compact JWS; alg none yields an unsigned token.
func sign(t *testing.T, alg jwa.SignatureAlgorithm, key any, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	payload, _ := json.Marshal(claims)
	if alg == jwa.NoSignature() {
		h := map[string]any{"alg": "none"}
		for k, v := range hdr {
			h[k] = v
		}
		hj, _ := json.Marshal(h)
		return base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	}
	if k, ok := key.(jwk.Key); ok {
		if err := jwk.Export(k, &key); err != nil {
			t.Fatal(err)
		}
	}
	h := jws.NewHeaders()
	for k, v := range hdr {
		_ = h.Set(k, v)
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// assertion is o's valid assertion after edit.
func (e *env) assertion(t *testing.T, o *org, edit func(map[string]any)) string {
	c := e.claims(o)
	if edit != nil {
		edit(c)
	}
	kid, _ := o.key.KeyID()
	return sign(t, jwa.ES256(), o.key, map[string]any{"kid": kid, "typ": "JWT"}, c)
}

// form is o's valid client_credentials request.
func (e *env) form(t *testing.T, o *org) url.Values {
	return url.Values{
		"grant_type":            {oauth.GrantTypeClientCredentials},
		"client_assertion_type": {oauth.ClientAssertionTypeJWTBearer},
		"client_assertion":      {e.assertion(t, o, nil)},
		"scope":                 {readScope},
	}
}

// userForm is o's jwt-bearer request carrying identity as user_identity.
func (e *env) userForm(t *testing.T, o *org, identity any) url.Values {
	f := e.form(t, o)
	f.Set("grant_type", oauth.GrantTypeJWTBearer)
	f.Set("assertion", e.assertion(t, o, func(c map[string]any) { c[oauth.ClaimUserIdentity] = identity }))
	return f
}

// user is a valid user identity of uraA (x5c to the dev CA) after edit.
func (e *env) user(t *testing.T, edit func(*oauth.UserIdentityClaims)) string {
	t.Helper()
	c := oauth.UserIdentityClaims{Issuer: "urn:test:idp", Audience: e.srv.TokenEndpoint(), UZI: "900012345",
		RoleCode: "01.015", URA: uraA, Assurance: oauth.AssuranceHigh, IssuedAt: e.clock.Now()}
	if edit != nil {
		edit(&c)
	}
	tok, err := oauth.SignUserIdentity(e.idp.Key, []*x509.Certificate{e.idp.Cert}, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func postForm(target string, form url.Values) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func (e *env) tokenRequest(form url.Values) *http.Request {
	return postForm(e.srv.TokenEndpoint(), form)
}

// token obtains a real access token for o with scope.
func (e *env) token(t *testing.T, o *org, scope string) string {
	t.Helper()
	f := e.form(t, o)
	f.Set("scope", scope)
	resp, err := e.client(o.cert, 0).Do(e.tokenRequest(f))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token for %s: %d %v", o.ura, resp.StatusCode, err)
	}
	return tr.AccessToken
}

// resource is a GET of the protected resource with a bearer token.
func (e *env) resource(tok string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, e.audience+"/Patient", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

// forgeAccessToken signs access token claims with the node's own key.
func (e *env) forgeAccessToken(t *testing.T, o *org, edit func(map[string]any)) string {
	now := e.clock.Now()
	c := map[string]any{"iss": e.issuer, "sub": o.ura, "client_id": o.ura, "aud": e.audience, "scope": readScope,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": rand.Text(),
		"cnf": map[string]string{"x5t#S256": pki.CertThumbprintS256(o.cert.Leaf)}}
	if edit != nil {
		edit(c)
	}
	kid, _ := e.signingKey.KeyID()
	return sign(t, jwa.ES256(), e.signingKey, map[string]any{"kid": kid, "typ": "at+jwt"}, c)
}

// attack is one catalogue entry. request builds the request (it may obtain
// tokens first); cert names the TLS client certificate presented: an org's
// URA, a key of env.certs, or "" for none.
type attack struct {
	group   string
	name    string
	cert    string
	tls12   bool
	request func(t *testing.T, e *env) *http.Request
	status  int    // handshake: refused during the TLS handshake
	code    string // RFC 6749/6750 error code; "" when the answer has none
}

func (a attack) answer() string {
	switch {
	case a.status == handshake:
		return "TLS handshake refused"
	case a.code == "":
		return fmt.Sprintf("%d", a.status)
	}
	return fmt.Sprintf("%d `%s`", a.status, a.code)
}

func catalogue() []attack {
	valid := func(t *testing.T, e *env) *http.Request { return e.tokenRequest(e.form(t, e.orgs[uraA])) }
	clientAuth := func(edit func(t *testing.T, e *env, f url.Values)) func(*testing.T, *env) *http.Request {
		return func(t *testing.T, e *env) *http.Request {
			f := e.form(t, e.orgs[uraA])
			edit(t, e, f)
			return e.tokenRequest(f)
		}
	}
	withAssertion := func(edit func(c map[string]any)) func(*testing.T, *env) *http.Request {
		return clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", e.assertion(t, e.orgs[uraA], edit))
		})
	}
	userAttack := func(identity func(t *testing.T, e *env) any) func(*testing.T, *env) *http.Request {
		return func(t *testing.T, e *env) *http.Request {
			return e.tokenRequest(e.userForm(t, e.orgs[uraA], identity(t, e)))
		}
	}
	userEdit := func(edit func(*oauth.UserIdentityClaims)) func(*testing.T, *env) *http.Request {
		return userAttack(func(t *testing.T, e *env) any { return e.user(t, edit) })
	}
	rawBody := func(contentType, body, query string) func(*testing.T, *env) *http.Request {
		return func(t *testing.T, e *env) *http.Request {
			if body == "" {
				body = e.form(t, e.orgs[uraA]).Encode()
			}
			r, _ := http.NewRequest(http.MethodPost, e.srv.TokenEndpoint()+query, strings.NewReader(body))
			r.Header.Set("Content-Type", contentType)
			return r
		}
	}
	const form = "application/x-www-form-urlencoded"
	hs256WithPublicKey := func(t *testing.T, e *env, key jwk.Key, kid string, claims map[string]any) string {
		pub, _ := key.PublicKey()
		var raw any
		_ = jwk.Export(pub, &raw)
		der, _ := x509.MarshalPKIXPublicKey(raw)
		return sign(t, jwa.HS256(), der, map[string]any{"kid": kid}, claims)
	}

	return []attack{
		// TLS: the handshake itself refuses the peer.
		{"tls", "expired client certificate", "expired", false, valid, handshake, ""},
		{"tls", "not-yet-valid client certificate", "not-yet-valid", false, valid, handshake, ""},
		{"tls", "revoked client certificate (CRL)", "revoked", false, valid, handshake, ""},
		{"tls", "client certificate on the deny list", "denied", false, valid, handshake, ""},
		{"tls", "client certificate from an untrusted CA", "untrusted-ca", false, valid, handshake, ""},
		{"tls", "no client certificate", "", false, valid, handshake, ""},
		{"tls", "CA-route certificate without UZI identity", "no-uzi", false, valid, handshake, ""},
		{"tls", "unpinned certificate from a pinned partner's CA", "partner-unpinned", false, valid, handshake, ""},
		{"tls", "TLS 1.2 client", uraA, true, valid, handshake, ""},

		// Client authentication (RFC 7523 §2.2, bound to the mTLS identity).
		{"client", "wrong-URA certificate (claims A, carries B)", "wrong-ura", false, valid, 401, "invalid_client"},
		{"client", "assertion alg none", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", sign(t, jwa.NoSignature(), nil, map[string]any{"kid": "key-" + uraA}, e.claims(e.orgs[uraA])))
		}), 401, "invalid_client"},
		{"client", "assertion HS256 signed with the client's public key", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", hs256WithPublicKey(t, e, e.orgs[uraA].key, "key-"+uraA, e.claims(e.orgs[uraA])))
		}), 401, "invalid_client"},
		{"client", "assertion with an unknown kid", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", sign(t, jwa.ES256(), e.orgs[uraA].key, map[string]any{"kid": "nope"}, e.claims(e.orgs[uraA])))
		}), 401, "invalid_client"},
		{"client", "assertion with another client's kid and key", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", sign(t, jwa.ES256(), e.orgs[uraB].key, map[string]any{"kid": "key-" + uraB}, e.claims(e.orgs[uraA])))
		}), 401, "invalid_client"},
		{"client", "assertion signed with another client's key under own kid", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", sign(t, jwa.ES256(), e.orgs[uraB].key, map[string]any{"kid": "key-" + uraA}, e.claims(e.orgs[uraA])))
		}), 401, "invalid_client"},
		{"client", "assertion signed with the TLS key", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", sign(t, jwa.ES256(), e.orgs[uraA].cert.PrivateKey, map[string]any{"kid": "key-" + uraA}, e.claims(e.orgs[uraA])))
		}), 401, "invalid_client"},
		{"client", "assertion for another audience", uraA, false, withAssertion(func(c map[string]any) { c["aud"] = "https://other.example/oauth2/token" }), 401, "invalid_client"},
		{"client", "assertion with the resource server as audience", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion", e.assertion(t, e.orgs[uraA], func(c map[string]any) { c["aud"] = e.audience }))
		}), 401, "invalid_client"},
		{"client", "assertion of another organisation over this connection", uraA, false, func(t *testing.T, e *env) *http.Request {
			return e.tokenRequest(e.form(t, e.orgs[uraB]))
		}, 401, "invalid_client"},
		{"client", "assertion with iss and sub of another organisation", uraA, false, withAssertion(func(c map[string]any) { c["iss"], c["sub"] = uraB, uraB }), 401, "invalid_client"},
		{"client", "assertion with a different sub", uraA, false, withAssertion(func(c map[string]any) { c["sub"] = uraB }), 401, "invalid_client"},
		{"client", "expired assertion", uraA, false, func(t *testing.T, e *env) *http.Request {
			now := e.clock.Now()
			return withAssertion(func(c map[string]any) {
				c["iat"], c["exp"] = now.Add(-3*time.Minute).Unix(), now.Add(-2*time.Minute).Unix()
			})(t, e)
		}, 401, "invalid_client"},
		{"client", "assertion issued in the future (iat)", uraA, false, func(t *testing.T, e *env) *http.Request {
			now := e.clock.Now()
			return withAssertion(func(c map[string]any) {
				c["iat"], c["exp"] = now.Add(2*time.Minute).Unix(), now.Add(3*time.Minute).Unix()
			})(t, e)
		}, 401, "invalid_client"},
		{"client", "assertion not valid yet (nbf)", uraA, false, func(t *testing.T, e *env) *http.Request {
			return withAssertion(func(c map[string]any) { c["nbf"] = e.clock.Now().Add(2 * time.Minute).Unix() })(t, e)
		}, 401, "invalid_client"},
		{"client", "assertion lifetime over five minutes", uraA, false, func(t *testing.T, e *env) *http.Request {
			return withAssertion(func(c map[string]any) { c["exp"] = e.clock.Now().Add(time.Hour).Unix() })(t, e)
		}, 401, "invalid_client"},
		{"client", "assertion without jti", uraA, false, withAssertion(func(c map[string]any) { delete(c, "jti") }), 401, "invalid_client"},
		{"client", "replayed assertion jti", uraA, false, func(t *testing.T, e *env) *http.Request {
			f := e.form(t, e.orgs[uraA])
			resp, err := e.client(e.orgs[uraA].cert, 0).Do(e.tokenRequest(f))
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("first use: %v %v", resp, err)
			}
			resp.Body.Close()
			return e.tokenRequest(f)
		}, 401, "invalid_client"},
		{"client", "oversized assertion", uraA, false, withAssertion(func(c map[string]any) { c["pad"] = strings.Repeat("x", oauth.MaxJWTSize) }), 400, "invalid_request"},
		{"client", "assertion with a tampered payload", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			parts := strings.Split(f.Get("client_assertion"), ".")
			c := e.claims(e.orgs[uraA])
			c["exp"] = e.clock.Now().Add(4 * time.Minute).Unix()
			p, _ := json.Marshal(c)
			f.Set("client_assertion", parts[0]+"."+base64.RawURLEncoding.EncodeToString(p)+"."+parts[2])
		}), 401, "invalid_client"},
		{"client", "assertion with a tampered signature", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			s := f.Get("client_assertion")
			i := strings.LastIndexByte(s, '.') + 5
			c := byte('A')
			if s[i] == 'A' {
				c = 'B'
			}
			f.Set("client_assertion", s[:i]+string(c)+s[i+1:])
		}), 401, "invalid_client"},
		{"client", "assertion that is not a JWT", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Set("client_assertion", "not.a.jwt") }), 401, "invalid_client"},
		{"client", "no client assertion", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Del("client_assertion")
			f.Del("client_assertion_type")
		}), 401, "invalid_client"},
		{"client", "unsupported client_assertion_type", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
		}), 401, "invalid_client"},
		{"client", "client_id of another organisation", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Set("client_id", uraB) }), 401, "invalid_client"},
		{"client", "CA-route client's assertion over a pinned partner's connection", uraPartner, false, func(t *testing.T, e *env) *http.Request {
			return e.tokenRequest(e.form(t, e.orgs[uraA]))
		}, 401, "invalid_client"},
		{"client", "trusted certificate of an organisation without a registered key set", "unlisted", false, func(t *testing.T, e *env) *http.Request {
			return e.tokenRequest(e.form(t, &org{ura: uraUnknown, key: newSigningKey(t, "key-"+uraUnknown)}))
		}, 401, "invalid_client"},

		// Grant (RFC 7523 §2.1, Notified Pull authorization_base, scope).
		{"grant", "grant assertion for another organisation", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("grant_type", oauth.GrantTypeJWTBearer)
			f.Set("assertion", e.assertion(t, e.orgs[uraA], func(c map[string]any) { c["sub"] = uraB }))
		}), 400, "invalid_grant"},
		{"grant", "client assertion replayed as grant assertion", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			f.Set("grant_type", oauth.GrantTypeJWTBearer)
			f.Set("assertion", f.Get("client_assertion"))
		}), 400, "invalid_grant"},
		{"grant", "expired grant assertion", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) {
			now := e.clock.Now()
			f.Set("grant_type", oauth.GrantTypeJWTBearer)
			f.Set("assertion", e.assertion(t, e.orgs[uraA], func(c map[string]any) {
				c["iat"], c["exp"] = now.Add(-3*time.Minute).Unix(), now.Add(-2*time.Minute).Unix()
			}))
		}), 400, "invalid_grant"},
		{"grant", "jwt-bearer without assertion", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Set("grant_type", oauth.GrantTypeJWTBearer) }), 400, "invalid_request"},
		{"grant", "guessed authorization_base", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Set("authorization_base", "guess") }), 400, "invalid_grant"},
		{"grant", "scope beyond the grant", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Set("scope", "system/*.write") }), 400, "invalid_scope"},

		// User identity (plateau 4), carried in the grant assertion.
		{"user", "user identity from an untrusted issuer", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.Issuer = "https://evil.example" }), 400, "invalid_grant"},
		{"user", "user identity with x5c from an untrusted CA", uraA, false, userAttack(func(t *testing.T, e *env) any {
			key := newSigningKey(t, "x")
			var raw ecdsa.PrivateKey
			_ = jwk.Export(key, &raw)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "fake idp"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, e.otherCA.Cert, &raw.PublicKey, e.otherCA.Key)
			if err != nil {
				t.Fatal(err)
			}
			cert, _ := x509.ParseCertificate(der)
			tok, err := oauth.SignUserIdentity(key, []*x509.Certificate{cert}, oauth.UserIdentityClaims{Issuer: "urn:test:idp",
				Audience: e.srv.TokenEndpoint(), UZI: "900012345", RoleCode: "01.015", URA: uraA, Assurance: oauth.AssuranceHigh, IssuedAt: e.clock.Now()})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}), 400, "invalid_grant"},
		{"user", "user identity re-signed by the client", uraA, false, userAttack(func(t *testing.T, e *env) any {
			tok, err := oauth.SignUserIdentity(e.orgs[uraA].key, []*x509.Certificate{e.idp.Cert}, oauth.UserIdentityClaims{Issuer: "urn:test:idp",
				Audience: e.srv.TokenEndpoint(), UZI: "900012345", RoleCode: "01.015", URA: uraA, Assurance: oauth.AssuranceHigh, IssuedAt: e.clock.Now()})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}), 400, "invalid_grant"},
		{"user", "user identity with low assurance", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.Assurance = oauth.AssuranceLow }), 400, "invalid_grant"},
		{"user", "user identity with substantial assurance", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.Assurance = oauth.AssuranceSubstantial }), 400, "invalid_grant"},
		{"user", "user identity without assurance", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.Assurance = 0 }), 400, "invalid_grant"},
		{"user", "user identity without role", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.RoleCode = "" }), 400, "invalid_grant"},
		{"user", "user identity with a malformed role code", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.RoleCode = "admin" }), 400, "invalid_grant"},
		{"user", "user identity without UZI number", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.UZI = "" }), 400, "invalid_grant"},
		{"user", "user identity of another organisation's employee", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.URA = uraB }), 400, "invalid_grant"},
		{"user", "expired user identity", uraA, false, func(t *testing.T, e *env) *http.Request {
			return userEdit(func(c *oauth.UserIdentityClaims) { c.IssuedAt = e.clock.Now().Add(-time.Hour) })(t, e)
		}, 400, "invalid_grant"},
		{"user", "user identity not valid yet", uraA, false, func(t *testing.T, e *env) *http.Request {
			return userEdit(func(c *oauth.UserIdentityClaims) { c.IssuedAt = e.clock.Now().Add(time.Hour) })(t, e)
		}, 400, "invalid_grant"},
		{"user", "user identity for another audience", uraA, false, userEdit(func(c *oauth.UserIdentityClaims) { c.Audience = "https://other.example/oauth2/token" }), 400, "invalid_grant"},
		{"user", "user identity alg none", uraA, false, userAttack(func(t *testing.T, e *env) any {
			return sign(t, jwa.NoSignature(), nil, nil, map[string]any{"iss": "urn:test:idp", "aud": e.srv.TokenEndpoint(),
				"exp": e.clock.Now().Add(time.Minute).Unix(), "dezi_nummer": "1", "rol_code": "01.015", "abonnee_nummer": uraA, "loa_authn": "high"})
		}), 400, "invalid_grant"},
		{"user", "user identity HS256 signed with the issuer's public key", uraA, false, userAttack(func(t *testing.T, e *env) any {
			kid, _ := e.idp.Key.KeyID()
			return hs256WithPublicKey(t, e, e.idp.Key, kid, map[string]any{"iss": "urn:test:idp", "aud": e.srv.TokenEndpoint(),
				"exp": e.clock.Now().Add(time.Minute).Unix(), "dezi_nummer": "1", "rol_code": "01.015", "abonnee_nummer": uraA, "loa_authn": "high"})
		}), 400, "invalid_grant"},
		{"user", "user_identity that is not a string", uraA, false, userAttack(func(t *testing.T, e *env) any { return map[string]any{"dezi_nummer": "1"} }), 400, "invalid_grant"},

		// Request framing (RFC 6749 §3.2).
		{"form", "GET on the token endpoint", uraA, false, func(t *testing.T, e *env) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, e.srv.TokenEndpoint(), nil)
			return r
		}, 405, ""},
		{"form", "JSON body", uraA, false, rawBody("application/json", `{"grant_type":"client_credentials"}`, ""), 400, "invalid_request"},
		{"form", "parameters in the URL query", uraA, false, rawBody(form, "", "?grant_type=client_credentials"), 400, "invalid_request"},
		{"form", "repeated parameter", uraA, false, rawBody(form, "grant_type=client_credentials&grant_type=client_credentials", ""), 400, "invalid_request"},
		{"form", "body over the size limit", uraA, false, rawBody(form, "pad="+strings.Repeat("x", 3*oauth.MaxJWTSize), ""), 400, "invalid_request"},
		{"form", "invalid percent-encoding", uraA, false, rawBody(form, "grant_type=%zz", ""), 400, "invalid_request"},
		{"form", "missing grant_type", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Del("grant_type") }), 400, "invalid_request"},
		{"form", "unsupported grant_type", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Set("grant_type", "password") }), 400, "unsupported_grant_type"},
		{"form", "malformed scope", uraA, false, clientAuth(func(t *testing.T, e *env, f url.Values) { f.Set("scope", "a  b") }), 400, "invalid_scope"},

		// Access tokens at the resource server (RFC 6750, RFC 9068, RFC 8705).
		{"token", "access token used with another client certificate", uraB, false, func(t *testing.T, e *env) *http.Request {
			return e.resource(e.token(t, e.orgs[uraA], readScope))
		}, 401, "invalid_token"},
		{"token", "access token after expiry", uraA, false, func(t *testing.T, e *env) *http.Request {
			tok := e.token(t, e.orgs[uraA], readScope)
			e.clock.set(e.clock.Now().Add(10 * time.Minute))
			return e.resource(tok)
		}, 401, "invalid_token"},
		{"token", "access token with a tampered payload", uraA, false, func(t *testing.T, e *env) *http.Request {
			parts := strings.Split(e.token(t, e.orgs[uraA], "task"), ".")
			p, _ := base64.RawURLEncoding.DecodeString(parts[1])
			p = []byte(strings.Replace(string(p), `"task"`, `"`+strings.ReplaceAll(readScope, "/", `\/`)+`"`, 1))
			return e.resource(parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2])
		}, 401, "invalid_token"},
		{"token", "access token for another scope", uraA, false, func(t *testing.T, e *env) *http.Request {
			return e.resource(e.token(t, e.orgs[uraA], "task"))
		}, 403, "insufficient_scope"},
		{"token", "access token for another resource server", uraA, false, func(t *testing.T, e *env) *http.Request {
			return e.resource(e.forgeAccessToken(t, e.orgs[uraA], func(c map[string]any) { c["aud"] = "https://other.example/fhir" }))
		}, 401, "invalid_token"},
		{"token", "access token without certificate binding", uraA, false, func(t *testing.T, e *env) *http.Request {
			return e.resource(e.forgeAccessToken(t, e.orgs[uraA], func(c map[string]any) { delete(c, "cnf") }))
		}, 401, "invalid_token"},
		{"token", "access token alg none", uraA, false, func(t *testing.T, e *env) *http.Request {
			return e.resource(sign(t, jwa.NoSignature(), nil, map[string]any{"typ": "at+jwt", "kid": "node-key-1"}, map[string]any{"iss": e.issuer, "aud": e.audience}))
		}, 401, "invalid_token"},
		{"token", "access token signed by another server", uraA, false, func(t *testing.T, e *env) *http.Request {
			other := newSigningKey(t, "node-key-1")
			kid, _ := other.KeyID()
			c := map[string]any{"iss": e.issuer, "aud": e.audience, "scope": readScope, "exp": e.clock.Now().Add(time.Minute).Unix(),
				"cnf": map[string]string{"x5t#S256": pki.CertThumbprintS256(e.orgs[uraA].cert.Leaf)}}
			return e.resource(sign(t, jwa.ES256(), other, map[string]any{"kid": kid, "typ": "at+jwt"}, c))
		}, 401, "invalid_token"},
		{"token", "client assertion presented as access token", uraA, false, func(t *testing.T, e *env) *http.Request {
			return e.resource(e.assertion(t, e.orgs[uraA], nil))
		}, 401, "invalid_token"},
		{"token", "no access token", uraA, false, func(t *testing.T, e *env) *http.Request { return e.resource("") }, 401, "invalid_request"},
		{"token", "access token in the URL query", uraA, false, func(t *testing.T, e *env) *http.Request {
			r := e.resource("")
			r.URL.RawQuery = "access_token=" + e.token(t, e.orgs[uraA], readScope)
			return r
		}, 401, "invalid_request"},
		{"token", "two Authorization headers", uraA, false, func(t *testing.T, e *env) *http.Request {
			tok := e.token(t, e.orgs[uraA], readScope)
			r := e.resource(tok)
			r.Header.Add("Authorization", "Bearer "+tok)
			return r
		}, 401, "invalid_token"},
		{"token", "introspection of another client's token", uraB, false, func(t *testing.T, e *env) *http.Request {
			return postForm(e.issuer+oauth.IntrospectionPath, url.Values{"token": {e.token(t, e.orgs[uraA], readScope)}})
		}, 200, ""},
	}
}

// leakMarkers are fragments of Go errors, libraries and paths that must
// never reach a peer.
var leakMarkers = []string{"x509:", "tls: ", "pki: ", "oauth: ", "sql", "jws", "jwk", "/tmp", "/work", ".go", "goroutine", "panic", "crypto/", "ecdsa"}

// TestAttackCatalogue sends every attack to a real mTLS listener and checks
// the answer, that nothing was issued or stored, and that nothing leaked.
func TestAttackCatalogue(t *testing.T) {
	e := newEnv(t)
	// Controls: the baseline requests succeed, so every refusal below is
	// caused by its attack and not by a broken setup.
	for _, ura := range []string{uraA, uraPartner} {
		o := e.orgs[ura]
		resp, err := e.client(o.cert, 0).Do(e.resource(e.token(t, o, readScope)))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("control for %s: %v %v", ura, resp, err)
		}
		resp.Body.Close()
	}
	userOK, err := e.client(e.orgs[uraA].cert, 0).Do(e.tokenRequest(e.userForm(t, e.orgs[uraA], e.user(t, nil))))
	if err != nil || userOK.StatusCode != 200 {
		t.Fatalf("control for a user identity: %v %v", userOK, err)
	}
	userOK.Body.Close()

	cases := catalogue()
	if len(cases) < 50 {
		t.Fatalf("catalogue has %d cases, want 50 or more", len(cases))
	}
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("duplicate case %q", tc.name)
		}
		names[tc.name] = true
	}
	start := e.clock.Now()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer e.clock.set(start)
			var cert tls.Certificate
			if o, ok := e.orgs[tc.cert]; ok {
				cert = o.cert
			} else if c, ok := e.certs[tc.cert]; ok {
				cert = c
			} else if tc.cert != "" {
				t.Fatalf("no certificate %q", tc.cert)
			}
			req := tc.request(t, e)
			approvals, stored := e.approvals(), e.replay.count()
			var maxVersion uint16
			if tc.tls12 {
				maxVersion = tls.VersionTLS12
			}
			resp, err := e.client(cert, maxVersion).Do(req)
			if tc.status == handshake {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("handshake completed: %d", resp.StatusCode)
				}
				var netErr interface{ Timeout() bool }
				if errors.As(err, &netErr) && netErr.Timeout() {
					t.Fatalf("timed out instead of a refused handshake: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("request failed: %v", err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var body map[string]any
				_ = json.Unmarshal(raw, &body)
				if resp.StatusCode != tc.status || (tc.code != "" && body["error"] != tc.code) {
					t.Fatalf("got %d %s, want %d %s", resp.StatusCode, raw, tc.status, tc.code)
				}
				if _, ok := body["access_token"]; ok {
					t.Fatalf("a token was issued: %s", raw)
				}
				if active, ok := body["active"]; ok && active != false {
					t.Fatalf("introspection disclosed the token: %s", raw)
				}
				lower := strings.ToLower(string(raw) + " " + resp.Header.Get("WWW-Authenticate"))
				for _, m := range leakMarkers {
					if strings.Contains(lower, m) {
						t.Fatalf("response leaks %q: %s", m, raw)
					}
				}
			}
			if n := e.approvals(); n != approvals {
				t.Fatalf("the grant resolver approved %d grant(s) during the attack", n-approvals)
			}
			if tc.status == handshake || tc.code == "invalid_client" {
				if n := e.replay.count(); n != stored {
					t.Fatalf("%d assertion ID(s) stored for a request refused before authentication", n-stored)
				}
			}
		})
	}
}

// Markers around the generated table in docs/security.md.
const (
	docBegin = "<!-- attack-catalogue:begin (generated by go test ./security -update) -->"
	docEnd   = "<!-- attack-catalogue:end -->"
)

func renderCatalogue() string {
	var b strings.Builder
	b.WriteString("| # | area | attack | the node answers |\n| --- | --- | --- | --- |\n")
	for i, a := range catalogue() {
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", i+1, a.group, a.name, a.answer())
	}
	return b.String()
}

// TestSecurityDocListsCatalogue keeps docs/security.md's table equal to the
// catalogue; run `go test ./security -run Doc -update` after changing it.
func TestSecurityDocListsCatalogue(t *testing.T) {
	path := filepath.Join("..", "docs", "security.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, docBegin), strings.Index(s, docEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the catalogue markers", path)
	}
	want := renderCatalogue()
	got := s[i+len(docBegin)+1 : j]
	if got == want {
		return
	}
	if *updateDoc {
		s = s[:i+len(docBegin)+1] + want + s[j:]
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, a := range catalogue() {
		if !strings.Contains(got, "| "+a.name+" |") {
			t.Errorf("docs/security.md does not list %q", a.name)
		}
	}
	t.Fatal("docs/security.md's attack table is out of date; run go test ./security -run Doc -update")
}
