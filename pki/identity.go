package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// File names of the development identity issuer inside the CA directory.
const (
	IdentityIssuerCertFile = "identity-issuer.pem"
	IdentityIssuerKeyFile  = "identity-issuer-key.pem"
	IdentityIssuerJWKSFile = "identity-issuer.jwks.json"
)

// IdentityIssuer is the development stand-in for Dezi: it signs user
// identity tokens (plateau 4) with a key certified by the dev CA, so
// verifiers can trust it by x5c chain to the CA or by its JWKS.
type IdentityIssuer struct {
	Cert *x509.Certificate
	Key  jwk.Key // private, alg ES256, kid = RFC 7638 thumbprint
}

// LoadOrCreateIdentityIssuer returns the identity issuer in dir, creating its
// key, its certificate under ca and its public JWKS on first use, and
// re-certifying the key when the certificate is missing, expired or not
// issued by ca.
func LoadOrCreateIdentityIssuer(dir string, ca *CA) (*IdentityIssuer, error) {
	certPath, keyPath := filepath.Join(dir, IdentityIssuerCertFile), filepath.Join(dir, IdentityIssuerKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		now := time.Now()
		if leaf := pair.Leaf; leaf != nil && leaf.CheckSignatureFrom(ca.Cert) == nil && now.After(leaf.NotBefore) && now.Before(leaf.NotAfter) {
			key, err := LoadOrCreateSigningKey(keyPath)
			if err != nil {
				return nil, err
			}
			return &IdentityIssuer{Cert: leaf, Key: key}, writeIdentityJWKS(dir, key)
		}
	}
	key, err := LoadOrCreateSigningKey(keyPath)
	if err != nil {
		return nil, err
	}
	var pub ecdsa.PublicKey
	if err := jwk.Export(mustPublic(key), &pub); err != nil {
		return nil, fmt.Errorf("pki: identity issuer key: %w", err)
	}
	if pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("pki: identity issuer key in %s is not P-256", keyPath)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Schakel development identity issuer", Organization: []string{"Schakel development PKI"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(defaultLeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: certify identity issuer: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, encodeCertPEM(der), 0o644); err != nil {
		return nil, err
	}
	return &IdentityIssuer{Cert: cert, Key: key}, writeIdentityJWKS(dir, key)
}

func mustPublic(k jwk.Key) jwk.Key {
	pub, err := k.PublicKey()
	if err != nil {
		return k
	}
	return pub
}

// writeIdentityJWKS publishes the issuer's public key for kid-based verifiers.
func writeIdentityJWKS(dir string, key jwk.Key) error {
	set, err := PublicJWKS(key)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, IdentityIssuerJWKSFile), append(js, '\n'), 0o644)
}
