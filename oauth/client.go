package oauth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// assertionLifetime is how long the client's assertions are valid: short,
// since they are used at once (and remembered by the server until exp).
const assertionLifetime = 60 * time.Second

// maxResponseSize bounds what the client reads from an authorization server.
const maxResponseSize = 64 << 10

// Client obtains access tokens from other nodes' authorization servers.
type Client struct {
	ClientID string           // URA of this organisation
	Key      jwk.Key          // private assertion signing key, with alg and kid set; not the TLS key
	HTTP     *http.Client     // configured with this organisation's mTLS certificate
	Now      func() time.Time // default time.Now
}

// TokenRequest describes the token a Client asks for.
type TokenRequest struct {
	GrantType         string   // GrantTypeClientCredentials or GrantTypeJWTBearer
	Scope             []string // requested scope
	AuthorizationBase string   // Twiin Notified Pull authorization_base, if any
	// Resource is the RFC 8707 resource indicator: the absolute base URL of
	// the resource server the token is for; empty sends none.
	Resource        string
	AssertionClaims map[string]any // extra claims for the grant assertion (jwt-bearer)
	// UserIdentity is a user identity token (plateau 4) to carry in the
	// grant assertion as ClaimUserIdentity (jwt-bearer only).
	UserIdentity string
}

// Token is an RFC 6749 §5.1 access token response.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// Token requests an access token at tokenEndpoint, authenticating with a
// private_key_jwt client assertion (RFC 7523 §2.2) and, for the jwt-bearer
// grant, a grant assertion (RFC 7523 §2.1). A refusal is an *ErrorResponse.
func (c *Client) Token(ctx context.Context, tokenEndpoint string, req TokenRequest) (*Token, error) {
	form, err := c.TokenForm(tokenEndpoint, req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("oauth: token request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("oauth: token request to %s: %w", tokenEndpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil {
		return nil, fmt.Errorf("oauth: read token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &ErrorResponse{Status: resp.StatusCode}
		var body5_2 struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &body5_2) == nil {
			e.Code, e.Description = body5_2.Error, body5_2.Description
		}
		return nil, e
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("oauth: token response has content type %q", mt)
	}
	var tok Token
	if err := json.Unmarshal(body, &tok); err != nil {
		return nil, fmt.Errorf("oauth: decode token response: %w", err)
	}
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "Bearer") {
		return nil, errors.New("oauth: token response lacks a bearer access_token")
	}
	return &tok, nil
}

// TokenForm builds the form body of a token request with fresh assertions;
// Token posts it. It is exported for callers with their own transport.
func (c *Client) TokenForm(tokenEndpoint string, req TokenRequest) (url.Values, error) {
	if c.ClientID == "" || c.Key == nil {
		return nil, errors.New("oauth: client needs ClientID and Key")
	}
	form := url.Values{}
	form.Set("grant_type", req.GrantType)
	switch req.GrantType {
	case GrantTypeClientCredentials:
		if req.UserIdentity != "" {
			return nil, errors.New("oauth: a user identity needs the jwt-bearer grant")
		}
	case GrantTypeJWTBearer:
		claims := req.AssertionClaims
		if req.UserIdentity != "" {
			claims = make(map[string]any, len(req.AssertionClaims)+1)
			for k, v := range req.AssertionClaims {
				claims[k] = v
			}
			claims[ClaimUserIdentity] = req.UserIdentity
		}
		a, err := c.Assertion(tokenEndpoint, claims)
		if err != nil {
			return nil, err
		}
		form.Set("assertion", a)
	default:
		return nil, fmt.Errorf("oauth: unsupported grant type %q", req.GrantType)
	}
	a, err := c.Assertion(tokenEndpoint, nil)
	if err != nil {
		return nil, err
	}
	form.Set("client_assertion_type", ClientAssertionTypeJWTBearer)
	form.Set("client_assertion", a)
	form.Set("client_id", c.ClientID)
	if len(req.Scope) > 0 {
		form.Set("scope", strings.Join(req.Scope, " "))
	}
	if req.AuthorizationBase != "" {
		form.Set("authorization_base", req.AuthorizationBase)
	}
	if req.Resource != "" {
		form.Set("resource", req.Resource)
	}
	return form, nil
}

// Assertion signs a JWT with iss = sub = ClientID, aud = audience, iat, a
// 60-second exp, a random jti and the key's kid: an RFC 7523 §3 client or
// grant assertion. extra claims cannot override those.
func (c *Client) Assertion(audience string, extra map[string]any) (string, error) {
	a, ok := c.Key.Algorithm()
	if !ok {
		return "", errors.New(`oauth: client key has no "alg"`)
	}
	alg, ok := allowedAlgs[a.String()]
	if !ok {
		return "", fmt.Errorf("oauth: client key algorithm %q is not allowed", a)
	}
	kid, ok := c.Key.KeyID()
	if !ok || kid == "" {
		return "", errors.New(`oauth: client key has no "kid"`)
	}
	now := c.now()
	claims := make(map[string]any, len(extra)+6)
	for k, v := range extra {
		claims[k] = v
	}
	claims["iss"] = c.ClientID
	claims["sub"] = c.ClientID
	claims["aud"] = audience
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(assertionLifetime).Unix()
	claims["jti"] = rand.Text()
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("oauth: marshal assertion: %w", err)
	}
	return signCompact(payload, alg, c.Key, kid, "JWT")
}

// signCompact signs payload as a compact JWS with kid and typ headers.
func signCompact(payload []byte, alg jwa.SignatureAlgorithm, key any, kid, typ string) (string, error) {
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, typ); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
		return "", err
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("oauth: sign JWT: %w", err)
	}
	return string(out), nil
}

// Metadata fetches the RFC 8414 metadata of issuer and checks that it names
// the same issuer (RFC 8414 §3.3).
func (c *Client) Metadata(ctx context.Context, issuer string) (*Metadata, error) {
	issuer = trimSlash(issuer)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+MetadataPath, nil)
	if err != nil {
		return nil, fmt.Errorf("oauth: metadata request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauth: metadata of %s: %w", issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oauth: metadata of %s: HTTP %d", issuer, resp.StatusCode)
	}
	var md Metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseSize)).Decode(&md); err != nil {
		return nil, fmt.Errorf("oauth: decode metadata of %s: %w", issuer, err)
	}
	if trimSlash(md.Issuer) != issuer {
		return nil, fmt.Errorf("oauth: metadata of %s names issuer %q", issuer, md.Issuer)
	}
	return &md, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
