package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// LoadOrCreateSigningKey returns the JWT signing key stored at path (PEM,
// PKCS#8), creating an ECDSA P-256 key there (mode 0600) on first use.
// Signing keys are kept apart from TLS keys so either can rotate alone.
//
// The returned jwk.Key carries alg, use "sig" and kid = its RFC 7638
// thumbprint. Callers sign with the key's own alg rather than a constant, so
// RSA (PS256) keys loaded from the same kind of file work unchanged.
func LoadOrCreateSigningKey(path string) (jwk.Key, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		signer, err := decodeKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("%w (in %s)", err, path)
		}
		return SigningJWK(signer)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("pki: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate signing key: %w", err)
	}
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(path, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return SigningJWK(key)
}

// SigningAlgorithm returns the JWS algorithm Schakel uses for a key:
// ES256/ES384/ES512 by ECDSA curve, PS256 for RSA (RSASSA-PSS, as the
// national agreements prefer over PKCS#1 v1.5).
func SigningAlgorithm(pub crypto.PublicKey) (jwa.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256(), nil
		case elliptic.P384():
			return jwa.ES384(), nil
		case elliptic.P521():
			return jwa.ES512(), nil
		}
		return jwa.EmptySignatureAlgorithm(), fmt.Errorf("pki: unsupported ECDSA curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return jwa.EmptySignatureAlgorithm(), fmt.Errorf("pki: RSA key of %d bits is too small", k.N.BitLen())
		}
		return jwa.PS256(), nil
	}
	return jwa.EmptySignatureAlgorithm(), fmt.Errorf("pki: unsupported signing key type %T", pub)
}

// SigningJWK wraps a private key as a jwk.Key with alg (SigningAlgorithm),
// use "sig" and kid set to the base64url RFC 7638 SHA-256 thumbprint.
func SigningJWK(signer crypto.Signer) (jwk.Key, error) {
	alg, err := SigningAlgorithm(signer.Public())
	if err != nil {
		return nil, err
	}
	key, err := jwk.Import(signer)
	if err != nil {
		return nil, fmt.Errorf("pki: import signing key: %w", err)
	}
	// The thumbprint covers only the required public members (RFC 7638 §3.2),
	// so it is computed before alg/use are set and is stable across them.
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("pki: thumbprint: %w", err)
	}
	for name, value := range map[string]any{
		jwk.AlgorithmKey: alg,
		jwk.KeyUsageKey:  jwk.ForSignature,
		jwk.KeyIDKey:     base64.RawURLEncoding.EncodeToString(tp),
	} {
		if err := key.Set(name, value); err != nil {
			return nil, fmt.Errorf("pki: set %s: %w", name, err)
		}
	}
	return key, nil
}

// PublicJWKS returns the public halves of keys as a JWK Set, for publishing
// at a jwks_uri. Symmetric keys are refused: they have no public half.
func PublicJWKS(keys ...jwk.Key) (jwk.Set, error) {
	set := jwk.NewSet()
	for i, k := range keys {
		if k == nil {
			return nil, fmt.Errorf("pki: key %d is nil", i)
		}
		if k.KeyType() == jwa.OctetSeq() {
			return nil, fmt.Errorf("pki: key %d is symmetric and has no public form", i)
		}
		pub, err := k.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("pki: public key %d: %w", i, err)
		}
		if err := set.AddKey(pub); err != nil {
			return nil, fmt.Errorf("pki: add key %d: %w", i, err)
		}
	}
	return set, nil
}
