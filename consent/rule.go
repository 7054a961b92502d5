package consent

import (
	"errors"
	"fmt"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// Effect is what a registration says: permit or deny.
type Effect string

// The two effects of a registration.
const (
	Permit Effect = "permit"
	Deny   Effect = "deny"
)

// Sources of a registration (who recorded it).
const (
	SourceProvider = "provider" // plateau 1: the provider's own system
	SourcePortal   = "portal"   // plateau 2+: a consent portal
)

// Registration is one consent statement of a patient: permit or deny that a
// data holder (an URA, a facility-type category, or both) makes treatment
// data available to a requester (an URA, a facility type, an UZI role, or
// any combination; none means every requester), for a purpose, within a
// validity period. Empty scope fields mean "any".
type Registration struct {
	ID            string    `json:"id,omitempty"`
	PatientBSN    string    `json:"patient"`
	Effect        Effect    `json:"effect"`
	HolderURA     string    `json:"holderUra,omitempty"`
	HolderType    string    `json:"holderType,omitempty"`
	RequesterURA  string    `json:"requesterUra,omitempty"`
	RequesterType string    `json:"requesterType,omitempty"`
	RequesterRole string    `json:"requesterRole,omitempty"`
	Purpose       string    `json:"purpose,omitempty"`
	ValidFrom     time.Time `json:"validFrom,omitzero"`
	ValidUntil    time.Time `json:"validUntil,omitzero"` // zero: open-ended; exclusive
	Source        string    `json:"source,omitempty"`
	RegisteredBy  string    `json:"registeredBy,omitempty"` // URA of the provider or portal
	Created       time.Time `json:"created,omitzero"`
	Revoked       time.Time `json:"revoked,omitzero"` // zero: in force (or superseded never)
}

// ErrInvalidRegistration: a registration is incomplete or malformed.
var ErrInvalidRegistration = errors.New("invalid consent registration")

// Validate fills defaults (purpose TREAT) and checks r. A registration must
// name its data holder (an URA or a category): Mitz records consent per
// data-holder category, and a patient-wide blanket permit is not a consent
// anyone registers.
func (r *Registration) Validate() error {
	if r.Purpose == "" {
		r.Purpose = PurposeTreatment
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRegistration, fmt.Sprintf(format, a...))
	}
	if err := nl.ValidateBSN(r.PatientBSN); err != nil {
		return bad("patient: not a valid BSN")
	}
	if r.Effect != Permit && r.Effect != Deny {
		return bad("effect must be permit or deny")
	}
	if r.HolderURA == "" && r.HolderType == "" {
		return bad("a data holder URA or data holder category (facility type) is required")
	}
	for _, u := range []struct{ name, v string }{{"holder URA", r.HolderURA}, {"requester URA", r.RequesterURA}} {
		if u.v != "" && nl.ValidateURA(u.v) != nil {
			return bad("%s must be 8 digits", u.name)
		}
	}
	for _, c := range []struct{ name, v string }{
		{"holder type", r.HolderType}, {"requester type", r.RequesterType},
		{"requester role", r.RequesterRole}, {"purpose", r.Purpose},
	} {
		if c.v != "" && !validCode(c.v) {
			return bad("%s is malformed", c.name)
		}
	}
	if !r.ValidUntil.IsZero() && !r.ValidUntil.After(r.ValidFrom) {
		return bad("validUntil must be after validFrom")
	}
	return nil
}

// inForce reports whether r applies at t: not revoked, and
// ValidFrom <= t < ValidUntil.
func (r Registration) inForce(t time.Time) bool {
	if !r.Revoked.IsZero() {
		return false
	}
	if !r.ValidFrom.IsZero() && t.Before(r.ValidFrom) {
		return false
	}
	return r.ValidUntil.IsZero() || t.Before(r.ValidUntil)
}

// matches reports whether r's scope covers q (empty fields match anything).
func (r Registration) matches(q Question) bool {
	return r.PatientBSN == q.PatientBSN &&
		r.Purpose == q.Purpose &&
		(r.HolderURA == "" || r.HolderURA == q.DataHolderURA) &&
		(r.HolderType == "" || r.HolderType == q.DataHolderType) &&
		(r.RequesterURA == "" || r.RequesterURA == q.RequesterURA) &&
		(r.RequesterType == "" || r.RequesterType == q.RequesterType) &&
		(r.RequesterRole == "" || r.RequesterRole == q.RequesterRole)
}

// Specificity weighs how narrowly r names its parties: an URA counts 2, a
// category (facility type or role) 1, on each side. The most specific
// registrations decide (see Evaluate).
func (r Registration) Specificity() int {
	s := 0
	if r.HolderURA != "" {
		s += 2
	}
	if r.HolderType != "" {
		s++
	}
	if r.RequesterURA != "" {
		s += 2
	}
	if r.RequesterType != "" {
		s++
	}
	if r.RequesterRole != "" {
		s++
	}
	return s
}

// Evaluate is the decision rule, over a patient's registrations at time t:
//
//  1. Only registrations in force at t whose scope covers q count.
//  2. None: Deny. Consent is opt-in: nothing registered is no consent.
//  3. Otherwise the most specific ones decide (Specificity), so a patient
//     can deny a category and permit one provider in it, or the reverse.
//  4. Among equally specific ones, deny overrides permit.
//
// Registering the same scope again replaces the earlier registration (the
// latest answer counts), so rule 4 only meets genuinely different scopes.
func Evaluate(regs []Registration, q Question, t time.Time) Decision {
	best, decision := -1, DecisionDeny
	for _, r := range regs {
		if !r.inForce(t) || !r.matches(q) {
			continue
		}
		s := r.Specificity()
		switch {
		case s > best:
			best = s
			decision = effectDecision(r.Effect)
		case s == best && r.Effect == Deny:
			decision = DecisionDeny
		}
	}
	return decision
}

func effectDecision(e Effect) Decision {
	if e == Permit {
		return DecisionPermit
	}
	return DecisionDeny
}
