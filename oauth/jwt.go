package oauth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// MaxJWTSize bounds every JWT this package parses (client and grant
// assertions, access tokens); larger input is refused before any decoding.
const MaxJWTSize = 8 << 10

// allowedAlgs are the signature algorithms accepted on assertions and tokens:
// those seen in Twiin practice (SPEC §4). `none` and every HMAC alg are absent
// on purpose: with a public key as HMAC secret anyone could forge a signature.
var allowedAlgs = map[string]jwa.SignatureAlgorithm{
	jwa.PS256().String(): jwa.PS256(),
	jwa.ES256().String(): jwa.ES256(),
	jwa.ES384().String(): jwa.ES384(),
	jwa.ES512().String(): jwa.ES512(),
	jwa.RS256().String(): jwa.RS256(),
}

// AllowedAlgorithms lists the accepted JWS algorithms, as published in the
// authorization server metadata.
func AllowedAlgorithms() []string {
	return []string{"PS256", "ES256", "ES384", "ES512", "RS256"}
}

// unverifiedJWT is a compact JWS split into header fields and decoded claims.
// Nothing in it may be trusted before verify succeeds.
type unverifiedJWT struct {
	raw    []byte
	alg    jwa.SignatureAlgorithm
	kid    string
	typ    string
	claims map[string]any
	x5c    []*x509.Certificate // x5c header, leaf first; nil when absent

	issuer, subject, id string
	audience            []string
	expiry, issuedAt    time.Time // zero when absent
	notBefore           time.Time
}

// errMalformed is wrapped by every parse failure; callers pick the OAuth code.
var errMalformed = errors.New("malformed JWT")

// parseJWT decodes a compact JWS without checking its signature. It refuses
// oversized input, other serializations, algorithms outside allowedAlgs and
// registered claims of the wrong JSON type.
func parseJWT(raw string) (*unverifiedJWT, error) {
	if len(raw) > MaxJWTSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", errMalformed, MaxJWTSize)
	}
	if strings.Count(raw, ".") != 2 || strings.HasPrefix(raw, "{") {
		return nil, fmt.Errorf("%w: not a compact JWS", errMalformed)
	}
	b := []byte(raw)
	msg, err := jws.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", errMalformed)
	}
	h := sigs[0].ProtectedHeaders()
	alg, ok := h.Algorithm()
	if !ok {
		return nil, fmt.Errorf("%w: no alg header", errMalformed)
	}
	allowed, ok := allowedAlgs[alg.String()]
	if !ok {
		return nil, fmt.Errorf("%w: signature algorithm %q is not accepted", errMalformed, alg.String())
	}
	t := &unverifiedJWT{raw: b, alg: allowed}
	t.kid, _ = h.KeyID()
	t.typ, _ = h.Type()
	if chain, ok := h.X509CertChain(); ok && chain != nil {
		if t.x5c, err = decodeX5C(chain); err != nil {
			return nil, fmt.Errorf("%w: x5c: %v", errMalformed, err)
		}
	}

	// RFC 7519 §7.2 step 10: the claims are one complete JSON object in
	// UTF-8; trailing JSON or bytes replaced while decoding would be read
	// differently by another parser of the same token.
	payload := msg.Payload()
	if !utf8.Valid(payload) || json.Unmarshal(payload, &t.claims) != nil || t.claims == nil {
		return nil, fmt.Errorf("%w: payload is not a JSON object", errMalformed)
	}
	if err := t.readRegisteredClaims(); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return t, nil
}

// maxX5C bounds the certificate chain a JWT header may carry.
const maxX5C = 5

// decodeX5C parses an x5c header (RFC 7515 §4.1.6: base64, not base64url, DER).
func decodeX5C(chain *cert.Chain) ([]*x509.Certificate, error) {
	if chain.Len() == 0 || chain.Len() > maxX5C {
		return nil, fmt.Errorf("want 1 to %d certificates, got %d", maxX5C, chain.Len())
	}
	out := make([]*x509.Certificate, 0, chain.Len())
	for i := range chain.Len() {
		b64, _ := chain.Get(i)
		der, err := base64.StdEncoding.DecodeString(string(b64))
		if err != nil {
			return nil, err
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// readRegisteredClaims copies the RFC 7519 §4.1 claims into typed fields.
func (t *unverifiedJWT) readRegisteredClaims() error {
	var err error
	str := func(name string) string {
		v, ok := t.claims[name]
		if !ok {
			return ""
		}
		s, ok := v.(string)
		if !ok && err == nil {
			err = fmt.Errorf("claim %q is not a string", name)
		}
		return s
	}
	date := func(name string) time.Time {
		v, ok := t.claims[name]
		if !ok {
			return time.Time{}
		}
		f, ok := v.(float64)
		if (!ok || math.IsNaN(f) || f < 0 || f > 1<<40) && err == nil {
			err = fmt.Errorf("claim %q is not a NumericDate", name)
			return time.Time{}
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9))
	}
	t.issuer, t.subject, t.id = str("iss"), str("sub"), str("jti")
	t.expiry, t.issuedAt, t.notBefore = date("exp"), date("iat"), date("nbf")
	switch aud := t.claims["aud"].(type) {
	case nil:
	case string:
		t.audience = []string{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return errors.New(`claim "aud" is not a string or an array of strings`)
			}
			t.audience = append(t.audience, s)
		}
	default:
		return errors.New(`claim "aud" is not a string or an array of strings`)
	}
	return err
}

// verify checks the signature with key, which must suit t.alg. jws.VerifyCompactFast
// re-checks that the header alg equals t.alg and that key's type fits it.
func (t *unverifiedJWT) verify(key any) error {
	if k, ok := key.(jwk.Key); ok {
		if u, ok := k.KeyUsage(); ok && u != "" && u != jwk.ForSignature.String() {
			return fmt.Errorf("key %q is not a signing key", t.kid)
		}
		if a, ok := k.Algorithm(); ok && a.String() != t.alg.String() {
			return fmt.Errorf("key %q is for %s, JWT says %s", t.kid, a, t.alg)
		}
	}
	if _, err := jws.VerifyCompactFast(key, t.raw, t.alg); err != nil {
		return err
	}
	return nil
}

// audienceContains reports whether any of want is in the aud claim.
func (t *unverifiedJWT) audienceContains(want ...string) bool {
	for _, a := range t.audience {
		for _, w := range want {
			if a == w {
				return true
			}
		}
	}
	return false
}

// checkTimes validates exp (required), nbf and iat against now with skew; it
// returns a description safe to show the peer.
func checkTimes(t *unverifiedJWT, now time.Time, skew time.Duration) (string, bool) {
	switch {
	case t.expiry.IsZero():
		return "the JWT has no exp claim", false
	case !now.Before(t.expiry.Add(skew)):
		return "the JWT has expired", false
	case !t.notBefore.IsZero() && t.notBefore.After(now.Add(skew)):
		return "the JWT is not valid yet (nbf)", false
	case !t.issuedAt.IsZero() && t.issuedAt.After(now.Add(skew)):
		return "the JWT is issued in the future (iat)", false
	}
	return "", true
}
