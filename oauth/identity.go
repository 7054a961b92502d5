package oauth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Claim names of plateau-4 user identity. The user's identity token (a
// compact JWT signed by an identity issuer, Dezi-style) travels as the string
// claim ClaimUserIdentity of the grant assertion; the token's own claims
// follow the Dezi "verklaring" names, since Dezi is where such tokens will
// come from:
//
//	iss             the identity issuer; must be configured
//	aud             this authorization server (token endpoint URL or issuer)
//	exp, nbf, iat   validity; exp required
//	dezi_nummer     UZI/Dezi number of the person (OID 2.16.528.1.1007.3.1)
//	rol_code        UZI role code (OID 2.16.840.1.113883.2.4.15.111), e.g. 01.015
//	abonnee_nummer  URA of the organisation the user acts for; must be the client's
//	loa_authn       eIDAS level of assurance: low, substantial, high (or the
//	                http://eidas.europa.eu/LoA/… URI)
//	voorletters, achternaam   optional display name
const (
	ClaimUserIdentity = "user_identity"
	ClaimDeziNumber   = "dezi_nummer"
	ClaimRoleCode     = "rol_code"
	ClaimUserURA      = "abonnee_nummer"
	ClaimAssurance    = "loa_authn"
	ClaimInitials     = "voorletters"
	ClaimSurname      = "achternaam"
)

// Assurance is an eIDAS level of assurance (Regulation 2015/1502).
type Assurance int

// Levels, ordered.
const (
	AssuranceLow Assurance = iota + 1
	AssuranceSubstantial
	AssuranceHigh
)

// eidasLoAPrefix opens the eIDAS LoA URIs (http://eidas.europa.eu/LoA/high).
const eidasLoAPrefix = "http://eidas.europa.eu/LoA/"

// String returns low, substantial or high.
func (a Assurance) String() string {
	switch a {
	case AssuranceLow:
		return "low"
	case AssuranceSubstantial:
		return "substantial"
	case AssuranceHigh:
		return "high"
	}
	return "unknown"
}

// ParseAssurance reads low/substantial/high or their eIDAS URIs.
func ParseAssurance(s string) (Assurance, error) {
	switch strings.TrimPrefix(strings.ToLower(s), strings.ToLower(eidasLoAPrefix)) {
	case "low":
		return AssuranceLow, nil
	case "substantial":
		return AssuranceSubstantial, nil
	case "high":
		return AssuranceHigh, nil
	}
	return 0, fmt.Errorf("oauth: %q is not an eIDAS level of assurance (low, substantial, high)", s)
}

// identityAlgs are the algorithms accepted on user identity tokens: the
// ones identity providers in the Dutch health sector sign with.
var identityAlgs = map[string]bool{"PS256": true, "ES256": true, "RS256": true}

// roleCodePattern is the shape of an UZI role code: two digits, a dot, three.
var roleCodePattern = regexp.MustCompile(`^[0-9]{2}\.[0-9]{3}$`)

// UserIdentity is a verified user identity (plateau 4): who the user is, in
// which role, how strongly authenticated, and for which organisation.
type UserIdentity struct {
	Issuer    string
	UZI       string    // dezi_nummer
	RoleCode  string    // rol_code, UZI role code system
	URA       string    // abonnee_nummer, equal to the client's URA
	Assurance Assurance // loa_authn
	Name      string    // initials and surname, when given
	Expiry    time.Time
	Claims    map[string]any // every claim of the identity token
}

// IdentityIssuer is a trusted issuer of user identity tokens. Its tokens
// are verified with Keys (by kid) or, when a token carries an x5c header,
// with the chain's leaf after the chain verifies against Roots.
type IdentityIssuer struct {
	Issuer string
	Keys   jwk.Set        // may be nil when only x5c is used
	Roots  *x509.CertPool // may be nil when only kid is used
}

// IdentityIssuerConfig configures one identity issuer (koanf).
type IdentityIssuerConfig struct {
	Issuer    string   `koanf:"issuer"`
	JWKSFile  string   `koanf:"jwksfile"`
	JWKSURL   string   `koanf:"jwksurl"`
	RootFiles []string `koanf:"rootfiles"`
}

// Validate reports configuration errors.
func (c IdentityIssuerConfig) Validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("identity issuer: issuer is required"))
	}
	if c.JWKSFile == "" && c.JWKSURL == "" && len(c.RootFiles) == 0 {
		errs = append(errs, fmt.Errorf("identity issuer %s: needs jwksfile, jwksurl or rootfiles", c.Issuer))
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, fmt.Errorf("identity issuer %s: jwksfile and jwksurl exclude each other", c.Issuer))
	}
	if c.JWKSURL != "" && !strings.HasPrefix(c.JWKSURL, "https://") {
		errs = append(errs, fmt.Errorf("identity issuer %s: jwksurl must use https", c.Issuer))
	}
	return errors.Join(errs...)
}

// LoadIdentityIssuer reads the JWKS (file, or URL fetched once with hc) and
// root certificates of cfg.
func LoadIdentityIssuer(ctx context.Context, cfg IdentityIssuerConfig, hc *http.Client) (IdentityIssuer, error) {
	if err := cfg.Validate(); err != nil {
		return IdentityIssuer{}, err
	}
	iss := IdentityIssuer{Issuer: cfg.Issuer}
	var err error
	switch {
	case cfg.JWKSFile != "":
		data, rerr := os.ReadFile(cfg.JWKSFile)
		if rerr != nil {
			return IdentityIssuer{}, fmt.Errorf("oauth: identity issuer %s: %w", cfg.Issuer, rerr)
		}
		iss.Keys, err = jwk.Parse(data)
	case cfg.JWKSURL != "":
		if hc == nil {
			hc = http.DefaultClient
		}
		iss.Keys, err = jwk.Fetch(ctx, cfg.JWKSURL, jwk.WithHTTPClient(hc))
	}
	if err != nil {
		return IdentityIssuer{}, fmt.Errorf("oauth: identity issuer %s: JWKS: %w", cfg.Issuer, err)
	}
	if iss.Keys != nil {
		for i := range iss.Keys.Len() {
			k, _ := iss.Keys.Key(i)
			if priv, _ := jwk.IsPrivateKey(k); priv {
				return IdentityIssuer{}, fmt.Errorf("oauth: identity issuer %s: the JWKS holds a private key", cfg.Issuer)
			}
		}
	}
	if len(cfg.RootFiles) > 0 {
		iss.Roots = x509.NewCertPool()
		for _, f := range cfg.RootFiles {
			data, err := os.ReadFile(f)
			if err != nil {
				return IdentityIssuer{}, fmt.Errorf("oauth: identity issuer %s: %w", cfg.Issuer, err)
			}
			n := 0
			for {
				var b *pem.Block
				b, data = pem.Decode(data)
				if b == nil {
					break
				}
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					return IdentityIssuer{}, fmt.Errorf("oauth: identity issuer %s: %s: %w", cfg.Issuer, f, err)
				}
				iss.Roots.AddCert(c)
				n++
			}
			if n == 0 {
				return IdentityIssuer{}, fmt.Errorf("oauth: identity issuer %s: no certificate in %s", cfg.Issuer, f)
			}
		}
	}
	return iss, nil
}

// verifyUserIdentity checks a user identity token for clientID and returns
// its verified content. Refusals are invalid_grant with a description safe
// for the peer; the cause is only logged.
func (s *Server) verifyUserIdentity(v any, clientID string) (*UserIdentity, error) {
	raw, ok := v.(string)
	if !ok || raw == "" {
		return nil, invalidGrant("the "+ClaimUserIdentity+" claim must be a compact JWT string", nil)
	}
	if len(s.cfg.IdentityIssuers) == 0 {
		return nil, invalidGrant("this authorization server accepts no user identity tokens", nil)
	}
	t, err := parseJWT(raw)
	if err != nil {
		return nil, invalidGrant("the user identity is not a compact JWT signed with PS256, ES256 or RS256", err)
	}
	if !identityAlgs[t.alg.String()] {
		return nil, invalidGrant("the user identity is not a compact JWT signed with PS256, ES256 or RS256", nil)
	}
	var issuer *IdentityIssuer
	for i := range s.cfg.IdentityIssuers {
		if s.cfg.IdentityIssuers[i].Issuer == t.issuer {
			issuer = &s.cfg.IdentityIssuers[i]
			break
		}
	}
	if issuer == nil || t.issuer == "" {
		return nil, invalidGrant("the user identity is not from a trusted identity issuer", nil)
	}
	key, err := s.identityKey(t, issuer)
	if err != nil {
		return nil, invalidGrant("the user identity's signing key is not a key of its issuer", err)
	}
	if err := t.verify(key); err != nil {
		return nil, invalidGrant("the user identity's signature does not verify", err)
	}
	now := s.now()
	if desc, ok := checkTimes(t, now, s.cfg.ClockSkew); !ok {
		return nil, invalidGrant(strings.Replace(desc, "the JWT", "the user identity", 1), nil)
	}
	if !t.audienceContains(s.tokenEndpoint, s.issuer) {
		return nil, invalidGrant("the user identity's aud must contain the token endpoint URL "+s.tokenEndpoint, nil)
	}
	str := func(name string) string { v, _ := t.claims[name].(string); return v }
	u := &UserIdentity{
		Issuer: t.issuer, UZI: str(ClaimDeziNumber), RoleCode: str(ClaimRoleCode), URA: str(ClaimUserURA),
		Name: strings.TrimSpace(str(ClaimInitials) + " " + str(ClaimSurname)), Expiry: t.expiry, Claims: t.claims,
	}
	switch {
	case !allDigits(u.UZI) || len(u.UZI) > 20:
		return nil, invalidGrant("the user identity needs a numeric "+ClaimDeziNumber+" (UZI/Dezi number)", nil)
	case u.RoleCode == "":
		return nil, invalidGrant("the user identity has no "+ClaimRoleCode+" (UZI role code)", nil)
	case !roleCodePattern.MatchString(u.RoleCode):
		return nil, invalidGrant("the user identity's "+ClaimRoleCode+" is not an UZI role code (NN.NNN)", nil)
	case u.URA == "":
		return nil, invalidGrant("the user identity has no "+ClaimUserURA+" (URA)", nil)
	case u.URA != clientID:
		return nil, invalidGrant("the user identity is bound to another organisation than the client", nil)
	}
	if u.Assurance, err = ParseAssurance(str(ClaimAssurance)); err != nil {
		return nil, invalidGrant("the user identity has no valid "+ClaimAssurance+" (low, substantial, high)", err)
	}
	if u.Assurance < s.cfg.MinUserAssurance {
		return nil, invalidGrant(fmt.Sprintf("the user identity's level of assurance is below %s", s.cfg.MinUserAssurance), nil)
	}
	return u, nil
}

// identityKey finds the verification key: the x5c leaf when the chain
// verifies to the issuer's roots, else the JWKS key named by kid.
func (s *Server) identityKey(t *unverifiedJWT, iss *IdentityIssuer) (any, error) {
	if len(t.x5c) > 0 {
		if iss.Roots == nil {
			return nil, errors.New("x5c given, but the issuer has no configured roots")
		}
		inter := x509.NewCertPool()
		for _, c := range t.x5c[1:] {
			inter.AddCert(c)
		}
		if _, err := t.x5c[0].Verify(x509.VerifyOptions{Roots: iss.Roots, Intermediates: inter, CurrentTime: s.now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, err
		}
		if t.x5c[0].KeyUsage != 0 && t.x5c[0].KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			return nil, errors.New("x5c leaf is not a signing certificate")
		}
		return t.x5c[0].PublicKey, nil
	}
	if iss.Keys == nil || t.kid == "" {
		return nil, errors.New("no x5c and no kid of a configured JWKS")
	}
	k, ok := iss.Keys.LookupKeyID(t.kid)
	if !ok {
		return nil, fmt.Errorf("kid %q not in the issuer's JWKS", t.kid)
	}
	return k, nil
}

// DefaultUserIdentityTTL is the lifetime SignUserIdentity gives a token
// when the claims name none.
const DefaultUserIdentityTTL = 15 * time.Minute

// UserIdentityClaims is the content of a user identity token to sign.
type UserIdentityClaims struct {
	Issuer    string
	Audience  string // the authorization server's token endpoint
	UZI       string
	RoleCode  string
	URA       string
	Assurance Assurance
	Initials  string
	Surname   string
	IssuedAt  time.Time     // default now
	TTL       time.Duration // default 15 minutes
}

// SignUserIdentity signs a user identity token with key (alg from the key;
// PS256, ES256 or RS256). With chain, the header carries x5c (leaf first);
// otherwise kid. This is what an identity issuer (the dev PKI's, or Dezi)
// produces and a client puts in its grant assertion as ClaimUserIdentity.
func SignUserIdentity(key jwk.Key, chain []*x509.Certificate, c UserIdentityClaims) (string, error) {
	a, ok := key.Algorithm()
	if !ok || !identityAlgs[a.String()] {
		return "", errors.New("oauth: identity key needs alg PS256, ES256 or RS256")
	}
	alg := allowedAlgs[a.String()]
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.TTL <= 0 {
		c.TTL = DefaultUserIdentityTTL
	}
	claims := map[string]any{
		"iss": c.Issuer, "aud": c.Audience, "sub": c.UZI,
		"iat": c.IssuedAt.Unix(), "nbf": c.IssuedAt.Unix(), "exp": c.IssuedAt.Add(c.TTL).Unix(),
		ClaimDeziNumber: c.UZI, ClaimRoleCode: c.RoleCode, ClaimUserURA: c.URA,
	}
	if c.Assurance != 0 {
		claims[ClaimAssurance] = c.Assurance.String()
	}
	if c.Initials != "" {
		claims[ClaimInitials] = c.Initials
	}
	if c.Surname != "" {
		claims[ClaimSurname] = c.Surname
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", err
	}
	if len(chain) > 0 {
		x5c := &cert.Chain{}
		for _, c := range chain {
			if err := x5c.Add([]byte(base64.StdEncoding.EncodeToString(c.Raw))); err != nil {
				return "", fmt.Errorf("oauth: x5c: %w", err)
			}
		}
		if err := hdr.Set(jws.X509CertChainKey, x5c); err != nil {
			return "", err
		}
	} else {
		kid, ok := key.KeyID()
		if !ok || kid == "" {
			return "", errors.New("oauth: identity key has no kid and no certificate chain was given")
		}
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			return "", err
		}
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return "", err
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, raw, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("oauth: sign user identity: %w", err)
	}
	return string(out), nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
