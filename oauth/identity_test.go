package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

const testIdentityIssuer = "https://idp.example"

// identityFixture is an identity issuer with a JWKS key and, for x5c, a
// certificate for the same key under the test CA.
type identityFixture struct {
	key  jwk.Key
	cert *x509.Certificate
	pki  *testPKI
}

func newIdentityFixture(t testing.TB) *identityFixture {
	t.Helper()
	f := &identityFixture{key: newSigningKey(t, "idp-1"), pki: newTestPKI(t)}
	var raw ecdsa.PrivateKey
	if err := jwk.Export(f.key, &raw); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "identity issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.pki.cert, &raw.PublicKey, f.pki.key)
	if err != nil {
		t.Fatal(err)
	}
	if f.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *identityFixture) issuer(t testing.TB) IdentityIssuer {
	t.Helper()
	pub, err := f.key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	return IdentityIssuer{Issuer: testIdentityIssuer, Keys: set, Roots: f.pki.pool}
}

// claims are valid user identity claims for client ura at e.
func (f *identityFixture) claims(e *testEnv, ura string) UserIdentityClaims {
	return UserIdentityClaims{
		Issuer: testIdentityIssuer, Audience: e.srv.TokenEndpoint(), UZI: "900012345", RoleCode: "01.015",
		URA: ura, Assurance: AssuranceHigh, Initials: "B.B.", Surname: "Jansen", IssuedAt: e.clock.Now(), TTL: 10 * time.Minute,
	}
}

func TestUserIdentity(t *testing.T) {
	f := newIdentityFixture(t)
	sign := func(t *testing.T, c UserIdentityClaims, x5c bool) string {
		t.Helper()
		var chain []*x509.Certificate
		if x5c {
			chain = []*x509.Certificate{f.cert}
		}
		tok, err := SignUserIdentity(f.key, chain, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name     string
		identity func(t *testing.T, e *testEnv) any // the user_identity claim value
		wantDesc string                             // empty: accepted
	}{
		{"kid from JWKS", func(t *testing.T, e *testEnv) any { return sign(t, f.claims(e, uraA), false) }, ""},
		{"x5c chain to the configured root", func(t *testing.T, e *testEnv) any { return sign(t, f.claims(e, uraA), true) }, ""},
		{"eIDAS URI level", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.Assurance = 0
			tok := sign(t, c, false)
			// Re-sign with the URI form of the level.
			return resign(t, f.key, tok, func(m map[string]any) { m[ClaimAssurance] = "http://eidas.europa.eu/LoA/high" })
		}, ""},
		{"untrusted issuer", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.Issuer = "https://evil.example"
			return sign(t, c, false)
		}, "not from a trusted identity issuer"},
		{"unknown key of a trusted issuer", func(t *testing.T, e *testEnv) any {
			tok, err := SignUserIdentity(newSigningKey(t, "idp-1"), nil, f.claims(e, uraA))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, "signature does not verify"},
		{"x5c from another CA", func(t *testing.T, e *testEnv) any {
			other := newIdentityFixture(t)
			tok, err := SignUserIdentity(other.key, []*x509.Certificate{other.cert}, f.claims(e, uraA))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, "not a key of its issuer"},
		{"substantial assurance", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.Assurance = AssuranceSubstantial
			return sign(t, c, false)
		}, "level of assurance is below high"},
		{"no assurance", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.Assurance = 0
			return sign(t, c, false)
		}, "no valid loa_authn"},
		{"missing role", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.RoleCode = ""
			return sign(t, c, false)
		}, "no rol_code"},
		{"malformed role", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.RoleCode = "huisarts"
			return sign(t, c, false)
		}, "not an UZI role code"},
		{"missing UZI number", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.UZI = ""
			return sign(t, c, false)
		}, "dezi_nummer"},
		{"bound to another organisation", func(t *testing.T, e *testEnv) any { return sign(t, f.claims(e, uraB), false) }, "another organisation"},
		{"expired", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.IssuedAt = e.clock.Now().Add(-time.Hour)
			return sign(t, c, false)
		}, "has expired"},
		{"not yet valid", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.IssuedAt = e.clock.Now().Add(time.Hour)
			return sign(t, c, false)
		}, "not valid yet"},
		{"wrong audience", func(t *testing.T, e *testEnv) any {
			c := f.claims(e, uraA)
			c.Audience = "https://other.example/oauth2/token"
			return sign(t, c, false)
		}, "aud must contain"},
		{"ES384 is not an identity algorithm", func(t *testing.T, e *testEnv) any {
			raw, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			k, _ := jwk.Import(raw)
			_ = k.Set(jwk.KeyIDKey, "idp-1")
			_ = k.Set(jwk.AlgorithmKey, jwa.ES384())
			return signJWT(t, jwa.ES384(), k, "idp-1", map[string]any{"iss": testIdentityIssuer})
		}, "PS256, ES256 or RS256"},
		{"not a string", func(t *testing.T, e *testEnv) any { return map[string]any{"dezi_nummer": "1"} }, "compact JWT string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, true, func(c *ServerConfig) { c.IdentityIssuers = []IdentityIssuer{f.issuer(t)} })
			a := e.orgs[uraA]
			id := tc.identity(t, e)
			form := e.form(t, a)
			form.Set("grant_type", GrantTypeJWTBearer)
			form.Set("assertion", e.assertion(t, a, func(c map[string]any) { c[ClaimUserIdentity] = id }))
			status, body := e.post(t, a, form)
			if tc.wantDesc == "" {
				if status != http.StatusOK {
					t.Fatalf("%d %v", status, body)
				}
				u := e.lastReq.User
				if u == nil || u.UZI != "900012345" || u.RoleCode != "01.015" || u.URA != uraA || u.Assurance != AssuranceHigh || u.Name != "B.B. Jansen" {
					t.Fatalf("GrantRequest.User = %+v", u)
				}
				return
			}
			desc, _ := body["error_description"].(string)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" || !strings.Contains(desc, tc.wantDesc) {
				t.Fatalf("got %d %v, want 400 invalid_grant mentioning %q", status, body, tc.wantDesc)
			}
		})
	}
}

// resign decodes tok's claims, edits them and signs again with key's kid.
func resign(t *testing.T, key jwk.Key, tok string, edit func(map[string]any)) string {
	t.Helper()
	p, err := parseJWT(tok)
	if err != nil {
		t.Fatal(err)
	}
	edit(p.claims)
	kid, _ := key.KeyID()
	return signJWT(t, jwa.ES256(), key, kid, p.claims)
}

func TestUserIdentityRefusedWithoutIssuers(t *testing.T) {
	f := newIdentityFixture(t)
	e := newTestEnv(t, true)
	a := e.orgs[uraA]
	tok, err := SignUserIdentity(f.key, nil, f.claims(e, uraA))
	if err != nil {
		t.Fatal(err)
	}
	form := e.form(t, a)
	form.Set("grant_type", GrantTypeJWTBearer)
	form.Set("assertion", e.assertion(t, a, func(c map[string]any) { c[ClaimUserIdentity] = tok }))
	if status, body := e.post(t, a, form); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("%d %v", status, body)
	}
}

func TestLoadIdentityIssuer(t *testing.T) {
	f := newIdentityFixture(t)
	dir := t.TempDir()
	pub, _ := f.key.PublicKey()
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	js, _ := json.Marshal(set)
	priv := jwk.NewSet()
	_ = priv.AddKey(f.key)
	privJS, _ := json.Marshal(priv)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("jwks.json", js)
	bad := write("private.json", privJS)
	if iss, err := LoadIdentityIssuer(t.Context(), IdentityIssuerConfig{Issuer: testIdentityIssuer, JWKSFile: good}, nil); err != nil || iss.Keys.Len() != 1 {
		t.Fatalf("good JWKS: %v", err)
	}
	for name, cfg := range map[string]IdentityIssuerConfig{
		"private key in JWKS": {Issuer: testIdentityIssuer, JWKSFile: bad},
		"no issuer":           {JWKSFile: good},
		"no keys":             {Issuer: testIdentityIssuer},
		"http JWKS URL":       {Issuer: testIdentityIssuer, JWKSURL: "http://idp.example/jwks"},
	} {
		if _, err := LoadIdentityIssuer(t.Context(), cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRotate rotates the signing key: tokens of the old key keep working
// and its key stays published until they have all expired, then both go.
func TestRotate(t *testing.T) {
	e := newTestEnv(t, true)
	a := e.orgs[uraA]
	before := e.issueDirect(t, a, e.form(t, a))
	// A token of the old key that outlives its retirement: only the key's
	// removal can refuse it, not its exp.
	old := e.srv.keys.Load()
	claims := map[string]any{
		"iss": e.issuer, "sub": uraA, "aud": e.audience, "client_id": uraA, "jti": "long-lived",
		"iat": e.clock.Now().Unix(), "exp": e.clock.Now().Add(time.Hour).Unix(),
		"cnf": map[string]string{"x5t#S256": certThumbprint(a.cert.Leaf)},
	}
	payload, _ := json.Marshal(claims)
	longLived, err := signCompact(payload, old.alg, old.signer, old.kid, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}

	next := newSigningKey(t, "node-2")
	if err := e.srv.Rotate(next); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Rotate(next); err == nil {
		t.Fatal("rotating to the current key was accepted")
	}
	after := e.issueDirect(t, a, e.form(t, a))
	if kid := headerKid(t, after); kid != "node-2" {
		t.Fatalf("new token signed by %q", kid)
	}
	verify := func(tok string) error {
		r := tlsRequest(http.MethodGet, "/fhir/Patient", nil, a)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := e.srv.Verify(r, e.audience)
		return err
	}
	for name, tok := range map[string]string{"old": before, "new": after, "long-lived old": longLived} {
		if err := verify(tok); err != nil {
			t.Fatalf("%s token after rotation: %v", name, err)
		}
	}
	if kids := jwksKids(t, e); len(kids) != 2 || kids[0] != "node-2" || kids[1] != "node-1" {
		t.Fatalf("JWKS kids %v, want [node-2 node-1]", kids)
	}

	// Once every token of node-1 has expired, node-1 leaves the JWKS.
	e.clock.Advance(5*time.Minute + 30*time.Second + time.Second)
	if kids := jwksKids(t, e); len(kids) != 1 || kids[0] != "node-2" {
		t.Fatalf("JWKS kids %v after retirement, want [node-2]", kids)
	}
	if err := verify(longLived); err == nil || !strings.Contains(err.Error(), "not signed by a key of this server") {
		t.Fatalf("token of the retired key: %v", err)
	}
	if err := verify(e.issueDirect(t, a, e.form(t, a))); err != nil {
		t.Fatalf("new key's token: %v", err)
	}
}

func headerKid(t *testing.T, tok string) string {
	t.Helper()
	p, err := parseJWT(tok)
	if err != nil {
		t.Fatal(err)
	}
	return p.kid
}

func jwksKids(t *testing.T, e *testEnv) []string {
	t.Helper()
	resp, err := e.httpClient(e.orgs[uraA]).Get(e.issuer + JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestUserIdentityRefusalNamesAgreedPlateau: a bad identity is refused at
// every plateau, and the refusal names the plateau agreed with the client.
func TestUserIdentityRefusalNamesAgreedPlateau(t *testing.T) {
	f := newIdentityFixture(t)
	tests := []struct {
		name   string
		agreed func(string) (int, bool) // nil: not configured
		want   string
	}{
		{"not configured", nil, "(authentication, plateau 4)"},
		{"plateau 1 agreed", func(string) (int, bool) { return 1, true }, "(authentication, plateau 1: a signed identity presented is checked whatever the plateau)"},
		{"plateau 3 agreed", func(string) (int, bool) { return 3, true }, "(authentication, plateau 3:"},
		{"plateau 4 agreed", func(string) (int, bool) { return 4, true }, "(authentication, plateau 4)"},
		{"no agreement", func(string) (int, bool) { return 0, false }, "(authentication, plateau 4)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, true, func(c *ServerConfig) {
				c.IdentityIssuers = []IdentityIssuer{f.issuer(t)}
				c.AuthenticationPlateau = tc.agreed
			})
			a := e.orgs[uraA]
			c := f.claims(e, uraA)
			c.Issuer = "https://evil.example"
			tok, err := SignUserIdentity(f.key, nil, c)
			if err != nil {
				t.Fatal(err)
			}
			form := e.form(t, a)
			form.Set("grant_type", GrantTypeJWTBearer)
			form.Set("assertion", e.assertion(t, a, func(m map[string]any) { m[ClaimUserIdentity] = tok }))
			status, body := e.post(t, a, form)
			desc, _ := body["error_description"].(string)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" || !strings.Contains(desc, tc.want) {
				t.Fatalf("got %d %v, want invalid_grant naming %q", status, body, tc.want)
			}
		})
	}
}
