package plateau

import (
	"fmt"
	"slices"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
)

// Claims of a grant assertion (RFC 7523 §2.1) that describe the user behind
// a token request. Twiin does not publish its names; these are ours,
// documented in docs/plateaus.md. The assertion is signed by the requesting
// organisation, so at plateau 3 these claims are the organisation's signed
// statement.
const (
	ClaimUserID         = "user_id"          // UZI/Dezi number (or, at plateau 2, an identifier in the agreed system)
	ClaimUserIDSystem   = "user_id_system"   // naming system of user_id, URI or OID form
	ClaimUserRole       = "user_role"        // role code, e.g. 01.015
	ClaimUserRoleSystem = "user_role_system" // naming system of user_role, URI or OID form
	ClaimUserLoA        = "user_loa"         // level of assurance of the user's authentication (eIDAS URI)
	ClaimUserAMR        = "user_amr"         // authentication methods (RFC 8176), e.g. ["mfa"]
)

// Levels of assurance (eIDAS, as Dezi states them in loa_authn).
const (
	LoALow         = "http://eidas.europa.eu/LoA/low"
	LoASubstantial = "http://eidas.europa.eu/LoA/substantial"
	LoAHigh        = "http://eidas.europa.eu/LoA/high"
)

// UserSource says who vouches for the user data of a request.
type UserSource int

// Who vouches for the user data, weakest first.
const (
	// Unsigned user data: the partner's word, nothing more.
	Unsigned UserSource = iota
	// SignedByOrganisation: inside the grant assertion the requesting
	// organisation signed (plateau 3).
	SignedByOrganisation
	// SignedByIdentityIssuer: a user identity token signed by the identity
	// issuer (Dezi) and verified by the node (plateau 4).
	SignedByIdentityIssuer
)

func (s UserSource) String() string {
	switch s {
	case SignedByOrganisation:
		return "signed by the requesting organisation"
	case SignedByIdentityIssuer:
		return "signed by the identity issuer"
	}
	return "unsigned"
}

// User is what a request says about the person behind it.
type User struct {
	ID         string // UZI/Dezi number or other identifier
	IDSystem   string // canonical naming system of ID
	Role       string // role code
	RoleSystem string // canonical naming system of Role
	LoA        string // level of assurance (eIDAS URI)
	AMR        []string
	// Organisation is the URA the identity says the user acts for; empty
	// when the identity does not say.
	Organisation string
	// Issuer signed the identity; set only with SignedByIdentityIssuer.
	Issuer string
	Source UserSource
	// System marks the requesting organisation's system acting without a
	// user (ID is its UZI number), where the agreement allows that.
	System bool
}

// StrongAuthentication reports whether the user data declares two-factor
// authentication: eIDAS substantial or high, or RFC 8176 "mfa".
func (u *User) StrongAuthentication() bool {
	return u.LoA == LoASubstantial || u.LoA == LoAHigh || slices.Contains(u.AMR, "mfa")
}

// UserFromClaims reads the user claims of a verified grant assertion; nil
// when it carries none. The result is SignedByOrganisation: the node only
// passes claims whose signature it verified.
func UserFromClaims(claims map[string]any) (*User, error) {
	u := &User{Source: SignedByOrganisation}
	var err error
	str := func(name string, into *string) {
		v, ok := claims[name]
		if !ok || err != nil {
			return
		}
		s, isStr := v.(string)
		if !isStr {
			err = fmt.Errorf("claim %s must be a string", name)
			return
		}
		*into = s
	}
	str(ClaimUserID, &u.ID)
	str(ClaimUserIDSystem, &u.IDSystem)
	str(ClaimUserRole, &u.Role)
	str(ClaimUserRoleSystem, &u.RoleSystem)
	str(ClaimUserLoA, &u.LoA)
	if err != nil {
		return nil, err
	}
	if v, ok := claims[ClaimUserAMR]; ok {
		if u.AMR, err = stringList(v); err != nil {
			return nil, fmt.Errorf("claim %s: %w", ClaimUserAMR, err)
		}
	}
	if u.ID == "" && u.Role == "" && u.LoA == "" && len(u.AMR) == 0 {
		return nil, nil
	}
	u.IDSystem = nl.CanonicalSystem(u.IDSystem)
	u.RoleSystem = nl.CanonicalSystem(u.RoleSystem)
	return u, nil
}

// SignedUser builds the user from the claims of an identity token (Dezi
// style: Dezi_id or uzi_id, loa_authn, relations[{ura, roles}]) whose
// signature the caller verified against issuer's keys. ura is the
// requesting organisation: the relation for it gives the roles. role picks
// the acting role when the relation lists several; empty picks the only one.
func SignedUser(issuer string, claims map[string]any, ura, role string) (*User, error) {
	u := &User{Issuer: issuer, Source: SignedByIdentityIssuer, IDSystem: nl.SystemUZIPers, RoleSystem: nl.SystemUZIRole}
	for _, k := range []string{"dezi_nummer", "Dezi_id", "dezi_id", "uzi_id"} {
		if s, ok := claims[k].(string); ok && s != "" {
			u.ID = s
			break
		}
	}
	for _, k := range []string{"loa_authn", "loa_Dezi", "loa_dezi"} {
		if s, ok := claims[k].(string); ok && s != "" {
			u.LoA = s
			break
		}
	}
	rels, _ := claims["relations"].([]any)
	for _, r := range rels {
		m, _ := r.(map[string]any)
		if m == nil || m["ura"] != ura {
			continue
		}
		u.Organisation = ura
		roles, err := stringList(m["roles"])
		if err != nil {
			return nil, fmt.Errorf("identity token relation %s: roles: %w", ura, err)
		}
		switch {
		case role != "" && slices.Contains(roles, role):
			u.Role = role
		case role != "":
			return nil, fmt.Errorf("identity token: role %s is not one of the user's roles at %s", role, ura)
		case len(roles) == 1:
			u.Role = roles[0]
		case len(roles) > 1:
			return nil, fmt.Errorf("identity token: the user has %d roles at %s; the request must name the acting role", len(roles), ura)
		}
	}
	return u, nil
}

func stringList(v any) ([]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case []string:
		return t, nil
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("expected a list of strings")
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		return []string{t}, nil
	}
	return nil, fmt.Errorf("expected a list of strings")
}

// UserFromIdentity converts the user identity the authorization server
// verified (oauth.GrantRequest.User, from the grant assertion's
// user_identity token) into the enforcer's User.
func UserFromIdentity(id *oauth.UserIdentity) *User {
	if id == nil {
		return nil
	}
	u := &User{ID: id.UZI, IDSystem: nl.SystemUZIPers, Role: id.RoleCode, RoleSystem: nl.SystemUZIRole,
		Organisation: id.URA, Issuer: id.Issuer, Source: SignedByIdentityIssuer}
	switch id.Assurance {
	case oauth.AssuranceLow:
		u.LoA = LoALow
	case oauth.AssuranceSubstantial:
		u.LoA = LoASubstantial
	case oauth.AssuranceHigh:
		u.LoA = LoAHigh
	}
	return u
}
