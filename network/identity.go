package network

import (
	"fmt"
	"path/filepath"

	"github.com/schakel-nl/schakel/identity"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
)

// identityOrg is the development identity issuer (the Dezi role).
var identityOrg = Participant{URA: "90000993", Name: "Schakel development identity issuer", SystemUZI: "900009933", AGB: "00000000"}

// DemoUser is the hospital's specialist who accepts referrals and consults
// in the demo: UZI number, role (01.015 medical specialist) and an eIDAS
// high login, as the hospital's system passes them on the internal API.
var DemoUser = struct{ UZI, Role, LoA string }{UZI: "900012345", Role: "01.015", LoA: "http://eidas.europa.eu/LoA/high"}

// startIdentityIssuer serves the development identity issuer over mTLS: it
// signs with the dev PKI's identity issuer key (`schakel pki
// identity-issuer init`), its iss is its own https URL, and every node
// trusts it by the JWKS file the PKI writes.
func (nw *Network) startIdentityIssuer() error {
	pkiDir := filepath.Join(nw.opts.DataDir, "pki")
	iss, err := pki.LoadOrCreateIdentityIssuer(pkiDir, nw.CA)
	if err != nil {
		return fmt.Errorf("identity issuer: %w", err)
	}
	dir := filepath.Join(nw.opts.DataDir, "identity")
	cert, err := nw.issue(dir, "identity", identityOrg)
	if err != nil {
		return err
	}
	svc, err := nw.listen("identity-issuer", cert)
	if err != nil {
		return err
	}
	srv := &identity.Server{Signer: &identity.Signer{Issuer: svc.url, Key: iss.Key}, Logger: nw.opts.Logger.With("component", "identity")}
	svc.srv.Handler = srv.Handler()
	nw.identityURL = svc.url
	nw.identityJWKS = filepath.Join(pkiDir, pki.IdentityIssuerJWKSFile)
	return nil
}

// identityConfig points a node at the identity issuer, to obtain
// identities for its users and to verify its partners'. Without an issuer
// the nodes get no identity settings: plateau 4 is then unavailable.
func (nw *Network) identityConfig() node.IdentityConfig {
	if nw.identityURL == "" {
		return node.IdentityConfig{}
	}
	return node.IdentityConfig{Issuer: node.IdentityIssuerConfig{URL: nw.identityURL},
		Trusted: []oauth.IdentityIssuerConfig{{Issuer: nw.identityURL, JWKSFile: nw.identityJWKS}}}
}

// IdentityIssuerURL is the development identity issuer's base URL.
func (nw *Network) IdentityIssuerURL() string { return nw.identityURL }
