package plateau

import (
	"fmt"

	"github.com/schakel-nl/schakel/oauth"
)

// systemFromClaims reads a system identity (ClaimSystemID) from a verified
// grant assertion that names no user; nil when there is none.
func systemFromClaims(claims map[string]any) *User {
	id, _ := claims[ClaimSystemID].(string)
	if id == "" {
		return nil
	}
	return &User{ID: id, System: true, Source: SignedByOrganisation}
}

// unmetSystem says why a system identity does not meet plateau p: it
// stands in for a user at plateaus 2–3 only where the agreement allows it,
// signed by the organisation at 3, and never at 4, where only the identity
// issuer's signature on a user counts.
func unmetSystem(p int, tc TokenContext, allowed bool) string {
	switch {
	case p < 2:
		return ""
	case !allowed:
		return fmt.Sprintf("user authentication at plateau %d needs a user; the agreement does not allow a system identity (%s)", p, ClaimSystemID)
	case p == 3 && (tc.GrantType != oauth.GrantTypeJWTBearer || tc.Assertion == nil || tc.Assertion["sub"] != tc.ClientURA):
		return "a system identity at plateau 3 must be in a grant assertion signed by the requesting organisation"
	case p >= 4:
		return "user authentication at plateau 4 needs a user identity signed by the identity issuer; a system identity is not one"
	}
	return ""
}
