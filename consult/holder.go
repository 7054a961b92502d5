package consult

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// ResolveGrant decides a consult token request (jwt-bearer without
// authorization_base): the RFC 8707 resource must be the FHIR base of one of
// this node's participants, the scope one known care application. The token
// is bound to that participant (ClaimConsult) and short-lived; whether data
// may flow is decided per request by AuthorizeData.
func (s *Service) ResolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	if req.GrantType != GrantTypeJWT {
		return oauth.Grant{}, oauth.RefuseGrant("a consult token is asked with the jwt-bearer grant", nil)
	}
	if req.AuthorizationBase != "" {
		return oauth.Grant{}, oauth.RefuseGrant("a consult carries no authorization_base; that is a Notified Pull", nil)
	}
	if req.Resource == "" {
		return oauth.Grant{}, oauth.RefuseGrant("a consult token request must name the data holder's FHIR endpoint in resource (RFC 8707)", nil)
	}
	tenant, audience := s.tenantOf(req.Resource)
	if tenant == "" {
		return oauth.Grant{}, oauth.RefuseTarget("resource is not the FHIR endpoint of a participant of this node", nil)
	}
	if len(req.Scope) != 1 {
		return oauth.Grant{}, fmt.Errorf("%w: a consult asks for exactly one care application (%s)", oauth.ErrInvalidScope,
			strings.Join(names(s.cfg.Applications.On(careapp.DirectPull)), ", "))
	}
	if _, err := s.application(req.Scope[0]); err != nil {
		return oauth.Grant{}, fmt.Errorf("%w: %w", oauth.ErrInvalidScope, err)
	}
	if !namesUser(req) {
		return oauth.Grant{}, oauth.RefuseGrant("a consult must name the requesting user (user_id, user_role): the consent question needs them", nil)
	}
	claims := map[string]any{ClaimConsult: tenant}
	if v, ok := req.Assertion[AssertionRequesterType]; ok {
		rt, isStr := v.(string)
		if !isStr || !validCode(rt) {
			return oauth.Grant{}, oauth.RefuseGrant("requester_type must be a facility type code", nil)
		}
		claims[ClaimRequesterType] = rt
	}
	return oauth.Grant{
		Audience: audience,
		Scope:    []string{req.Scope[0]},
		Subject:  req.ClientID,
		Claims:   claims,
		NotAfter: s.cfg.Now().Add(s.cfg.TokenLifetime),
	}, nil
}

// tenantOf returns the participant whose FHIR base (STU3 or R4) is
// resource, and that base; "" when it is no participant's.
func (s *Service) tenantOf(resource string) (tenant, base string) {
	if s.cfg.FHIRBase == nil {
		return "", ""
	}
	for _, t := range s.cfg.Tenants() {
		if s.cfg.FHIRBase(t) == resource || s.cfg.R4Base != nil && s.cfg.R4Base(t) == resource {
			return t, resource
		}
	}
	return "", ""
}

// forTenant reports whether a token's audience is one of tenant's FHIR bases.
func (s *Service) forTenant(aud []string, tenant string) bool {
	if s.cfg.FHIRBase == nil {
		return false
	}
	return slices.Contains(aud, s.cfg.FHIRBase(tenant)) || s.cfg.R4Base != nil && slices.Contains(aud, s.cfg.R4Base(tenant))
}

// namesUser reports whether the request names a user: a verified identity
// (plateau 4) or the user claims of the signed assertion.
func namesUser(req oauth.GrantRequest) bool {
	if req.User != nil && req.User.UZI != "" && req.User.RoleCode != "" {
		return true
	}
	u, err := plateau.UserFromClaims(req.Assertion)
	return err == nil && u != nil && u.ID != "" && u.Role != ""
}

// Check is what AuthorizeData established about one request, for the audit
// record: which query, which patient, and the consent decision.
type Check struct {
	Tenant      string
	Application string
	Block       string // the BgZ block the request is
	PatientBSN  string
	// Decision is the consent service's answer; empty when none was obtained.
	Decision consent.Decision
	// ConsentProfile is the audit record's ConsentProfile, e.g.
	// "Mitz closed question: Permit" or "Mitz closed question: unavailable".
	ConsentProfile string
}

type checkKey struct{}

// WithCheck returns a context in which AuthorizeData leaves its Check for
// CheckFrom: the node installs it before serving a request and reads it
// when writing the audit record.
func WithCheck(ctx context.Context) context.Context {
	return context.WithValue(ctx, checkKey{}, &Check{})
}

// CheckFrom returns what AuthorizeData established in a WithCheck context;
// ok is false when it did not run (or ran for no consult).
func CheckFrom(ctx context.Context) (Check, bool) {
	c, _ := ctx.Value(checkKey{}).(*Check)
	if c == nil || c.Tenant == "" {
		return Check{}, false
	}
	return *c, true
}

// IsConsult reports whether tok is a consult token (carries ClaimConsult):
// the node's dispatch between this service and the Notified Pull.
func IsConsult(tok *oauth.AccessToken) bool {
	return tok != nil && tok.StringClaim(ClaimConsult) != ""
}

// AuthorizeData decides a request on a participant's FHIR endpoint under a
// consult token: the token must be for this participant, the request exactly
// one of the application's queries for one patient, and the consent service
// must answer Permit. Refusals are *fhir.Error: 403 (not allowed, no
// consent) or 503 (consent service unavailable: fail closed).
func (s *Service) AuthorizeData(ctx context.Context, tok *oauth.AccessToken, req *rest.Request) error {
	c, err := s.Authorize(ctx, tok, req)
	if slot, _ := ctx.Value(checkKey{}).(*Check); slot != nil {
		*slot = c
	}
	return err
}

// Authorize is AuthorizeData returning its Check as well.
func (s *Service) Authorize(ctx context.Context, tok *oauth.AccessToken, req *rest.Request) (Check, error) {
	c := Check{}
	if tok == nil {
		return c, deny("no access token")
	}
	tenant := tok.StringClaim(ClaimConsult)
	switch {
	case tenant == "":
		return c, deny("the access token was not issued for a consult")
	case tenant != req.Tenant:
		return c, deny("the access token was issued for another participant's data")
	case !s.forTenant(tok.Audience, tenant):
		return c, deny("the access token was issued for another endpoint")
	}
	c.Tenant = tenant
	var app careapp.QuerySet
	for _, sc := range tok.Scope {
		if a, err := s.application(sc); err == nil {
			app = a
		}
	}
	if app == nil {
		return c, deny("the access token carries no care application this node answers")
	}
	c.Application = app.Name()
	if req.Interaction != rest.InteractionSearchType && req.Interaction != rest.InteractionOperation {
		return c, deny("a consult allows only the searches of the care application")
	}
	bsn, ok := app.PatientBSN(req.Params)
	if !ok {
		return c, deny("a consult search must be for exactly one patient, by BSN")
	}
	c.PatientBSN = bsn
	matched, err := app.Match(careapp.Request{Type: req.Type, Operation: req.Operation, Params: req.Params}, bsn)
	if err != nil {
		return c, deny("this search is not one of the %s queries", app.Name())
	}
	c.Block = matched.Name

	_, user, role := plateau.TokenUser(tok.Claims)
	rtype := tok.StringClaim(ClaimRequesterType)
	if rtype == "" && s.cfg.RequesterType != nil {
		rtype = s.cfg.RequesterType(ctx, tok.Subject)
	}
	switch {
	case user == "" || role == "":
		return c, deny("the access token names no user with an UZI role; the patient's consent cannot be asked")
	case rtype == "":
		return c, deny("your organisation's facility type is unknown; the patient's consent cannot be asked")
	}
	q := consent.Question{PatientBSN: bsn, DataHolderURA: tenant, DataHolderType: s.cfg.FacilityType(tenant),
		RequesterURA: tok.Subject, RequesterType: rtype, RequesterRole: role, RequesterUZI: user, Purpose: consent.PurposeTreatment}
	checker, profile := s.cfg.Consent, s.cfg.ConsentProfile
	if s.cfg.ConsentSource != nil {
		checker, profile = s.cfg.ConsentSource(q)
	}
	if checker == nil {
		c.ConsentProfile = profile + ": unavailable"
		return c, consent.Outcome(fmt.Errorf("%w: no consent service configured", consent.ErrUnavailable))
	}
	d, err := checker.Decide(ctx, q)
	if err != nil {
		c.ConsentProfile = profile + ": unavailable"
		if errors.Is(err, consent.ErrInvalidQuestion) {
			c.ConsentProfile = profile + ": not asked (incomplete question)"
			s.log.Warn("consent question incomplete", "tenant", tenant, "requester", tok.Subject, "err", err)
			return c, deny("the patient's consent cannot be asked: the question is incomplete")
		}
		if !errors.Is(err, consent.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", consent.ErrUnavailable, err)
		}
		return c, consent.Outcome(err)
	}
	c.Decision = d
	c.ConsentProfile = profile + ": " + string(d)
	if !d.Permitted() {
		return c, &fhir.Error{Status: http.StatusForbidden, Cause: &consent.DeniedError{Decision: d}, Issues: []fhir.Issue{{
			Severity: "error", Code: "forbidden",
			Diagnostics: "the patient's consent does not permit this exchange: " + consentReason(d, profile)}}}
	}
	return c, nil
}

// consentReason names the decision and its source; a source that names
// its consent plateau ("plateau N <source>", ConsentSource) gives the
// refusal's function and plateau, as every plateau refusal does.
func consentReason(d consent.Decision, profile string) string {
	var p int
	if n, _ := fmt.Sscanf(profile, "plateau %d", &p); n == 1 {
		source := strings.TrimSpace(strings.TrimPrefix(profile, fmt.Sprintf("plateau %d", p)))
		return fmt.Sprintf("consent decision %s of the %s (consent, plateau %d)", d, source, p)
	}
	return fmt.Sprintf("consent decision %s of the %s", d, profile)
}

func deny(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &fhir.Error{Status: http.StatusForbidden, Cause: fmt.Errorf("%w: %s", ErrForbidden, msg),
		Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: msg}}}
}

// validCode accepts facility type and similar codes: 1..64 characters of
// letters, digits, '.', '-' and '_' (as the consent question does).
func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// names are the applications' names.
func names(apps []careapp.Application) []string {
	var out []string
	for _, a := range apps {
		out = append(out, a.Name())
	}
	return out
}
