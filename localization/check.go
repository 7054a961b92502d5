package localization

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/schakel-nl/schakel/plateau"
)

// Grant-assertion claims in which a Direct Pull's requester presents the
// hit for the holder it consults and the salt of its patient binding.
const (
	AssertionHit  = "localization_hit"
	AssertionSalt = "localization_salt"
)

// Access-token claims that carry a verified hit from token issuance to
// every data access.
const (
	ClaimHitHolder  = "twiin_loc_holder"
	ClaimHitBinding = "twiin_loc_pbd"
	ClaimHitSalt    = "twiin_loc_salt"
)

// HolderCheck is the holding side of the localization function, a
// plateau.Check on Direct Pull requests (Notified Pull is preceded by a
// notification, not a localization):
//
//   - 1: no localization; a hit presented is not looked at;
//   - 2: the request must present a hit of the localization service naming
//     this holder to the requester for the patient asked about;
//   - 3: as 2, but a direct query without a hit is allowed (plateau-3
//     parties query each other directly); a hit presented is checked;
//   - 4: as 2, and the hit must come from the national localization service.
//
// The hit is verified at token issuance and carried in the access token;
// each data access then checks that it names the participant and patient
// of that request.
type HolderCheck struct {
	// Hits verifies hits against the node's localization service; nil when
	// the node has none, and then every request that needs a hit is refused.
	Hits *HitVerifier
	// IsTenant reports whether ura is a participant of this node.
	IsTenant func(ura string) bool
}

// Function implements plateau.Check.
func (*HolderCheck) Function() plateau.Function { return plateau.Localization }

func refusal(p int, format string, args ...any) error {
	return &plateau.Refusal{Function: plateau.Localization, Required: p, Reason: fmt.Sprintf(format, args...)}
}

// CheckToken implements plateau.TokenCheck.
func (c *HolderCheck) CheckToken(ctx context.Context, p int, tc *plateau.TokenContext) error {
	if !tc.DirectPull || p < 2 {
		return nil
	}
	raw, _ := tc.Assertion[AssertionHit].(string)
	salt64, _ := tc.Assertion[AssertionSalt].(string)
	if raw == "" {
		if p == 3 {
			return nil
		}
		return refusal(p, "at localization plateau %d a Direct Pull must follow a localization that named this holder: the grant assertion carries no %s", p, AssertionHit)
	}
	salt, err := base64.RawURLEncoding.DecodeString(salt64)
	if err != nil || len(salt) < 16 || len(salt) > 64 {
		return refusal(p, "%s must be the patient binding's salt, 16 to 64 bytes in base64url", AssertionSalt)
	}
	if c.Hits == nil {
		return refusal(p, "this node has no localization service to check the localization hit against")
	}
	hit, err := c.Hits.Verify(ctx, raw)
	switch {
	case errors.Is(err, ErrInvalidHit):
		return refusal(p, "the localization hit is not valid: %s", strings.TrimPrefix(err.Error(), ErrInvalidHit.Error()+": "))
	case err != nil:
		// Fail closed: a hit that cannot be checked opens nothing.
		return refusal(p, "the localization hit cannot be checked now: the localization service's keys are unavailable")
	case hit.Requester != tc.ClientURA:
		return refusal(p, "the localization hit was issued to organisation %s, not to %s", hit.Requester, tc.ClientURA)
	case c.IsTenant == nil || !c.IsTenant(hit.Holder):
		return refusal(p, "the localization hit names organisation %s, which is not a participant of this node", hit.Holder)
	case p == 4 && hit.Scope != ScopeNational:
		r := refusal(p, "localization plateau 4 requires the national localization service; the hit comes from a %s one", hit.Scope)
		r.(*plateau.Refusal).Delivered = 2
		return r
	}
	if tc.Claims == nil {
		tc.Claims = map[string]any{}
	}
	tc.Claims[ClaimHitHolder] = hit.Holder
	tc.Claims[ClaimHitBinding] = hit.Binding
	tc.Claims[ClaimHitSalt] = salt64
	return nil
}

// CheckAccess implements plateau.AccessCheck.
func (c *HolderCheck) CheckAccess(_ context.Context, p int, ac *plateau.AccessContext) error {
	if !ac.DirectPull || p < 2 {
		return nil
	}
	holder, _ := ac.Token[ClaimHitHolder].(string)
	binding, _ := ac.Token[ClaimHitBinding].(string)
	salt64, _ := ac.Token[ClaimHitSalt].(string)
	if holder == "" {
		if p == 3 {
			return nil
		}
		return refusal(p, "at localization plateau %d a Direct Pull must follow a localization that named this holder; the access token carries no localization hit", p)
	}
	salt, err := base64.RawURLEncoding.DecodeString(salt64)
	switch {
	case err != nil:
		return refusal(p, "the access token's localization hit is malformed")
	case holder != ac.Tenant:
		return refusal(p, "the localization hit named organisation %s, not %s whose data is asked", holder, ac.Tenant)
	case ac.Patient == "" || PatientBinding(salt, ac.Patient) != binding:
		return refusal(p, "the localization hit was for another patient than this request's")
	}
	return nil
}

// PeekHit reads a hit's claims without verifying its signature: for the
// requester, which received it from its own index over mutual TLS and only
// needs to know for whom and until when it holds.
func PeekHit(raw string) (Hit, error) {
	parts := strings.Split(raw, ".")
	if len(raw) > maxHitSize || len(parts) != 3 {
		return Hit{}, fmt.Errorf("%w: not a compact JWS", ErrInvalidHit)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Hit{}, fmt.Errorf("%w: payload", ErrInvalidHit)
	}
	return decodeHit(payload)
}
