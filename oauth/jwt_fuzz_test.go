package oauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// FuzzParseJWT feeds compact JWSs built from arbitrary header and payload
// bytes to the parser every assertion and access token goes through. The
// seed corpus is in testdata/fuzz/FuzzParseJWT; run with
// go test -fuzz=FuzzParseJWT ./oauth.
func FuzzParseJWT(f *testing.F) {
	key := newSigningKey(f, "k1")
	signed := signJWT(f, jwa.ES256(), key, "k1", map[string]any{
		"iss": "90000001", "sub": "90000001", "aud": []string{"https://as.example/token"},
		"iat": 1764000000, "exp": 1764000060.5, "jti": "a1"})
	parts := strings.Split(signed, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	f.Add(hdr, payload, parts[2])
	f.Add([]byte(`{"alg":"none"}`), payload, "")
	f.Add([]byte(`{"alg":"HS256","typ":"JWT"}`), payload, parts[2])
	f.Add(hdr, []byte(`{"aud":["a",1],"exp":"soon"}`), parts[2])
	f.Fuzz(func(t *testing.T, header, payload []byte, sig string) {
		raw := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + sig
		tok, err := parseJWT(raw)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("refusal %v does not wrap errMalformed", err)
			}
			return
		}
		if len(raw) > MaxJWTSize {
			t.Fatalf("accepted %d bytes", len(raw))
		}
		if _, ok := allowedAlgs[tok.alg.String()]; !ok || tok.alg.String() == jwa.NoSignature().String() {
			t.Fatalf("accepted alg %q", tok.alg)
		}
		if len(tok.x5c) > maxX5C {
			t.Fatalf("accepted %d x5c certificates", len(tok.x5c))
		}
		// RFC 7519 §7.2 step 10: the claims are one complete JSON object in UTF-8.
		msg, err := jws.Parse([]byte(raw))
		if err != nil {
			t.Fatalf("accepted, but jws.Parse now says %v", err)
		}
		if p := msg.Payload(); !utf8.Valid(p) || !json.Valid(p) {
			t.Fatalf("accepted claims that are not one JSON object in UTF-8: %q", p)
		}
		checkClaimTypes(t, tok)
	})
}

// checkClaimTypes checks that the registered claims of an accepted JWT have
// their declared JSON types and that the typed fields say the same.
func checkClaimTypes(t *testing.T, tok *unverifiedJWT) {
	t.Helper()
	for name, field := range map[string]string{"iss": tok.issuer, "sub": tok.subject, "jti": tok.id} {
		v, ok := tok.claims[name]
		if s, isStr := v.(string); ok && (!isStr || s != field) || !ok && field != "" {
			t.Fatalf("claim %s = %#v read as %q", name, v, field)
		}
	}
	for name, field := range map[string]time.Time{"exp": tok.expiry, "iat": tok.issuedAt, "nbf": tok.notBefore} {
		v, ok := tok.claims[name]
		if !ok {
			if !field.IsZero() {
				t.Fatalf("absent claim %s read as %v", name, field)
			}
			continue
		}
		n, isNum := v.(float64)
		if !isNum || math.IsNaN(n) || n < 0 || n > 1<<40 || field.IsZero() || field.Unix() != int64(n) {
			t.Fatalf("claim %s = %#v read as %v", name, v, field)
		}
	}
	switch aud := tok.claims["aud"].(type) {
	case nil:
		if len(tok.audience) != 0 {
			t.Fatalf("no aud read as %q", tok.audience)
		}
	case string:
		if len(tok.audience) != 1 || tok.audience[0] != aud {
			t.Fatalf("aud %q read as %q", aud, tok.audience)
		}
	case []any:
		if len(aud) != len(tok.audience) {
			t.Fatalf("aud %#v read as %q", aud, tok.audience)
		}
		for i, a := range aud {
			if s, ok := a.(string); !ok || s != tok.audience[i] {
				t.Fatalf("aud %#v read as %q", aud, tok.audience)
			}
		}
	default:
		t.Fatalf("accepted aud %#v", aud)
	}
}
