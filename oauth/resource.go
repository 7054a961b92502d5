package oauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/internal/faults"
)

// AccessToken is a verified RFC 9068 access token. Treat it as read-only: with
// the verified-token cache enabled, requests presenting the same token share it.
type AccessToken struct {
	Subject  string
	ClientID string
	Scope    []string
	Audience []string
	Expiry   time.Time
	ID       string
	Claims   map[string]any // every claim of the token, registered ones included

	notBefore  time.Time
	thumbprint string // cnf.x5t#S256
}

// HasScope reports whether the token grants scope s.
func (t *AccessToken) HasScope(s string) bool { return slices.Contains(t.Scope, s) }

// StringClaim returns claim name if it is a string, else "".
func (t *AccessToken) StringClaim(name string) string {
	s, _ := t.Claims[name].(string)
	return s
}

// Verify authenticates the bearer access token of r for the resource server
// audience (RFC 6750 §2.1, RFC 9068 §4, RFC 8705 §3). It checks the signature
// against this server's current and previous keys, typ at+jwt, iss, aud, exp
// and nbf with skew, and that cnf.x5t#S256 is the thumbprint of r's TLS client
// certificate. Errors wrap ErrInvalidToken; answer them with WriteBearerError.
func (s *Server) Verify(r *http.Request, audience string) (*AccessToken, error) {
	if audience == "" {
		return nil, errors.New("oauth: Verify needs the resource server's audience")
	}
	raw, err := bearerToken(r)
	if err != nil {
		return nil, err
	}
	cert := peerCertificate(r)
	if cert == nil {
		return nil, invalidToken("the access token is bound to a TLS client certificate, and none was presented", nil)
	}
	var (
		at  *AccessToken
		key [sha256.Size]byte
	)
	if s.cache != nil {
		key = sha256.Sum256([]byte(raw))
		at = s.cache.get(key)
	}
	if at == nil {
		if at, err = s.parseAccessToken(raw); err != nil {
			return nil, err
		}
		if s.cache != nil {
			s.cache.put(key, at, s.now())
		}
	}
	if err := s.checkAccessToken(at, audience, certThumbprint(cert)); err != nil {
		return nil, err
	}
	return at, nil
}

// bearerToken extracts the token of an `Authorization: Bearer` header (RFC 6750 §2.1).
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return "", errMissingToken
	}
	if len(h) > 1 {
		return "", invalidToken("more than one Authorization header", nil)
	}
	scheme, tok, _ := strings.Cut(h[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", errMissingToken
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", invalidToken("the bearer token is empty", nil)
	}
	return tok, nil
}

// parseAccessToken checks what does not depend on the request: signature, typ,
// iss and the presence of exp and cnf.
func (s *Server) parseAccessToken(raw string) (*AccessToken, error) {
	t, err := parseJWT(raw)
	if err != nil {
		return nil, invalidToken("the access token is malformed", err)
	}
	if !strings.EqualFold(t.typ, "at+jwt") && !strings.EqualFold(t.typ, "application/at+jwt") {
		return nil, invalidToken("the token is not an RFC 9068 access token (typ at+jwt)", nil)
	}
	k, ok := s.keyState().verifyKeys[t.kid]
	if !ok || k.alg != t.alg {
		return nil, invalidToken("the access token is not signed by a key of this server", nil)
	}
	if err := t.verify(k.key); err != nil {
		return nil, invalidToken("the access token signature does not verify", err)
	}
	if t.issuer != s.issuer {
		return nil, invalidToken("the access token is from another issuer", nil)
	}
	if t.expiry.IsZero() {
		return nil, invalidToken("the access token has no exp", nil)
	}
	cnf, _ := t.claims["cnf"].(map[string]any)
	thumb, _ := cnf["x5t#S256"].(string)
	if thumb == "" {
		return nil, invalidToken("the access token is not bound to a client certificate", nil)
	}
	clientID, _ := t.claims["client_id"].(string)
	scope, _ := t.claims["scope"].(string)
	return &AccessToken{
		Subject:    t.subject,
		ClientID:   clientID,
		Scope:      strings.Fields(scope),
		Audience:   t.audience,
		Expiry:     t.expiry,
		ID:         t.id,
		Claims:     t.claims,
		notBefore:  t.notBefore,
		thumbprint: thumb,
	}, nil
}

// checkAccessToken checks what depends on the request; an empty audience or
// thumbprint skips that check (introspection has neither).
func (s *Server) checkAccessToken(at *AccessToken, audience, thumbprint string) error {
	now := s.now()
	if !now.Before(at.Expiry.Add(s.cfg.ClockSkew)) {
		return invalidToken("the access token has expired", nil)
	}
	if !at.notBefore.IsZero() && at.notBefore.After(now.Add(s.cfg.ClockSkew)) {
		return invalidToken("the access token is not valid yet", nil)
	}
	if audience != "" && !slices.Contains(at.Audience, audience) {
		return invalidToken("the access token is not meant for this resource server", nil)
	}
	if thumbprint != "" && !s.cfg.Faults.Has(faults.UnboundToken) && subtle.ConstantTimeCompare([]byte(thumbprint), []byte(at.thumbprint)) != 1 {
		return invalidToken("the access token is bound to another TLS client certificate", nil)
	}
	return nil
}

// tokenCache holds verified access tokens by SHA-256 of the serialized token
// until they expire. It is bounded; when full it drops expired entries, and
// failing that an arbitrary one (it is only a cache).
type tokenCache struct {
	mu        sync.RWMutex
	m         map[[sha256.Size]byte]*AccessToken
	max       int
	lastSweep time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{m: make(map[[sha256.Size]byte]*AccessToken), max: max}
}

func (c *tokenCache) get(k [sha256.Size]byte) *AccessToken {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[k]
}

func (c *tokenCache) put(k [sha256.Size]byte, at *AccessToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		if now.Sub(c.lastSweep) >= time.Second {
			c.lastSweep = now
			for key, v := range c.m {
				// Expired entries fail checkAccessToken anyway; keep a minute for skew.
				if now.After(v.Expiry.Add(time.Minute)) {
					delete(c.m, key)
				}
			}
		}
		for key := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = at
}

// handleIntrospect serves token introspection (RFC 7662 §2); callers authenticate with mTLS (RFC 8705 §2).
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	if peerCertificate(r) == nil {
		s.writeError(w, r, invalidClient("mutual TLS with a client certificate is required", nil))
		return
	}
	caller, err := s.cfg.PeerURA(r.TLS)
	if err != nil || caller == "" {
		s.writeError(w, r, invalidClient("the TLS client certificate does not identify an organisation", err))
		return
	}
	form, err := readForm(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	raw := form.Get("token")
	if raw == "" {
		s.writeError(w, r, invalidRequest("the token parameter is required"))
		return
	}
	at, err := s.parseAccessToken(raw)
	if err == nil {
		err = s.checkAccessToken(at, "", "")
	}
	if err == nil && !s.cfg.MayIntrospect(caller, at) {
		err = fmt.Errorf("caller %s may not introspect a token of %s", caller, at.ClientID)
	}
	if err != nil {
		s.log.DebugContext(r.Context(), "introspection: inactive token", "caller", caller, "error", err)
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	resp := make(map[string]any, len(at.Claims)+2)
	for k, v := range at.Claims {
		resp[k] = v
	}
	resp["active"] = true
	resp["token_type"] = "Bearer"
	writeJSON(w, http.StatusOK, resp)
}
