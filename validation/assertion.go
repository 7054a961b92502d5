package validation

import (
	"fmt"
	"slices"
)

// allowedAlgs are the JWS algorithms seen in practice that the agreement
// accepts (SPEC §4): never none, never HMAC.
var allowedAlgs = []string{"PS256", "ES256", "ES384", "ES512", "RS256"}

// CheckTokenRequest judges a token request the node sent to the kit's
// authorization server: RFC 7523 §2.2 client authentication (and, for the
// jwt-bearer grant, the §2.1 grant assertion) for clientURA at audience.
func CheckTokenRequest(in Inbound, clientURA, audience string) Problems {
	var ps Problems
	f := FormOf(in)
	ps.Check(f.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
		"client_assertion_type %q, want urn:ietf:params:oauth:client-assertion-type:jwt-bearer", f.Get("client_assertion_type"))
	ps.Check(in.PeerURA == clientURA, "the request came over a certificate of URA %q, not %s", in.PeerURA, clientURA)
	checkJWT := func(name, raw string, client bool) {
		if raw == "" {
			ps.Add("no %s", name)
			return
		}
		h, err := UnverifiedHeader(raw)
		if err != nil {
			ps.Add("%s is not a compact JWS: %v", name, err)
			return
		}
		alg, _ := h["alg"].(string)
		ps.Check(slices.Contains(allowedAlgs, alg), "%s alg %q is not one of %v", name, alg, allowedAlgs)
		kid, _ := h["kid"].(string)
		ps.Check(kid != "", "%s has no kid header", name)
		c, err := UnverifiedClaims(raw)
		if err != nil {
			ps.Add("%s claims: %v", name, err)
			return
		}
		if client {
			ps.Check(c["iss"] == clientURA, "%s iss %v, want the URA %s", name, c["iss"], clientURA)
		}
		ps.Check(c["sub"] == clientURA, "%s sub %v, want the URA %s", name, c["sub"], clientURA)
		ps.Check(audienceHas(c["aud"], audience), "%s aud %v does not name the token endpoint %s", name, c["aud"], audience)
		exp, _ := c["exp"].(float64)
		iat, _ := c["iat"].(float64)
		ps.Check(exp > 0 && iat > 0 && exp > iat, "%s needs exp after iat", name)
		ps.Check(exp-iat <= 300, "%s lives %0.fs; at most 5 minutes", name, exp-iat)
		jti, _ := c["jti"].(string)
		ps.Check(jti != "", "%s has no jti", name)
	}
	checkJWT("client_assertion", f.Get("client_assertion"), true)
	if f.Get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		checkJWT("grant assertion", f.Get("assertion"), false)
	}
	return ps
}

func audienceHas(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, v := range a {
			if v == want {
				return true
			}
		}
	}
	return false
}

// Describe is a one-line account of a request, for verdict details.
func (in Inbound) Describe() string {
	return fmt.Sprintf("%s %s → %d", in.Method, in.Path, in.Status)
}

// AudienceHas reports whether a JWT aud claim (string or array) names want.
func AudienceHas(aud any, want string) bool { return audienceHas(aud, want) }
