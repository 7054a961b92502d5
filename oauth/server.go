package oauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/internal/faults"
)

// Grant types and the client assertion type this server accepts.
const (
	// GrantTypeClientCredentials is the RFC 6749 §4.4 grant.
	GrantTypeClientCredentials = "client_credentials"
	// GrantTypeJWTBearer is the RFC 7523 §2.1 JWT authorization grant.
	GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// ClientAssertionTypeJWTBearer is the RFC 7523 §2.2 client authentication type.
	ClientAssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Endpoint paths, relative to the issuer.
const (
	TokenPath         = "/oauth2/token"
	IntrospectionPath = "/oauth2/introspect"
	MetadataPath      = "/.well-known/oauth-authorization-server"
	JWKSPath          = "/.well-known/jwks.json"
)

// ClientKeys resolves the public keys a client signs its assertions with; the
// node implements it from its addressbook. An unknown client is an error
// wrapping ErrInvalidClient (or an empty set); keys that cannot be fetched
// now wrap ErrTemporarilyUnavailable; any other error is a server error.
type ClientKeys interface {
	ClientKeySet(ctx context.Context, clientID string) (jwk.Set, error)
}

// GrantRequest is what the token endpoint asks a GrantResolver to decide on.
// Everything in it has been authenticated except AuthorizationBase and Scope,
// which the resolver must check.
type GrantRequest struct {
	ClientID          string   // URA of the client, verified by assertion and mTLS
	GrantType         string   // GrantTypeClientCredentials or GrantTypeJWTBearer
	Scope             []string // requested scope, possibly empty
	AuthorizationBase string   // Twiin Notified Pull authorization_base, if sent
	// Resource is the RFC 8707 resource indicator, if sent: one absolute URI
	// without fragment, the resource server the client wants the token for.
	// When set, the Grant's Audience must equal it (RFC 8707 §2).
	Resource  string
	Assertion map[string]any // verified claims of the grant assertion (jwt-bearer only)
	// User is the verified user identity carried in the grant assertion's
	// user_identity claim (plateau 4); nil when none was sent. Whether a
	// user is required, and in which role, is the resolver's decision.
	User *UserIdentity
	// TLS is the request's connection, e.g. for pki.Trust.Peer, which tells
	// by which trust route (pinned or CA) the client was admitted.
	TLS *tls.ConnectionState
}

// Grant is what a GrantResolver allows: the content of the access token.
type Grant struct {
	Audience string         // resource server base URL (the token's aud)
	Scope    []string       // granted scope
	Subject  string         // token sub; the client id if empty
	Claims   map[string]any // extra token claims, e.g. patient, task; registered claims are refused
	NotAfter time.Time      // the token never outlives this; zero for no limit beyond TokenTTL
}

// GrantResolver decides whether a client gets a token and with what content.
// Returning an error wrapping ErrInvalidGrant or ErrInvalidScope refuses the
// request with that RFC 6749 code; other errors are server errors, logged
// and not shown to the client.
type GrantResolver interface {
	ResolveGrant(ctx context.Context, req GrantRequest) (Grant, error)
}

// GrantResolverFunc adapts a function to GrantResolver.
type GrantResolverFunc func(ctx context.Context, req GrantRequest) (Grant, error)

// ResolveGrant implements GrantResolver.
func (f GrantResolverFunc) ResolveGrant(ctx context.Context, req GrantRequest) (Grant, error) {
	return f(ctx, req)
}

// ServerConfig configures a Server. Zero durations take the documented defaults.
type ServerConfig struct {
	// Issuer is the https base URL of the node, e.g. https://127.0.0.1:8443,
	// without path; endpoints hang off it.
	Issuer string
	// SigningKey is the private key access tokens are signed with; its alg
	// must be set (ES256 today). A missing kid becomes the RFC 7638 thumbprint.
	SigningKey jwk.Key
	// PreviousKeys are earlier signing keys (private or public): tokens they
	// signed still verify and they stay in the JWKS until removed.
	PreviousKeys []jwk.Key
	// Clients resolves client assertion keys.
	Clients ClientKeys
	// Grants decides on token requests.
	Grants GrantResolver
	// PeerURA extracts the URA from the verified mTLS client certificate.
	PeerURA func(*tls.ConnectionState) (string, error)
	// TokenTTL is the access token lifetime (default 5m).
	TokenTTL time.Duration
	// ClockSkew is tolerated on exp, nbf and iat (default 30s).
	ClockSkew time.Duration
	// MaxAssertionLifetime bounds exp-iat of assertions (default 5m).
	MaxAssertionLifetime time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	// Replay remembers used assertion IDs (default: a MemoryReplayCache).
	Replay ReplayCache
	// VerifiedTokenCacheSize, when positive, caches up to that many verified
	// access tokens (keyed by SHA-256 of the token, until expiry) so Verify
	// skips the signature check for a token it has seen. Binding, audience
	// and expiry are still checked on every request.
	VerifiedTokenCacheSize int
	// MayIntrospect decides whether an mTLS-authenticated caller may see an
	// active token's content (RFC 7662 §4). Default: only the client the
	// token was issued to. Refused callers get active=false.
	MayIntrospect func(callerURA string, t *AccessToken) bool
	// OnRefusal, when set, records every refused token or introspection
	// request before the refusal is answered (the node's audit log). An
	// error from it turns the answer into a 503 server_error.
	OnRefusal func(r *http.Request, ref Refusal) error
	// Faults breaks the server on purpose; only the module's tests set it
	// (internal/faults), to prove the validation kit catches each defect.
	Faults *faults.Set
	// Logger receives refused requests (info) and server errors (error).
	Logger *slog.Logger

	// IdentityIssuers are trusted for user identity tokens (plateau 4)
	// carried in grant assertions; none means such tokens are refused.
	IdentityIssuers []IdentityIssuer
	// MinUserAssurance is the lowest eIDAS level accepted on a user identity
	// (default AssuranceHigh, as plateau 4 requires).
	MinUserAssurance Assurance
	// AuthenticationPlateau, when set, gives the user authentication
	// plateau agreed with a client. A bad user identity is refused at every
	// plateau; the refusal names the plateau agreed, so that the partner
	// reads which agreement judged it (without it: plateau 4, the plateau a
	// signed identity is for).
	AuthenticationPlateau func(clientID string) (int, bool)
}

// MaxTokenTTL bounds TokenTTL: bound tokens are still bearer tokens to
// anyone holding the client's TLS key, so they stay short-lived.
const MaxTokenTTL = time.Hour

// withDefaults fills in zero fields.
func (c ServerConfig) withDefaults() ServerConfig {
	if c.TokenTTL == 0 {
		c.TokenTTL = 5 * time.Minute
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 30 * time.Second
	}
	if c.MaxAssertionLifetime == 0 {
		c.MaxAssertionLifetime = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Replay == nil {
		c.Replay = NewMemoryReplayCache(0, c.Now)
	}
	if c.MinUserAssurance == 0 {
		c.MinUserAssurance = AssuranceHigh
	}
	if c.MayIntrospect == nil {
		c.MayIntrospect = func(caller string, t *AccessToken) bool { return caller == t.ClientID }
	}
	return c
}

// Validate reports configuration errors.
func (c ServerConfig) Validate() error {
	var errs []error
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil || u.Host == "":
		errs = append(errs, fmt.Errorf("issuer %q is not an absolute URL", c.Issuer))
	case u.Scheme != "https":
		errs = append(errs, fmt.Errorf("issuer %q must use https", c.Issuer))
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		errs = append(errs, fmt.Errorf("issuer %q must be a bare origin (no path, query, fragment or userinfo)", c.Issuer))
	}
	if c.SigningKey == nil {
		errs = append(errs, errors.New("signing key is required"))
	}
	if c.Clients == nil {
		errs = append(errs, errors.New("client key resolver is required"))
	}
	if c.Grants == nil {
		errs = append(errs, errors.New("grant resolver is required"))
	}
	if c.PeerURA == nil {
		errs = append(errs, errors.New("PeerURA is required"))
	}
	for name, d := range map[string]time.Duration{"TokenTTL": c.TokenTTL, "ClockSkew": c.ClockSkew, "MaxAssertionLifetime": c.MaxAssertionLifetime} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if c.TokenTTL > MaxTokenTTL {
		errs = append(errs, fmt.Errorf("TokenTTL %s exceeds %s", c.TokenTTL, MaxTokenTTL))
	}
	for i, iss := range c.IdentityIssuers {
		if iss.Issuer == "" || (iss.Keys == nil && iss.Roots == nil) {
			errs = append(errs, fmt.Errorf("identity issuer #%d needs Issuer and Keys or Roots", i))
		}
	}
	if c.MinUserAssurance < 0 || c.MinUserAssurance > AssuranceHigh {
		errs = append(errs, fmt.Errorf("MinUserAssurance %d is not a level", c.MinUserAssurance))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("oauth: invalid server config: %w", err)
	}
	return nil
}

// Server is the node's OAuth2 authorization server and, through Verify, the
// access token check of its resource servers.
type Server struct {
	cfg                ServerConfig
	log                *slog.Logger
	issuer             string
	tokenEndpoint      string
	introspectEndpoint string

	keys     atomic.Pointer[keyState]
	rotateMu sync.Mutex // serializes Rotate and pruning

	metadata []byte
	cache    *tokenCache // nil when disabled
}

// keyState is an immutable snapshot of the signing and verification keys;
// Rotate and pruning swap it whole, so requests never see half a rotation.
type keyState struct {
	alg        jwa.SignatureAlgorithm
	kid        string
	signer     any                  // raw private key
	verifyKeys map[string]verifyKey // kid → public key, current and previous
	order      []string             // kids, current first, for the JWKS
	jwks       []byte
	nextRetire time.Time // earliest retireAt; zero when no key retires
}

// verifyKey is one of the server's own public keys, exported to its raw
// form once so verification does not convert it per request.
type verifyKey struct {
	alg      jwa.SignatureAlgorithm
	key      any
	pub      jwk.Key
	retireAt time.Time // zero: kept until removed from the configuration
}

// NewServer validates cfg and prepares the keys, JWKS and metadata.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	issuer := trimSlash(cfg.Issuer)
	s := &Server{
		cfg:                cfg,
		log:                cfg.Logger,
		issuer:             issuer,
		tokenEndpoint:      issuer + TokenPath,
		introspectEndpoint: issuer + IntrospectionPath,
	}
	if cfg.VerifiedTokenCacheSize > 0 {
		s.cache = newTokenCache(cfg.VerifiedTokenCacheSize)
	}

	signer, alg, kid, pub, err := privateSigningKey(cfg.SigningKey)
	if err != nil {
		return nil, err
	}
	st := &keyState{alg: alg, kid: kid, signer: signer, verifyKeys: map[string]verifyKey{}}
	if err := st.add(pub, time.Time{}); err != nil {
		return nil, fmt.Errorf("oauth: key #0: %w", err)
	}
	for i, k := range cfg.PreviousKeys {
		pub, _, err := publicSigningKey(k)
		if err != nil {
			return nil, fmt.Errorf("oauth: key #%d: %w", i+1, err)
		}
		if err := st.add(pub, time.Time{}); err != nil {
			return nil, fmt.Errorf("oauth: key #%d: %w", i+1, err)
		}
	}
	if err := st.finish(); err != nil {
		return nil, err
	}
	s.keys.Store(st)
	if s.metadata, err = json.Marshal(s.Metadata()); err != nil {
		return nil, fmt.Errorf("oauth: marshal metadata: %w", err)
	}
	return s, nil
}

// privateSigningKey checks that k is a private asymmetric key with an
// allowed alg and returns its raw form, alg, kid and public JWK.
func privateSigningKey(k jwk.Key) (signer any, alg jwa.SignatureAlgorithm, kid string, pub jwk.Key, err error) {
	isPrivate, err := jwk.IsPrivateKey(k)
	if err != nil || !isPrivate {
		return nil, alg, "", nil, errors.New("oauth: signing key must be a private asymmetric key")
	}
	if err := jwk.Export(k, &signer); err != nil {
		return nil, alg, "", nil, fmt.Errorf("oauth: export signing key: %w", err)
	}
	if pub, alg, err = publicSigningKey(k); err != nil {
		return nil, alg, "", nil, fmt.Errorf("oauth: signing key: %w", err)
	}
	kid, _ = pub.KeyID()
	return signer, alg, kid, pub, nil
}

// add registers a public key; retireAt zero keeps it.
func (st *keyState) add(pub jwk.Key, retireAt time.Time) error {
	kid, _ := pub.KeyID()
	if _, dup := st.verifyKeys[kid]; dup {
		return fmt.Errorf("duplicate kid %q", kid)
	}
	a, _ := pub.Algorithm()
	var raw any
	if err := jwk.Export(pub, &raw); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	st.verifyKeys[kid] = verifyKey{alg: allowedAlgs[a.String()], key: raw, pub: pub, retireAt: retireAt}
	st.order = append(st.order, kid)
	if !retireAt.IsZero() && (st.nextRetire.IsZero() || retireAt.Before(st.nextRetire)) {
		st.nextRetire = retireAt
	}
	return nil
}

// finish serializes the JWKS of the keys added.
func (st *keyState) finish() error {
	set := jwk.NewSet()
	for _, kid := range st.order {
		if err := set.AddKey(st.verifyKeys[kid].pub); err != nil {
			return fmt.Errorf("oauth: JWKS: %w", err)
		}
	}
	var err error
	if st.jwks, err = json.Marshal(set); err != nil {
		return fmt.Errorf("oauth: marshal JWKS: %w", err)
	}
	return nil
}

// keyState returns the current keys, first dropping keys whose tokens have
// all expired.
func (s *Server) keyState() *keyState {
	st := s.keys.Load()
	if st.nextRetire.IsZero() || s.now().Before(st.nextRetire) {
		return st
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	st = s.keys.Load()
	now := s.now()
	if st.nextRetire.IsZero() || now.Before(st.nextRetire) {
		return st
	}
	next := &keyState{alg: st.alg, kid: st.kid, signer: st.signer, verifyKeys: map[string]verifyKey{}}
	for _, kid := range st.order {
		k := st.verifyKeys[kid]
		if !k.retireAt.IsZero() && !now.Before(k.retireAt) {
			continue
		}
		_ = next.add(k.pub, k.retireAt) // kids were unique already
	}
	if err := next.finish(); err != nil {
		s.log.Error("oauth: rebuilding JWKS after key retirement", "error", err)
		return st
	}
	s.keys.Store(next)
	return next
}

// Rotate makes newKey the signing key without downtime: tokens are signed
// with it from now on, and the previous signing key stays in the JWKS and
// keeps verifying until every token it signed has expired (TokenTTL plus
// ClockSkew from now); then it is dropped. Keys from PreviousKeys stay.
func (s *Server) Rotate(newKey jwk.Key) error {
	signer, alg, kid, pub, err := privateSigningKey(newKey)
	if err != nil {
		return err
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	old := s.keys.Load()
	if _, dup := old.verifyKeys[kid]; dup {
		return fmt.Errorf("oauth: rotate: key %q is already in use", kid)
	}
	next := &keyState{alg: alg, kid: kid, signer: signer, verifyKeys: map[string]verifyKey{}}
	if err := next.add(pub, time.Time{}); err != nil {
		return err
	}
	now := s.now()
	retire := now.Add(s.cfg.TokenTTL + s.cfg.ClockSkew)
	for _, k := range old.order {
		v := old.verifyKeys[k]
		switch {
		case k == old.kid:
			v.retireAt = retire
		case !v.retireAt.IsZero() && !now.Before(v.retireAt):
			continue
		}
		if err := next.add(v.pub, v.retireAt); err != nil {
			return err
		}
	}
	if err := next.finish(); err != nil {
		return err
	}
	s.keys.Store(next)
	return nil
}

// publicSigningKey returns the public half of k with kid, alg and use=sig set.
func publicSigningKey(k jwk.Key) (jwk.Key, jwa.SignatureAlgorithm, error) {
	a, ok := k.Algorithm()
	if !ok {
		return nil, jwa.EmptySignatureAlgorithm(), errors.New(`the key has no "alg"`)
	}
	alg, ok := allowedAlgs[a.String()]
	if !ok {
		return nil, jwa.EmptySignatureAlgorithm(), fmt.Errorf("algorithm %q is not allowed", a)
	}
	pub, err := jwk.PublicKeyOf(k)
	if err != nil {
		return nil, alg, fmt.Errorf("public key: %w", err)
	}
	if pub == k { // PublicKeyOf may return a public key itself; never mutate the caller's.
		if pub, err = k.Clone(); err != nil {
			return nil, alg, err
		}
	}
	if err := jwk.AssignKeyID(pub); err != nil {
		return nil, alg, fmt.Errorf("assign kid: %w", err)
	}
	if err := pub.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
		return nil, alg, err
	}
	if err := pub.Set(jwk.AlgorithmKey, alg); err != nil {
		return nil, alg, err
	}
	return pub, alg, nil
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// Issuer returns the issuer identifier (no trailing slash).
func (s *Server) Issuer() string { return s.issuer }

// TokenEndpoint returns the absolute URL of the token endpoint, the audience
// of client and grant assertions.
func (s *Server) TokenEndpoint() string { return s.tokenEndpoint }

// Routes registers the server's endpoints on mux. Put it on the public (mTLS)
// listener only: the token and introspection endpoints rely on r.TLS.
func (s *Server) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+TokenPath, s.handleToken)
	mux.HandleFunc("POST "+IntrospectionPath, s.handleIntrospect)
	mux.HandleFunc("GET "+MetadataPath, s.handleMetadata)
	mux.HandleFunc("GET "+JWKSPath, s.handleJWKS)
}

// Metadata is RFC 8414 authorization server metadata.
type Metadata struct {
	Issuer                                     string   `json:"issuer"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint,omitempty"`
	JWKSURI                                    string   `json:"jwks_uri"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	TLSClientCertificateBoundAccessTokens      bool     `json:"tls_client_certificate_bound_access_tokens"`
}

// Metadata returns this server's RFC 8414 metadata.
func (s *Server) Metadata() *Metadata {
	return &Metadata{
		Issuer:                s.issuer,
		TokenEndpoint:         s.tokenEndpoint,
		IntrospectionEndpoint: s.introspectEndpoint,
		JWKSURI:               s.issuer + JWKSPath,
		// RFC 8414 §2 requires the member; there is no authorization endpoint, so no response types.
		ResponseTypesSupported:                     []string{},
		GrantTypesSupported:                        []string{GrantTypeClientCredentials, GrantTypeJWTBearer},
		TokenEndpointAuthMethodsSupported:          []string{"private_key_jwt"},
		TokenEndpointAuthSigningAlgValuesSupported: AllowedAlgorithms(),
		IntrospectionEndpointAuthMethodsSupported:  []string{"tls_client_auth"},
		TLSClientCertificateBoundAccessTokens:      true,
	}
}

// handleMetadata serves authorization server metadata (RFC 8414 §3).
func (s *Server) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(s.metadata)
}

// handleJWKS serves the public token signing keys, current and previous (RFC 7517 §5).
func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short, so a rotated key is seen well before the previous one is removed.
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.keyState().jwks)
}

func (s *Server) now() time.Time { return s.cfg.Now() }
