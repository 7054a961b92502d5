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
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
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
// wrapping ErrInvalidClient (or an empty set); any other error is a server error.
type ClientKeys interface {
	ClientKeySet(ctx context.Context, clientID string) (jwk.Set, error)
}

// GrantRequest is what the token endpoint asks a GrantResolver to decide on.
// Everything in it has been authenticated except AuthorizationBase and Scope,
// which the resolver must check.
type GrantRequest struct {
	ClientID          string         // URA of the client, verified by assertion and mTLS
	GrantType         string         // GrantTypeClientCredentials or GrantTypeJWTBearer
	Scope             []string       // requested scope, possibly empty
	AuthorizationBase string         // Twiin Notified Pull authorization_base, if sent
	Assertion         map[string]any // verified claims of the grant assertion (jwt-bearer only)
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
	// Logger receives refused requests (info) and server errors (error).
	Logger *slog.Logger
}

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

	alg        jwa.SignatureAlgorithm
	kid        string
	signer     any                  // raw private key
	verifyKeys map[string]verifyKey // kid → public key, current and previous

	jwks     []byte
	metadata []byte
	cache    *tokenCache // nil when disabled
}

// verifyKey is one of the server's own public keys, exported to its raw
// form once so verification does not convert it per request.
type verifyKey struct {
	alg jwa.SignatureAlgorithm
	key any
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
		verifyKeys:         make(map[string]verifyKey),
	}
	if cfg.VerifiedTokenCacheSize > 0 {
		s.cache = newTokenCache(cfg.VerifiedTokenCacheSize)
	}

	isPrivate, err := jwk.IsPrivateKey(cfg.SigningKey)
	if err != nil || !isPrivate {
		return nil, errors.New("oauth: signing key must be a private asymmetric key")
	}
	if err := jwk.Export(cfg.SigningKey, &s.signer); err != nil {
		return nil, fmt.Errorf("oauth: export signing key: %w", err)
	}
	jwks := jwk.NewSet()
	for i, k := range append([]jwk.Key{cfg.SigningKey}, cfg.PreviousKeys...) {
		pub, alg, err := publicSigningKey(k)
		if err != nil {
			return nil, fmt.Errorf("oauth: key #%d: %w", i, err)
		}
		kid, _ := pub.KeyID()
		if _, dup := s.verifyKeys[kid]; dup {
			return nil, fmt.Errorf("oauth: key #%d: duplicate kid %q", i, kid)
		}
		var raw any
		if err := jwk.Export(pub, &raw); err != nil {
			return nil, fmt.Errorf("oauth: key #%d: export: %w", i, err)
		}
		s.verifyKeys[kid] = verifyKey{alg: alg, key: raw}
		if i == 0 {
			s.alg, s.kid = alg, kid
		}
		if err := jwks.AddKey(pub); err != nil {
			return nil, fmt.Errorf("oauth: key #%d: %w", i, err)
		}
	}
	if s.jwks, err = json.Marshal(jwks); err != nil {
		return nil, fmt.Errorf("oauth: marshal JWKS: %w", err)
	}
	if s.metadata, err = json.Marshal(s.Metadata()); err != nil {
		return nil, fmt.Errorf("oauth: marshal metadata: %w", err)
	}
	return s, nil
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
	_, _ = w.Write(s.jwks)
}

func (s *Server) now() time.Time { return s.cfg.Now() }
