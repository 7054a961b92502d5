package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/internal/faults"
)

// maxFormSize bounds a token or introspection request body: two assertions
// plus the short parameters.
const maxFormSize = 2*MaxJWTSize + 4<<10

// maxJTILength bounds what a client can make the replay cache store.
const maxJTILength = 256

// reservedClaims are set by the server; a Grant may not override them.
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true,
	"jti": true, "client_id": true, "scope": true, "cnf": true,
}

// tokenResponse is the RFC 6749 §5.1 success response.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// handleToken serves the token endpoint (RFC 6749 §3.2; client auth RFC 7523 §2.2, grants RFC 6749 §4.4 and RFC 7523 §2.1).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	resp, err := s.issue(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request) (*tokenResponse, error) {
	ctx := r.Context()
	form, err := readForm(w, r)
	if err != nil {
		return nil, err
	}
	clientID, thumbprint, err := s.authenticateClient(ctx, r, form)
	if err != nil {
		return nil, err
	}
	scope, err := parseScope(form.Get("scope"))
	if err != nil {
		return nil, err
	}
	resource, err := parseResource(form["resource"])
	if err != nil {
		return nil, err
	}
	req := GrantRequest{
		Resource:          resource,
		ClientID:          clientID,
		GrantType:         form.Get("grant_type"),
		Scope:             scope,
		AuthorizationBase: form.Get("authorization_base"),
		TLS:               r.TLS,
	}
	switch req.GrantType {
	case "":
		return nil, invalidRequest("grant_type is required")
	case GrantTypeClientCredentials:
	case GrantTypeJWTBearer:
		raw := form.Get("assertion")
		if raw == "" {
			return nil, invalidRequest("the jwt-bearer grant requires an assertion parameter (RFC 7523 §2.1)")
		}
		if len(raw) > MaxJWTSize {
			return nil, invalidRequest(fmt.Sprintf("the assertion exceeds %d bytes", MaxJWTSize))
		}
		t, err := s.verifyAssertion(ctx, raw, clientID, "grant assertion", invalidGrant)
		if err != nil {
			return nil, err
		}
		req.Assertion = t.claims
		if v, ok := t.claims[ClaimUserIdentity]; ok {
			if req.User, err = s.verifyUserIdentity(v, clientID); err != nil {
				// A signed user identity is what authentication plateau 4
				// asks; its refusal names the function and the plateau
				// agreed, as the enforcer's do.
				var oe *oauthError
				if errors.As(err, &oe) {
					oe.description += s.identityPlateau(clientID)
				}
				return nil, err
			}
		}
	default:
		return nil, newError(ErrUnsupportedGrantType, "supported grant types are client_credentials and "+GrantTypeJWTBearer, nil)
	}

	grant, err := s.cfg.Grants.ResolveGrant(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("grant resolver: %w", err)
	}
	// RFC 8707 §2: a token asked for one resource is restricted to it; a
	// resolver that grants another audience refuses the resource.
	if req.Resource != "" && grant.Audience != req.Resource {
		return nil, newError(ErrInvalidTarget, "tokens for this resource are not issued under this grant", nil)
	}
	return s.mint(clientID, thumbprint, grant)
}

// readForm reads an application/x-www-form-urlencoded body of bounded size
// and refuses repeated parameters (RFC 6749 §3.2, §3.1).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if r.URL.RawQuery != "" {
		// Credentials must not travel in the URL, where logs keep them.
		return nil, invalidRequest("parameters must be sent in the request body, not the URL")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("the request body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, invalidRequest(fmt.Sprintf("the request body exceeds %d bytes", maxFormSize))
		}
		return nil, invalidRequest("the request body could not be read")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidRequest("the request body is not valid form encoding")
	}
	for k, v := range form {
		// resource may repeat in RFC 8707; parseResource answers that.
		if len(v) > 1 && k != "resource" {
			return nil, invalidRequest(fmt.Sprintf("parameter %q is repeated", sanitize(k)))
		}
	}
	return form, nil
}

// sanitize shortens a peer-supplied value before it is echoed in a description.
func sanitize(s string) string {
	const max = 40
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// maxResourceLength bounds the resource indicator a client can send.
const maxResourceLength = 2048

// parseResource checks the RFC 8707 §2 resource parameter: absent, or one
// absolute URI without a fragment. Several resources in one request are not
// supported: a token here always has one audience.
func parseResource(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", newError(ErrInvalidTarget, "only one resource may be requested per token", nil)
	}
	v := values[0]
	if v == "" {
		return "", newError(ErrInvalidTarget, "resource is empty", nil)
	}
	if len(v) > maxResourceLength {
		return "", newError(ErrInvalidTarget, fmt.Sprintf("resource exceeds %d characters", maxResourceLength), nil)
	}
	u, err := url.Parse(v)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "", newError(ErrInvalidTarget, "resource must be an absolute URI (RFC 8707 §2)", nil)
	}
	if u.Fragment != "" || strings.Contains(v, "#") {
		return "", newError(ErrInvalidTarget, "resource must not contain a fragment (RFC 8707 §2)", nil)
	}
	if u.User != nil {
		return "", newError(ErrInvalidTarget, "resource must not contain user information", nil)
	}
	return v, nil
}

// parseScope splits a scope parameter (RFC 6749 §3.3).
func parseScope(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	scope := strings.Split(s, " ")
	for _, tok := range scope {
		if tok == "" {
			return nil, newError(ErrInvalidScope, "scope tokens are separated by single spaces", nil)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return nil, newError(ErrInvalidScope, "scope contains a character RFC 6749 §3.3 does not allow", nil)
			}
		}
	}
	return scope, nil
}

// authenticateClient performs RFC 7523 §2.2 client authentication, bound to
// the mTLS client certificate (RFC 8705 §3). It returns the client id and
// the certificate's SHA-256 thumbprint for the token's cnf claim.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (clientID, thumbprint string, err error) {
	cert := peerCertificate(r)
	if cert == nil {
		return "", "", invalidClient("mutual TLS with a client certificate is required", nil)
	}
	peerURA, err := s.cfg.PeerURA(r.TLS)
	if err != nil || peerURA == "" {
		return "", "", invalidClient("the TLS client certificate does not identify an organisation", err)
	}
	switch form.Get("client_assertion_type") {
	case ClientAssertionTypeJWTBearer:
	case "":
		return "", "", invalidClient("client authentication is required: client_assertion_type="+ClientAssertionTypeJWTBearer+" with client_assertion", nil)
	default:
		return "", "", invalidClient("the only supported client_assertion_type is "+ClientAssertionTypeJWTBearer, nil)
	}
	raw := form.Get("client_assertion")
	if raw == "" {
		return "", "", invalidClient("client_assertion is required", nil)
	}
	if len(raw) > MaxJWTSize {
		return "", "", invalidRequest(fmt.Sprintf("the client_assertion exceeds %d bytes", MaxJWTSize))
	}
	if id := form.Get("client_id"); id != "" && id != peerURA {
		return "", "", invalidClient("client_id does not match the organisation of the TLS client certificate", nil)
	}
	if _, err := s.verifyAssertion(ctx, raw, peerURA, "client assertion", invalidClient); err != nil {
		return "", "", err
	}
	return peerURA, certThumbprint(cert), nil
}

// verifyAssertion checks a client assertion or grant assertion (RFC 7523 §3):
// iss and sub are clientID, the signature verifies with a key of clientID's
// key set, aud names this token endpoint or issuer, exp/iat/nbf hold with
// skew, its lifetime is bounded, and its jti has not been used. fail builds
// the error with the code that fits the assertion's role.
func (s *Server) verifyAssertion(ctx context.Context, raw, clientID, what string, fail func(string, error) error) (*unverifiedJWT, error) {
	t, err := parseJWT(raw)
	var broken func(jwk.Set) error // set only by a test's fault (faults.go)
	if err != nil {
		if t, broken = s.faultyAssertion(raw); t == nil {
			return nil, fail("the "+what+" is not a compact JWT signed with PS256, ES256, ES384, ES512 or RS256", err)
		}
	}
	switch {
	case t.kid == "" && broken == nil:
		return nil, fail("the "+what+" header has no kid", nil)
	case t.issuer == "" || t.subject == "":
		return nil, fail("the "+what+" needs iss and sub", nil)
	case t.issuer != t.subject:
		return nil, fail("the "+what+"'s iss and sub must both be the client id", nil)
	case t.issuer != clientID:
		return nil, fail("the "+what+"'s issuer is not the organisation of the TLS client certificate", nil)
	case t.id == "":
		return nil, fail("the "+what+" has no jti", nil)
	case len(t.id) > maxJTILength:
		return nil, fail(fmt.Sprintf("the %s's jti exceeds %d characters", what, maxJTILength), nil)
	case t.expiry.IsZero() || t.issuedAt.IsZero():
		return nil, fail("the "+what+" needs exp and iat", nil)
	}

	keys, err := s.cfg.Clients.ClientKeySet(ctx, clientID)
	if err != nil {
		switch {
		case errors.Is(err, ErrInvalidClient):
			return nil, fail("no keys are registered for this client", err)
		case errors.Is(err, ErrTemporarilyUnavailable):
			return nil, newError(ErrTemporarilyUnavailable, "the client's key set cannot be fetched now; try again later", err)
		}
		return nil, fmt.Errorf("client keys of %s: %w", clientID, err)
	}
	if keys == nil {
		return nil, fail("no keys are registered for this client", nil)
	}
	if broken != nil {
		if err := broken(keys); err != nil {
			return nil, fail("the "+what+"'s signature does not verify", err)
		}
	} else {
		key, ok := keys.LookupKeyID(t.kid)
		if !ok {
			return nil, fail("the "+what+"'s kid is not a registered key of this client", nil)
		}
		if err := t.verify(key); err != nil {
			return nil, fail("the "+what+"'s signature does not verify", err)
		}
	}

	now := s.now()
	if desc, ok := checkTimes(t, now, s.cfg.ClockSkew); !ok && !s.cfg.Faults.Has(faults.NoExpiryCheck) {
		return nil, fail(strings.Replace(desc, "the JWT", "the "+what, 1), nil)
	}
	if t.expiry.Sub(t.issuedAt) > s.cfg.MaxAssertionLifetime {
		return nil, fail(fmt.Sprintf("the %s's lifetime (exp - iat) exceeds %s", what, s.cfg.MaxAssertionLifetime), nil)
	}
	if !t.audienceContains(s.tokenEndpoint, s.issuer) && !s.cfg.Faults.Has(faults.NoAudienceCheck) {
		return nil, fail("the "+what+"'s aud must contain the token endpoint URL "+s.tokenEndpoint, nil)
	}
	if s.cfg.Faults.Has(faults.NoReplayCheck) {
		return t, nil
	}
	switch err := s.cfg.Replay.Use(ctx, t.issuer, t.id, t.expiry.Add(s.cfg.ClockSkew)); {
	case errors.Is(err, ErrReplay):
		return nil, fail("the "+what+"'s jti has been used before", err)
	case err != nil:
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	return t, nil
}

// mint signs an RFC 9068 access token for grant, bound to the client
// certificate thumbprint (RFC 8705 §3.1).
func (s *Server) mint(clientID, thumbprint string, g Grant) (*tokenResponse, error) {
	if g.Audience == "" {
		return nil, errors.New("grant resolver returned no audience")
	}
	now := s.now().Truncate(time.Second)
	exp := now.Add(s.cfg.TokenTTL)
	if !g.NotAfter.IsZero() && g.NotAfter.Before(exp) {
		exp = g.NotAfter.Truncate(time.Second)
	}
	if !exp.After(now) {
		return nil, invalidGrant("the grant has expired", nil)
	}
	claims := make(map[string]any, len(g.Claims)+10)
	for k, v := range g.Claims {
		if reservedClaims[k] {
			return nil, fmt.Errorf("grant resolver set reserved claim %q", k)
		}
		claims[k] = v
	}
	sub := g.Subject
	if sub == "" {
		sub = clientID
	}
	claims["iss"] = s.issuer
	claims["sub"] = sub
	claims["aud"] = g.Audience
	claims["exp"] = exp.Unix()
	claims["iat"] = now.Unix()
	claims["jti"] = rand.Text()
	claims["client_id"] = clientID
	claims["cnf"] = map[string]string{"x5t#S256": thumbprint}
	scope := strings.Join(g.Scope, " ")
	if scope != "" {
		claims["scope"] = scope
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("marshal access token claims: %w", err)
	}
	keys := s.keyState()
	token, err := signCompact(payload, keys.alg, keys.signer, keys.kid, "at+jwt")
	if err != nil {
		return nil, err
	}
	return &tokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(exp.Sub(now) / time.Second),
		Scope:       scope,
	}, nil
}

// peerCertificate returns the verified mTLS client certificate, if any.
func peerCertificate(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// certThumbprint is the RFC 8705 §3.1 x5t#S256 value of cert.
func certThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// identityPlateau is the suffix of a bad user identity's refusal: the
// function and the plateau agreed with the client. Below plateau 4 it says
// why a plateau that asks for no signed identity refuses one all the same.
func (s *Server) identityPlateau(clientID string) string {
	if s.cfg.AuthenticationPlateau != nil {
		if p, ok := s.cfg.AuthenticationPlateau(clientID); ok && p < 4 {
			return fmt.Sprintf(" (authentication, plateau %d: a signed identity presented is checked whatever the plateau)", p)
		}
	}
	return " (authentication, plateau 4)"
}
