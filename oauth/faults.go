package oauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/internal/faults"
)

// faultyAssertion is what a broken authorization server makes of an
// assertion parseJWT refused for its algorithm: with faults.AssertionAlgNone
// it takes an unsigned one, with faults.AssertionHMAC one signed HS256 with
// the client's public key as secret. It returns nil when no fault applies;
// otherwise the claims and the check that replaces the signature's. Only
// the module's tests switch these on (internal/faults), to prove that the
// validation kit catches them.
func (s *Server) faultyAssertion(raw string) (*unverifiedJWT, func(jwk.Set) error) {
	if !s.cfg.Faults.Any() {
		return nil, nil
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	p, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil || json.Unmarshal(h, &hdr) != nil {
		return nil, nil
	}
	t := &unverifiedJWT{raw: []byte(raw), kid: hdr.Kid}
	if json.Unmarshal(p, &t.claims) != nil || t.claims == nil || t.readRegisteredClaims() != nil {
		return nil, nil
	}
	switch {
	case strings.EqualFold(hdr.Alg, "none") && s.cfg.Faults.Has(faults.AssertionAlgNone):
		return t, func(jwk.Set) error { return nil }
	case hdr.Alg == "HS256" && s.cfg.Faults.Has(faults.AssertionHMAC):
		return t, func(keys jwk.Set) error {
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				return err
			}
			// The classic confusion: any of the client's public keys, in
			// its JSON form, taken as the HMAC secret.
			for i := range keys.Len() {
				k, _ := keys.Key(i)
				secret, err := json.Marshal(k)
				if err != nil {
					continue
				}
				mac := hmac.New(sha256.New, secret)
				mac.Write([]byte(parts[0] + "." + parts[1]))
				if hmac.Equal(mac.Sum(nil), sig) {
					return nil
				}
			}
			return errors.New("no key of the client verifies the HMAC")
		}
	}
	return nil, nil
}
