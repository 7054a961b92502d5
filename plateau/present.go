package plateau

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
)

// eidasLoA opens the eIDAS level-of-assurance URIs.
const eidasLoA = "http://eidas.europa.eu/LoA/"

// ClaimSystemID names, in a grant assertion, the participant's system that
// asks without a user (the UZI number of its server certificate), where the
// agreement allows a system identity (PartnerConfig.SystemIdentity).
const ClaimSystemID = "system_id"

// Caller is the user on whose behalf the node asks a partner for a token,
// as the participant's system passes it on the internal API of every
// pattern (Direct Pull, the acceptance of a Notified Pull). What of it
// travels depends on the authentication plateau agreed with the partner;
// see Enforcer.Present.
type Caller struct {
	ID         string   `json:"id"`                   // UZI number (at plateau 2 an AGB code also serves)
	IDSystem   string   `json:"idSystem,omitempty"`   // naming system of ID; the UZI number system when empty
	Role       string   `json:"role"`                 // UZI role code, e.g. 01.015
	RoleSystem string   `json:"roleSystem,omitempty"` // naming system of Role; the UZI role codes when empty
	LoA        string   `json:"loa,omitempty"`        // eIDAS level of assurance of the user's login (URI or low/substantial/high)
	AMR        []string `json:"amr,omitempty"`        // RFC 8176 authentication methods, e.g. ["mfa"]
	// IdentityToken is a signed user identity (Dezi's "verklaring") the
	// participant's system obtained from the identity issuer when the user
	// logged in. Sent at authentication plateau 4 only; without it the node
	// asks its configured identity issuer.
	IdentityToken string `json:"identityToken,omitempty"`
	// System is the participant's system acting without a user (its UZI
	// number in ID). The node sets it, never the internal API's JSON.
	System bool `json:"-"`
}

// IsZero reports whether the caller names nobody.
func (c *Caller) IsZero() bool {
	return c == nil || (c.ID == "" && c.Role == "" && c.IdentityToken == "" && !c.System)
}

// IdentityRequest asks an identity issuer for a signed user identity.
type IdentityRequest struct {
	UZI      string // the user's UZI/Dezi number
	Role     string // UZI role code
	URA      string // the organisation the user acts for
	LoA      string // eIDAS URI of the user's login
	Audience string // the partner's token endpoint, where the identity is verified
}

// IdentityIssuer obtains signed user identities (plateau 4): the identity
// issuer service (Dezi, or the development stand-in) or a local signer.
type IdentityIssuer interface {
	IssueIdentity(ctx context.Context, req IdentityRequest) (string, error)
}

// PresentFunc is Enforcer.Present with the node's identity issuer bound:
// what the patterns call to build their grant assertions.
type PresentFunc func(ctx context.Context, from, partner, audience string, c *Caller) (Presentation, error)

// Presentation is what the node puts in a grant assertion to a partner.
type Presentation struct {
	Plateau      int            // the authentication plateau agreed with the partner
	Claims       map[string]any // user (or system) claims of the grant assertion
	UserIdentity string         // signed user identity (plateau 4), else empty
	User, Role   string         // who, for the audit record
}

// ErrCaller marks a caller that cannot meet the plateau agreed with the
// partner: the participant's system must send more (a 422 on the internal
// API). It wraps a *Refusal naming function and plateau.
var ErrCaller = errors.New("the user given does not meet the agreed authentication plateau")

// Present builds the user part of the grant assertion that organisation
// from sends to partner, for the authentication plateau agreed with it:
// 1 the user claims when given; 2 user id and role in agreed code systems
// and the strong-authentication claim; 3 the same, with the user by UZI
// number (the grant assertion is the organisation's signature); 4 also a
// user identity signed by the identity issuer — the caller's own token, or
// one iss issues for audience (the partner's token endpoint). A caller
// short of the plateau is an error wrapping ErrCaller and a *Refusal;
// what the agreement does not ask for is not sent.
//
// A nil Enforcer knows no agreement: it presents at plateau 1.
func (e *Enforcer) Present(ctx context.Context, iss IdentityIssuer, from, partner, audience string, c *Caller) (Presentation, error) {
	p := Lowest
	if e != nil {
		if a, ok := e.Agreement(partner); ok {
			p = a.Plateau(Authentication)
		}
	}
	out := Presentation{Plateau: p}
	if c.IsZero() {
		if p > Lowest {
			return out, callerError(p, partner, "the request names no user: give the user's id, role and level of assurance")
		}
		return out, nil
	}
	cc := *c
	if cc.IDSystem == "" {
		cc.IDSystem = nl.SystemUZIPers
	}
	if cc.RoleSystem == "" {
		cc.RoleSystem = nl.SystemUZIRole
	}
	if cc.LoA != "" {
		// low/substantial/high become the eIDAS URIs the verifier reads.
		if a, err := oauth.ParseAssurance(cc.LoA); err == nil {
			cc.LoA = eidasLoA + a.String()
		}
	}
	if cc.System {
		if p > Lowest && !e.allowsSystem(partner) {
			return out, callerError(p, partner, "the agreement does not allow a system identity: a user must accept")
		}
		if p >= Highest {
			return out, callerError(p, partner, "a system identity is not a user identity signed by the identity issuer")
		}
		out.Claims = map[string]any{ClaimSystemID: cc.ID}
		out.User = cc.ID
		return out, nil
	}
	u := &User{ID: cc.ID, IDSystem: nl.CanonicalSystem(cc.IDSystem), Role: cc.Role, RoleSystem: nl.CanonicalSystem(cc.RoleSystem),
		LoA: cc.LoA, AMR: cc.AMR, Source: SignedByOrganisation}
	// The partner judges the request as its enforcer would; this side
	// refuses early what it would refuse, with the same reason.
	tc := TokenContext{ClientURA: from, GrantType: oauth.GrantTypeJWTBearer, Assertion: map[string]any{"sub": from}}
	for q := 2; q <= min(p, 3); q++ {
		if why := e.unmet(q, tc, u, nil, false); why != "" {
			return out, callerError(p, partner, why)
		}
	}
	out.User, out.Role = u.ID, u.Role
	out.Claims = map[string]any{ClaimUserID: u.ID, ClaimUserIDSystem: u.IDSystem, ClaimUserRole: u.Role, ClaimUserRoleSystem: u.RoleSystem}
	if u.LoA != "" {
		out.Claims[ClaimUserLoA] = u.LoA
	}
	if len(u.AMR) > 0 {
		out.Claims[ClaimUserAMR] = slices.Clone(u.AMR)
	}
	if p < Highest {
		return out, nil
	}
	switch {
	case u.IDSystem != nl.SystemUZIPers:
		return out, callerError(p, partner, "the user must be identified by UZI number ("+nl.SystemUZIPers+")")
	case cc.IdentityToken != "":
		if why := checkOwnIdentity(cc.IdentityToken, from, u, time.Now()); why != "" {
			return out, callerError(p, partner, why)
		}
		out.UserIdentity = cc.IdentityToken
	case iss == nil:
		return out, callerError(p, partner, "user authentication at plateau 4 needs a signed user identity: pass identityToken, or configure identity.issuer on this node")
	case u.LoA != LoAHigh:
		return out, callerError(p, partner, fmt.Sprintf("the user's login must be eIDAS high (%s) for a signed identity at plateau 4", LoAHigh))
	default:
		tok, err := iss.IssueIdentity(ctx, IdentityRequest{UZI: u.ID, Role: u.Role, URA: from, LoA: u.LoA, Audience: audience})
		if err != nil {
			return out, fmt.Errorf("plateau: obtain the user's signed identity from the identity issuer: %w", err)
		}
		out.UserIdentity = tok
	}
	return out, nil
}

func callerError(p int, partner, why string) error {
	return fmt.Errorf("%w: %w", ErrCaller, &Refusal{Function: Authentication, Required: p, Partner: partner, Reason: why})
}

// allowsSystem reports whether the agreement with partner allows a system
// identity instead of a user.
func (e *Enforcer) allowsSystem(partner string) bool {
	if e == nil {
		return false
	}
	a, ok := e.Agreement(partner)
	return ok && a.SystemIdentity
}

// checkOwnIdentity looks, without verifying (the partner does), at a user
// identity the participant's system passed: it must be for the user given,
// for the organisation sending it, and not expired. Empty when it fits.
func checkOwnIdentity(raw, ura string, u *User, now time.Time) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "identityToken is not a compact JWT"
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "identityToken is not a compact JWT"
	}
	var c struct {
		Exp  float64 `json:"exp"`
		UZI  string  `json:"dezi_nummer"`
		Role string  `json:"rol_code"`
		URA  string  `json:"abonnee_nummer"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "identityToken's claims are not a JSON object"
	}
	switch {
	case c.URA != ura:
		return fmt.Sprintf("identityToken is for organisation %q, not for %s", c.URA, ura)
	case c.UZI != u.ID:
		return "identityToken is for another user than the id given"
	case u.Role != "" && c.Role != u.Role:
		return fmt.Sprintf("identityToken carries role %s, not the role given (%s)", c.Role, u.Role)
	case c.Exp == 0 || now.After(time.Unix(int64(c.Exp), 0)):
		return "identityToken has expired: obtain a fresh one from the identity issuer"
	}
	return ""
}
