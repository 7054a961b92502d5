package oauth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

func TestVerify(t *testing.T) {
	for _, cacheSize := range []int{0, 16} {
		t.Run(map[int]string{0: "uncached", 16: "cached"}[cacheSize], func(t *testing.T) {
			testVerify(t, cacheSize)
		})
	}
}

func testVerify(t *testing.T, cacheSize int) {
	e := newTestEnv(t, false, func(c *ServerConfig) { c.VerifiedTokenCacheSize = cacheSize })
	a, b := e.orgs[uraA], e.orgs[uraB]
	token := e.issueDirect(t, a, e.form(t, a))
	// Another server at the same issuer URL with its own key: same kid, and an unknown kid.
	sameKid := newTestEnv(t, false)
	otherKid := newTestEnv(t, false, func(c *ServerConfig) { c.SigningKey = newSigningKey(t, "node-x") })
	sameKidToken := sameKid.issueDirect(t, sameKid.orgs[uraA], sameKid.form(t, sameKid.orgs[uraA]))
	otherKidToken := otherKid.issueDirect(t, otherKid.orgs[uraA], otherKid.form(t, otherKid.orgs[uraA]))

	tests := []struct {
		name     string
		token    func() string
		org      *testOrg
		audience string
		advance  time.Duration
		wantErr  bool
	}{
		{name: "valid", token: func() string { return token }, org: a},
		{name: "valid again (from cache when enabled)", token: func() string { return token }, org: a},
		{name: "wrong client certificate", token: func() string { return token }, org: b, wantErr: true},
		{name: "no client certificate", token: func() string { return token }, wantErr: true},
		{name: "wrong audience", token: func() string { return token }, org: a, audience: "https://other.example/fhir", wantErr: true},
		{name: "tampered payload", org: a, wantErr: true, token: func() string {
			parts := strings.Split(token, ".")
			p, _ := base64.RawURLEncoding.DecodeString(parts[1])
			p = []byte(strings.Replace(string(p), `"sub":"00000001"`, `"sub":"00000009"`, 1))
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
		}},
		// These two present the certificate the tokens are bound to, so only the key is wrong.
		{name: "signed by an unknown key", org: otherKid.orgs[uraA], wantErr: true, token: func() string { return otherKidToken }},
		{name: "signed by another key with our kid", org: sameKid.orgs[uraA], wantErr: true, token: func() string { return sameKidToken }},
		{name: "signed with HS256 and our public key", org: a, wantErr: true, token: func() string {
			parts := strings.Split(token, ".")
			claims, _ := parseJWT(token)
			return signJWT(t, jwa.HS256(), []byte(parts[0]), "node-1", claims.claims)
		}},
		{name: "client assertion is not an access token", org: a, wantErr: true, token: func() string {
			return e.assertion(t, a, nil)
		}},
		{name: "expired", token: func() string { return token }, org: a, advance: 6 * time.Minute, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.advance)
			r := tlsRequest(http.MethodGet, "/fhir/Patient", nil, tt.org)
			r.Header.Set("Authorization", "Bearer "+tt.token())
			aud := tt.audience
			if aud == "" {
				aud = e.audience
			}
			at, err := e.srv.Verify(r, aud)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidToken) || at != nil {
					t.Fatalf("Verify = %v, %v; want ErrInvalidToken", at, err)
				}
				t.Log(err)
				w := httptest.NewRecorder()
				WriteBearerError(w, err)
				if w.Code != 401 || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer error="invalid_token"`) {
					t.Errorf("WriteBearerError: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
				}
				return
			}
			if err != nil || at.ClientID != uraA {
				t.Fatalf("Verify = %+v, %v", at, err)
			}
		})
	}
}

func TestBearerChallenges(t *testing.T) {
	e := newTestEnv(t, false)
	tests := []struct {
		header, wantChallenge string
		wantStatus            int
	}{
		{"", "Bearer", 401},
		{"Basic Zm9vOmJhcg==", "Bearer", 401},
		{"Bearer ", `Bearer error="invalid_token"`, 401},
		{"Bearer not.a.jwt", `Bearer error="invalid_token"`, 401},
	}
	for _, tt := range tests {
		r := tlsRequest(http.MethodGet, "/", nil, e.orgs[uraA])
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		_, err := e.srv.Verify(r, e.audience)
		w := httptest.NewRecorder()
		WriteBearerError(w, err)
		if w.Code != tt.wantStatus || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), tt.wantChallenge) {
			t.Errorf("%q: %d %q", tt.header, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
	w := httptest.NewRecorder()
	WriteBearerError(w, ErrInsufficientScope)
	if w.Code != 403 || !strings.Contains(w.Header().Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("insufficient scope: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}

func TestMemoryReplayCache(t *testing.T) {
	clock := &testClock{now: time.Now()}
	c := NewMemoryReplayCache(2, clock.Now)
	exp := clock.Now().Add(time.Minute)
	ctx := t.Context()
	if err := c.Use(ctx, "a", "1", exp); err != nil {
		t.Fatal(err)
	}
	if err := c.Use(ctx, "a", "1", exp); !errors.Is(err, ErrReplay) {
		t.Errorf("replay: %v", err)
	}
	if err := c.Use(ctx, "b", "1", exp); err != nil {
		t.Errorf("same jti, other issuer: %v", err)
	}
	if err := c.Use(ctx, "a", "2", exp); !errors.Is(err, ErrReplayCacheFull) {
		t.Errorf("full cache must fail closed: %v", err)
	}
	clock.Advance(2 * time.Minute)
	if err := c.Use(ctx, "a", "2", clock.Now().Add(time.Minute)); err != nil {
		t.Errorf("after expiry: %v", err)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d after sweep, want 1", c.Len())
	}
}

func TestTokenCacheIsBounded(t *testing.T) {
	c := newTokenCache(4)
	now := time.Now()
	for i := 0; i < 100; i++ {
		var k [32]byte
		_, _ = rand.Read(k[:])
		c.put(k, &AccessToken{Expiry: now.Add(time.Minute)}, now)
	}
	if len(c.m) > 4 {
		t.Errorf("cache holds %d entries, max 4", len(c.m))
	}
}
