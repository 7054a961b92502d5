// Package identity obtains signed user identities for plateau-4 user
// authentication on the sending side: from an identity issuer service over
// HTTPS (Client), or from a local key (Signer, the development identity
// issuer of `schakel pki identity-issuer init`). Server is the development
// stand-in for such a service, in the same wire shape Client speaks.
//
// Dezi's real flow is the user logging in at Dezi and the participant's
// system receiving the signed "verklaring"; a node then gets that token on
// its internal API (plateau.Caller.IdentityToken) and needs no issuer of
// its own. An issuer configured on the node serves systems that cannot
// pass one, and the demo network.
package identity

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// Path is where an identity issuer service takes requests (POST), relative
// to its base URL; its public keys are at JWKSPath.
const (
	Path     = "/identity"
	JWKSPath = "/.well-known/jwks.json"
)

// Request is the body of a POST to Path: the claims wanted in the identity
// token, named as in the token (oauth.ClaimDeziNumber and the rest).
type Request struct {
	UZI      string `json:"dezi_nummer"`
	Role     string `json:"rol_code"`
	URA      string `json:"abonnee_nummer"`
	LoA      string `json:"loa_authn"`
	Audience string `json:"aud"`
}

// Response is the answer: the signed identity token and its lifetime.
type Response struct {
	IdentityToken string `json:"identity_token"`
	ExpiresIn     int64  `json:"expires_in"`
}

// maxResponse bounds what Client reads from a service.
const maxResponse = 64 << 10

// Client asks an identity issuer service at URL. HTTP presents the
// participant's certificate: the service issues only for the organisation
// the certificate names.
type Client struct {
	URL  string
	HTTP *http.Client
}

// IssueIdentity implements plateau.IdentityIssuer.
func (c *Client) IssueIdentity(ctx context.Context, req plateau.IdentityRequest) (string, error) {
	body, _ := json.Marshal(Request{UZI: req.UZI, Role: req.Role, URA: req.URA, LoA: req.LoA, Audience: req.Audience})
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+Path, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("identity: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return "", fmt.Errorf("identity: issuer %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", fmt.Errorf("identity: read the issuer's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var p struct{ Detail string }
		_ = json.Unmarshal(b, &p)
		return "", fmt.Errorf("identity: issuer %s refused: %s: %s", c.URL, resp.Status, p.Detail)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return "", fmt.Errorf("identity: issuer %s answered %q, not JSON", c.URL, mt)
	}
	var out Response
	if err := json.Unmarshal(b, &out); err != nil || out.IdentityToken == "" {
		return "", fmt.Errorf("identity: issuer %s: the answer carries no identity_token", c.URL)
	}
	return out.IdentityToken, nil
}

// Signer issues identity tokens with a local key: the development
// identity issuer, or a node that is its own organisation's issuer.
type Signer struct {
	Issuer string              // iss of the tokens; verifiers trust it by this name
	Key    jwk.Key             // private, alg PS256/ES256/RS256, kid set unless Chain is given
	Chain  []*x509.Certificate // when set, tokens carry x5c instead of kid
	TTL    time.Duration       // default 15 minutes
	Now    func() time.Time
}

// IssueIdentity implements plateau.IdentityIssuer.
func (s *Signer) IssueIdentity(_ context.Context, req plateau.IdentityRequest) (string, error) {
	if req.UZI == "" || req.Role == "" || req.URA == "" || req.Audience == "" {
		return "", errors.New("identity: a user identity needs the UZI number, role, organisation and audience")
	}
	a, err := oauth.ParseAssurance(req.LoA)
	if err != nil {
		return "", fmt.Errorf("identity: %w", err)
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	return oauth.SignUserIdentity(s.Key, s.Chain, oauth.UserIdentityClaims{Issuer: s.Issuer, Audience: req.Audience,
		UZI: req.UZI, RoleCode: req.Role, URA: req.URA, Assurance: a, IssuedAt: now, TTL: s.TTL})
}
