package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

func TestLoadOrCreateSigningKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "node-a-signing-key.pem")
	key, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %o, want 600", perm)
	}
	if alg, ok := key.Algorithm(); !ok || alg.String() != "ES256" {
		t.Errorf("alg = %v, want ES256", alg)
	}
	if use, ok := key.KeyUsage(); !ok || use != "sig" {
		t.Errorf("use = %q, want sig", use)
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := key.KeyID()
	if want := base64.RawURLEncoding.EncodeToString(tp); kid != want {
		t.Errorf("kid = %q, want RFC 7638 thumbprint %q", kid, want)
	}

	again, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !jwk.Equal(key, again) {
		t.Fatal("second call returned a different key")
	}

	// The public set verifies what the private key signs, with the
	// algorithm taken from the key rather than from the caller.
	set, err := PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	alg, _ := key.Algorithm()
	signed, err := jws.Sign([]byte("payload"), jws.WithKey(alg, key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(signed, jws.WithKeySet(set)); err != nil {
		t.Fatalf("verify with public JWKS: %v", err)
	}
}

func TestPublicJWKSHasNoPrivateMembers(t *testing.T) {
	key, err := LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 1 {
		t.Fatalf("keys = %d, want 1", len(doc.Keys))
	}
	k := doc.Keys[0]
	if _, ok := k["d"]; ok {
		t.Fatal("public JWKS contains the private member d")
	}
	for _, m := range []string{"kid", "alg", "use", "x", "y", "crv"} {
		if _, ok := k[m]; !ok {
			t.Errorf("public key lacks %q: %s", m, raw)
		}
	}
}

func TestSigningJWKRSAUsesPS256(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key, err := SigningJWK(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	if alg, _ := key.Algorithm(); alg != jwa.PS256() {
		t.Fatalf("alg = %v, want PS256", alg)
	}
}
