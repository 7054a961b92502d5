package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/identity"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// IdentityConfig configures signed user identities (authentication
// plateau 4). The sending side: a participant's system passes the identity
// its user got from the identity issuer (Dezi's flow) on the internal API;
// where it cannot, the node obtains one from Issuer. The checking side:
// Trusted are the issuers whose identities the authorization server
// verifies.
type IdentityConfig struct {
	// Issuer is where the node obtains identities for its users.
	Issuer IdentityIssuerConfig `koanf:"issuer"`
	// Trusted are the identity issuers whose signed identities count at
	// plateau 4, each with the keys to verify them. Their issuer names are
	// trusted as partners.identityissuers are.
	Trusted []oauth.IdentityIssuerConfig `koanf:"trusted"`
}

// IdentityIssuerConfig is an identity issuer service (URL) or, for
// development, a local signer with the keys of `schakel pki
// identity-issuer init` (Name, KeyFile, optionally CertFile).
type IdentityIssuerConfig struct {
	// URL is the base of an identity issuer service (POST URL/identity),
	// asked with the participant's certificate.
	URL string `koanf:"url"`
	// Name is the iss of identities the local signer issues.
	Name string `koanf:"name"`
	// KeyFile is the local signer's private key (PEM).
	KeyFile string `koanf:"keyfile"`
	// CertFile, when set, puts the signer's certificate in the tokens (x5c)
	// instead of its kid.
	CertFile string `koanf:"certfile"`
	// TTL is the lifetime of locally signed identities (default 15m).
	TTL time.Duration `koanf:"ttl"`
}

// Validate names every fault of the identity configuration.
func (c IdentityConfig) Validate() error {
	var errs []error
	is := c.Issuer
	switch {
	case is.URL != "" && (is.KeyFile != "" || is.Name != "" || is.CertFile != ""):
		errs = append(errs, errors.New("identity.issuer: set url (an issuer service) or name and keyfile (a local signer), not both"))
	case is.URL != "":
		if u, err := url.Parse(is.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("identity.issuer.url: %q is not an https URL", is.URL))
		}
	case is.KeyFile != "" || is.Name != "" || is.CertFile != "":
		if is.KeyFile == "" || is.Name == "" {
			errs = append(errs, errors.New("identity.issuer: a local signer needs name (its iss) and keyfile"))
		}
	}
	if is.TTL < 0 || is.TTL > time.Hour {
		errs = append(errs, errors.New("identity.issuer.ttl must be between 0 (15m) and 1h"))
	}
	for i, t := range c.Trusted {
		if err := t.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("identity.trusted[%d]: %w", i, err))
		}
		if u, err := url.Parse(t.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("identity.trusted[%d].issuer: %q is not an https URL", i, t.Issuer))
		}
	}
	return errors.Join(errs...)
}

// trustedIssuerNames adds the trusted identity issuers to the partners'
// list, which the enforcer holds plateau-4 identities to.
func (c IdentityConfig) trustedIssuerNames(partners []string) []string {
	out := slices.Clone(partners)
	for _, t := range c.Trusted {
		if !slices.Contains(out, strings.TrimSuffix(t.Issuer, "/")) && !slices.Contains(out, t.Issuer) {
			out = append(out, t.Issuer)
		}
	}
	return out
}

// loadIdentity reads the trusted issuers' keys (for the authorization
// server) and the node's own issuer.
func (n *Node) loadIdentity(ctx context.Context, clientTLS *tls.Config) ([]oauth.IdentityIssuer, error) {
	c := n.cfg.Identity
	var trusted []oauth.IdentityIssuer
	for i, t := range c.Trusted {
		iss, err := oauth.LoadIdentityIssuer(ctx, t, n.httpClient(clientTLS))
		if err != nil {
			return nil, fmt.Errorf("identity.trusted[%d]: %w", i, err)
		}
		trusted = append(trusted, iss)
	}
	if c.Issuer.KeyFile != "" {
		key, err := pki.LoadOrCreateSigningKey(c.Issuer.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("identity.issuer.keyfile: %w", err)
		}
		signer := &identity.Signer{Issuer: c.Issuer.Name, Key: key, TTL: c.Issuer.TTL}
		if c.Issuer.CertFile != "" {
			pair, err := tls.LoadX509KeyPair(c.Issuer.CertFile, c.Issuer.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("identity.issuer.certfile: %w", err)
			}
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				return nil, fmt.Errorf("identity.issuer.certfile: %w", err)
			}
			signer.Chain = []*x509.Certificate{leaf}
		}
		n.localIdentity = signer
	}
	return trusted, nil
}

// identityIssuer is where the node obtains signed identities for users of
// participant ura; nil when none is configured.
func (n *Node) identityIssuer(ura string) plateau.IdentityIssuer {
	if n.localIdentity != nil {
		return n.localIdentity
	}
	p, ok := n.parts.get(ura)
	if n.cfg.Identity.Issuer.URL == "" || !ok {
		return nil
	}
	// The service issues for the organisation of the certificate presented.
	return &identity.Client{URL: n.cfg.Identity.Issuer.URL, HTTP: p.party.HTTP}
}

// present builds a grant assertion's user part for a participant's request
// to partner, at the authentication plateau agreed with it.
func (n *Node) present(ctx context.Context, from, partner, audience string, c *plateau.Caller) (plateau.Presentation, error) {
	return n.plateaus.Present(ctx, n.identityIssuer(from), from, partner, audience, c)
}

// needsUser reports whether a notification from sender waits for a user
// to accept it: the agreement asks for user authentication (plateau 2 and
// up) and allows no system identity.
func (n *Node) needsUser(_, sender string) bool {
	a, ok := n.plateaus.Agreement(sender)
	return ok && a.Plateau(plateau.Authentication) > plateau.Lowest && !a.SystemIdentity
}

// authenticationPlateau is the user authentication plateau agreed with a
// partner, for the authorization server's refusal of a bad signed identity.
func (n *Node) authenticationPlateau(ura string) (int, bool) {
	a, ok := n.plateaus.Agreement(ura)
	if !ok {
		return 0, false
	}
	return a.Plateau(plateau.Authentication), true
}
