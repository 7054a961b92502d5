package oauth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// TestTokenEndpointAttacks sends one hostile or broken request per case and
// checks that it is refused with the right RFC 6749 code and no token.
func TestTokenEndpointAttacks(t *testing.T) {
	e := newTestEnv(t, true)
	a, b := e.orgs[uraA], e.orgs[uraB]
	kidA, _ := a.key.KeyID()

	tests := []struct {
		name   string
		form   func(t *testing.T) url.Values // a valid client_credentials request of A, edited
		status int
		code   string
	}{
		{"alg none", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", signJWT(t, jwa.NoSignature(), nil, kidA, e.assertionClaims(a)))
			return f
		}, 401, "invalid_client"},
		{"HS256 signed with the public key", func(t *testing.T) url.Values {
			pub, err := a.key.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			var raw any
			if err := jwk.Export(pub, &raw); err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKIXPublicKey(raw)
			if err != nil {
				t.Fatal(err)
			}
			f := e.form(t, a)
			f.Set("client_assertion", signJWT(t, jwa.HS256(), der, kidA, e.assertionClaims(a)))
			return f
		}, 401, "invalid_client"},
		{"unknown kid", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", signJWT(t, jwa.ES256(), a.key, "no-such-kid", e.assertionClaims(a)))
			return f
		}, 401, "invalid_client"},
		{"wrong aud", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) { c["aud"] = "https://other.example/oauth2/token" }))
			return f
		}, 401, "invalid_client"},
		{"wrong iss", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) { c["iss"], c["sub"] = uraB, uraB }))
			return f
		}, 401, "invalid_client"},
		{"iss differs from sub", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) { c["sub"] = uraB }))
			return f
		}, 401, "invalid_client"},
		{"client_id is not the mTLS URA", func(t *testing.T) url.Values {
			f := e.form(t, b) // B's own valid assertion, sent over A's TLS connection
			f.Set("client_id", uraB)
			return f
		}, 401, "invalid_client"},
		{"assertion of another client over this mTLS connection", func(t *testing.T) url.Values {
			return e.form(t, b)
		}, 401, "invalid_client"},
		{"expired", func(t *testing.T) url.Values {
			f := e.form(t, a)
			now := e.clock.Now()
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) {
				c["iat"], c["exp"] = now.Add(-3*time.Minute).Unix(), now.Add(-2*time.Minute).Unix()
			}))
			return f
		}, 401, "invalid_client"},
		{"iat in the future", func(t *testing.T) url.Values {
			f := e.form(t, a)
			now := e.clock.Now()
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) {
				c["iat"], c["exp"] = now.Add(2*time.Minute).Unix(), now.Add(3*time.Minute).Unix()
			}))
			return f
		}, 401, "invalid_client"},
		{"lifetime too long", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) { c["exp"] = e.clock.Now().Add(time.Hour).Unix() }))
			return f
		}, 401, "invalid_client"},
		{"missing jti", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) { delete(c, "jti") }))
			return f
		}, 401, "invalid_client"},
		{"replayed jti", func(t *testing.T) url.Values {
			f := e.form(t, a)
			if status, body := e.post(t, a, f); status != http.StatusOK {
				t.Fatalf("first use: %d %v", status, body)
			}
			return f
		}, 401, "invalid_client"},
		{"oversized assertion", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", e.assertion(t, a, func(c map[string]any) { c["pad"] = strings.Repeat("x", MaxJWTSize) }))
			return f
		}, 400, "invalid_request"},
		{"bad signature", func(t *testing.T) url.Values {
			f := e.form(t, a)
			s := f.Get("client_assertion")
			i := strings.LastIndexByte(s, '.') + 5
			flipped := byte('A')
			if s[i] == 'A' {
				flipped = 'B'
			}
			f.Set("client_assertion", s[:i]+string(flipped)+s[i+1:])
			return f
		}, 401, "invalid_client"},
		{"signed with another client's key", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("client_assertion", signJWT(t, jwa.ES256(), b.key, kidA, e.assertionClaims(a)))
			return f
		}, 401, "invalid_client"},
		{"no client authentication", func(t *testing.T) url.Values {
			return url.Values{"grant_type": {GrantTypeClientCredentials}}
		}, 401, "invalid_client"},
		{"unsupported grant type", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("grant_type", "password")
			return f
		}, 400, "unsupported_grant_type"},
		{"missing assertion for jwt-bearer", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("grant_type", GrantTypeJWTBearer)
			return f
		}, 400, "invalid_request"},
		{"grant assertion for another organisation", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("grant_type", GrantTypeJWTBearer)
			f.Set("assertion", e.assertion(t, a, func(c map[string]any) { c["sub"] = uraB }))
			return f
		}, 400, "invalid_grant"},
		{"replayed grant assertion", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("grant_type", GrantTypeJWTBearer)
			f.Set("assertion", f.Get("client_assertion")) // its jti is used by client authentication first
			return f
		}, 400, "invalid_grant"},
		{"resolver refuses authorization_base", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("authorization_base", "guessed")
			return f
		}, 400, "invalid_grant"},
		{"resolver refuses scope", func(t *testing.T) url.Values {
			f := e.form(t, a)
			f.Set("scope", "forbidden")
			return f
		}, 400, "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.post(t, a, tt.form(t))
			if status != tt.status || body["error"] != tt.code {
				t.Errorf("got %d %v, want %d %s", status, body, tt.status, tt.code)
			}
			if _, ok := body["access_token"]; ok {
				t.Errorf("a token was issued: %v", body)
			}
			if d, _ := body["error_description"].(string); strings.Contains(d, "jws") || strings.Contains(d, "jwk") {
				t.Errorf("description leaks library internals: %q", d)
			}
		})
	}
}

// TestTokenEndpointMalformed covers request framing (RFC 6749 §3.2).
func TestTokenEndpointMalformed(t *testing.T) {
	e := newTestEnv(t, false)
	a := e.orgs[uraA]
	tests := []struct {
		name        string
		body        string
		contentType string
		org         *testOrg
		status      int
		code        string
	}{
		{"json body", `{}`, "application/json", a, 400, "invalid_request"},
		{"repeated parameter", e.form(t, a).Encode() + "&grant_type=client_credentials", "application/x-www-form-urlencoded", a, 400, "invalid_request"},
		{"body too large", "pad=" + strings.Repeat("x", maxFormSize), "application/x-www-form-urlencoded", a, 400, "invalid_request"},
		{"no TLS client certificate", e.form(t, a).Encode(), "application/x-www-form-urlencoded", nil, 401, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tlsRequest(http.MethodPost, TokenPath, strings.NewReader(tt.body), tt.org)
			r.Header.Set("Content-Type", tt.contentType)
			w := httptest.NewRecorder()
			e.srv.handleToken(w, r)
			var body map[string]string
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != tt.status || body["error"] != tt.code {
				t.Errorf("got %d %v, want %d %s", w.Code, body, tt.status, tt.code)
			}
		})
	}
}

func TestClientCredentialsThenResource(t *testing.T) {
	e := newTestEnv(t, true)
	a := e.orgs[uraA]
	ctx := context.Background()

	tok, err := e.client(a).Token(ctx, e.srv.TokenEndpoint(), TokenRequest{
		GrantType: GrantTypeClientCredentials, Scope: []string{"Task.create"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 300 || tok.Scope != "Task.create" {
		t.Errorf("token response = %+v", tok)
	}
	if e.lastReq.ClientID != uraA || e.lastReq.GrantType != GrantTypeClientCredentials || e.lastReq.Assertion != nil {
		t.Errorf("resolver got %+v", e.lastReq)
	}

	// The token opens the resource for A's connection only (RFC 8705 binding).
	for _, tc := range []struct {
		org  *testOrg
		want int
	}{{a, 200}, {e.orgs[uraB], 401}} {
		req, _ := http.NewRequest(http.MethodGet, e.audience+"/Patient", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := e.httpClient(tc.org).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("as %s: %d %s, want %d", tc.org.ura, resp.StatusCode, body, tc.want)
		}
		if tc.want == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
		}
	}
}

func TestJWTBearerGrant(t *testing.T) {
	e := newTestEnv(t, true)
	a := e.orgs[uraA]
	tok, err := e.client(a).Token(context.Background(), e.srv.TokenEndpoint(), TokenRequest{
		GrantType:         GrantTypeJWTBearer,
		Scope:             []string{"read"},
		AuthorizationBase: goodBase,
		AssertionClaims:   map[string]any{"role": "01.015"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := e.lastReq
	if got.GrantType != GrantTypeJWTBearer || got.AuthorizationBase != goodBase || got.Assertion["role"] != "01.015" || got.Assertion["sub"] != uraA {
		t.Errorf("resolver got %+v", got)
	}

	r := tlsRequest(http.MethodGet, "/fhir/Patient", nil, a)
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	at, err := e.srv.Verify(r, e.audience)
	if err != nil {
		t.Fatal(err)
	}
	want := &AccessToken{Subject: uraA, ClientID: uraA, Scope: []string{"read"}, Audience: []string{e.audience}}
	if diff := cmp.Diff(want, at, cmp.FilterPath(func(p cmp.Path) bool {
		switch p.Last().String() {
		case ".Expiry", ".ID", ".Claims", ".notBefore", ".thumbprint":
			return true
		}
		return false
	}, cmp.Ignore())); diff != "" {
		t.Errorf("access token (-want +got):\n%s", diff)
	}
	if at.StringClaim("patient") != "999911120" || !at.HasScope("read") || at.HasScope("write") {
		t.Errorf("claims = %v", at.Claims)
	}
	if !at.Expiry.Equal(e.clock.Now().Add(5 * time.Minute)) {
		t.Errorf("expiry = %v", at.Expiry)
	}
}

func TestTokenNeverOutlivesGrant(t *testing.T) {
	e := newTestEnv(t, false, func(c *ServerConfig) {
		c.Grants = GrantResolverFunc(func(context.Context, GrantRequest) (Grant, error) {
			return Grant{Audience: "https://x/fhir", NotAfter: time.Now().Truncate(time.Second).Add(90 * time.Second)}, nil
		})
	})
	e.clock.now = time.Now().Truncate(time.Second)
	raw := e.issueDirect(t, e.orgs[uraA], e.form(t, e.orgs[uraA]))
	tok, err := parseJWT(raw)
	if err != nil {
		t.Fatal(err)
	}
	if d := tok.expiry.Sub(e.clock.Now()); d != 90*time.Second {
		t.Errorf("token lives %v, want 90s", d)
	}
	if tok.typ != "at+jwt" {
		t.Errorf("typ = %q", tok.typ)
	}
}

func TestReservedClaimsAreRefused(t *testing.T) {
	e := newTestEnv(t, false, func(c *ServerConfig) {
		c.Grants = GrantResolverFunc(func(context.Context, GrantRequest) (Grant, error) {
			return Grant{Audience: "https://x/fhir", Claims: map[string]any{"cnf": "x"}}, nil
		})
	})
	r := tlsRequest(http.MethodPost, TokenPath, strings.NewReader(e.form(t, e.orgs[uraA]).Encode()), e.orgs[uraA])
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	e.srv.handleToken(w, r)
	if w.Code != 500 || !strings.Contains(w.Body.String(), "server_error") || strings.Contains(w.Body.String(), "cnf") {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
}

func TestIntrospection(t *testing.T) {
	e := newTestEnv(t, true)
	a, b := e.orgs[uraA], e.orgs[uraB]
	tok, err := e.client(a).Token(context.Background(), e.srv.TokenEndpoint(), TokenRequest{GrantType: GrantTypeClientCredentials})
	if err != nil {
		t.Fatal(err)
	}
	introspect := func(org *testOrg, token string) map[string]any {
		resp, err := e.httpClient(org).PostForm(e.issuer+IntrospectionPath, url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
			t.Fatalf("introspection: %d %v", resp.StatusCode, err)
		}
		return body
	}
	if got := introspect(a, tok.AccessToken); got["active"] != true || got["client_id"] != uraA {
		t.Errorf("own token: %v", got)
	}
	if got := introspect(b, tok.AccessToken); !cmp.Equal(got, map[string]any{"active": false}) {
		t.Errorf("other client's token: %v", got)
	}
	if got := introspect(a, "garbage"); !cmp.Equal(got, map[string]any{"active": false}) {
		t.Errorf("garbage: %v", got)
	}
	e.clock.Advance(time.Hour)
	if got := introspect(a, tok.AccessToken); got["active"] != false {
		t.Errorf("expired token: %v", got)
	}

	// Without a client certificate the endpoint refuses (direct call: the listener would not even handshake).
	r := tlsRequest(http.MethodPost, IntrospectionPath, strings.NewReader("token=x"), nil)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	e.srv.handleIntrospect(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("unauthenticated introspection: %d", w.Code)
	}
}

func TestMetadataAndJWKS(t *testing.T) {
	e := newTestEnv(t, true)
	md, err := e.client(e.orgs[uraA]).Metadata(context.Background(), e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	want := &Metadata{
		Issuer:                            e.issuer,
		TokenEndpoint:                     e.issuer + "/oauth2/token",
		IntrospectionEndpoint:             e.issuer + "/oauth2/introspect",
		JWKSURI:                           e.issuer + "/.well-known/jwks.json",
		ResponseTypesSupported:            []string{},
		GrantTypesSupported:               []string{"client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"},
		TokenEndpointAuthMethodsSupported: []string{"private_key_jwt"},
		TokenEndpointAuthSigningAlgValuesSupported: []string{"PS256", "ES256", "ES384", "ES512", "RS256"},
		IntrospectionEndpointAuthMethodsSupported:  []string{"tls_client_auth"},
		TLSClientCertificateBoundAccessTokens:      true,
	}
	if diff := cmp.Diff(want, md); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if _, err := e.client(e.orgs[uraA]).Metadata(context.Background(), "https://127.0.0.2:1"); err == nil {
		t.Error("metadata of an unreachable issuer succeeded")
	}
}

// TestKeyRotation: a token signed by the previous key still verifies, and the
// JWKS publishes both keys, public parts only.
func TestKeyRotation(t *testing.T) {
	old := newTestEnv(t, false)
	a := old.orgs[uraA]
	token := old.issueDirect(t, a, old.form(t, a))

	oldKey := old.srv.cfg.SigningKey
	rotated, err := NewServer(ServerConfig{
		Issuer: old.issuer, SigningKey: newSigningKey(t, "node-2"), PreviousKeys: []jwk.Key{oldKey},
		Clients: clientKeys{}, Grants: old.srv.cfg.Grants, PeerURA: testPeerURA, Now: old.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := tlsRequest(http.MethodGet, "/fhir/Patient", nil, a)
	r.Header.Set("Authorization", "Bearer "+token)
	if _, err := rotated.Verify(r, old.audience); err != nil {
		t.Errorf("token of the previous key: %v", err)
	}

	w := httptest.NewRecorder()
	rotated.handleJWKS(w, tlsRequest(http.MethodGet, JWKSPath, nil, nil))
	set, err := jwk.Parse(w.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		kids = append(kids, kid)
		if private, _ := jwk.IsPrivateKey(k); private {
			t.Errorf("JWKS publishes private key %s", kid)
		}
	}
	if diff := cmp.Diff([]string{"node-2", "node-1"}, kids); diff != "" {
		t.Errorf("JWKS kids (-want +got):\n%s", diff)
	}

	// A server that dropped the old key refuses the token.
	dropped, err := NewServer(ServerConfig{
		Issuer: old.issuer, SigningKey: newSigningKey(t, "node-3"),
		Clients: clientKeys{}, Grants: old.srv.cfg.Grants, PeerURA: testPeerURA, Now: old.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dropped.Verify(r, old.audience); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token of a removed key: %v", err)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	good := func() ServerConfig {
		return ServerConfig{
			Issuer: "https://node.example", SigningKey: newSigningKey(t, "k"), Clients: clientKeys{},
			Grants: GrantResolverFunc(nil), PeerURA: testPeerURA,
		}
	}
	if _, err := NewServer(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
	pub, _ := newSigningKey(t, "k").PublicKey()
	noAlg := newSigningKey(t, "k")
	_ = noAlg.Remove(jwk.AlgorithmKey)
	for name, edit := range map[string]func(*ServerConfig){
		"http issuer":         func(c *ServerConfig) { c.Issuer = "http://node.example" },
		"issuer with path":    func(c *ServerConfig) { c.Issuer = "https://node.example/oauth" },
		"public signing key":  func(c *ServerConfig) { c.SigningKey = pub },
		"signing key w/o alg": func(c *ServerConfig) { c.SigningKey = noAlg },
		"no PeerURA":          func(c *ServerConfig) { c.PeerURA = nil },
		"negative TTL":        func(c *ServerConfig) { c.TokenTTL = -time.Second },
	} {
		c := good()
		edit(&c)
		if _, err := NewServer(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestClientSurfacesErrorResponse(t *testing.T) {
	e := newTestEnv(t, true)
	_, err := e.client(e.orgs[uraA]).Token(context.Background(), e.srv.TokenEndpoint(), TokenRequest{
		GrantType: GrantTypeJWTBearer, AuthorizationBase: "wrong",
	})
	var er *ErrorResponse
	if !errors.As(err, &er) || er.Status != 400 || er.Code != "invalid_grant" || !errors.Is(err, ErrInvalidGrant) {
		t.Errorf("err = %#v", err)
	}
}
