package plateau

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/policy"
)

// Claims the enforcer asks the authorization server to put in the access
// token (see TokenDecision.Claims), read back at data access by TokenUser.
const (
	ClaimAuthn = "twiin_authn" // plateau of user authentication the token request delivered
	ClaimUser  = "twiin_user"  // user identifier (UZI/Dezi number), when sent
	ClaimRole  = "twiin_role"  // UZI role code, when sent in the UZI role code system
)

// Check enforces a generic function besides authentication and
// authorization — consent, localization, addressing, logging — at the
// plateau agreed with the partner. A Check implements TokenCheck,
// AccessCheck or both.
type Check interface {
	Function() Function
}

// TokenCheck is a Check run at token issuance.
type TokenCheck interface {
	Check
	// CheckToken returns nil, a *Refusal, or another error (a server error).
	CheckToken(ctx context.Context, plateau int, tc *TokenContext) error
}

// AccessCheck is a Check run at every data access.
type AccessCheck interface {
	Check
	// CheckAccess returns nil, a *Refusal, or another error (a server error).
	CheckAccess(ctx context.Context, plateau int, ac *AccessContext) error
}

// TokenContext is what the node knows of a token request once the client
// is authenticated.
type TokenContext struct {
	// ClientURA is the requesting organisation, verified by mTLS and the
	// client assertion.
	ClientURA string
	// GrantType is the RFC 6749 grant type.
	GrantType string
	Scope     []string
	// Assertion holds the verified claims of the grant assertion (signed by
	// the requesting organisation); nil without one.
	Assertion map[string]any
	// User is the user behind the request. Leave it nil to have it read
	// from Assertion (UserFromClaims); set it from SignedUser when the
	// request carried an identity token the node verified.
	User *User
	// DirectPull is set for a consult token (Direct Pull: jwt-bearer
	// without authorization_base), which localization decides on.
	DirectPull bool
	// TLS is the request's connection, for the network function.
	TLS *tls.ConnectionState
	// Claims are what checks add to the access token, read back at data
	// access from AccessContext.Token; TokenDecision.Claims merges them.
	Claims map[string]any
}

// AccessContext is one request for data.
type AccessContext struct {
	// PartnerURA is the requesting organisation (mTLS, token subject).
	PartnerURA string
	// Authenticated is the ClaimAuthn of the access token.
	Authenticated int
	// UserID and UserRole are the token's ClaimUser and ClaimRole.
	UserID, UserRole string
	// Application is the care application (policy name), e.g. "bgz".
	Application string
	// Interaction, ResourceType, Operation and Params describe the request
	// as fhir/rest parsed it.
	Interaction  string
	ResourceType string
	Operation    string
	Params       url.Values
	// Patient is the BSN the request is about, when known; for consent
	// and localization checks. Never logged.
	Patient string
	// Tenant is the participant whose data is asked.
	Tenant string
	// DirectPull is set when the access token is a consult token.
	DirectPull bool
	// TLS is the request's connection, for the network function.
	TLS *tls.ConnectionState
	// Token holds the access token's claims.
	Token map[string]any
}

// Enforcer holds each request to the plateau agreed with its partner.
type Enforcer struct {
	// agreements are swapped whole by SetAgreements; every decision reads
	// them once, so it is taken on one consistent set.
	agreements atomic.Pointer[agreementSet]
	policies   policy.Set
	issuers    map[string]bool
	token      []TokenCheck
	access     []AccessCheck
}

// New validates cfg and builds the enforcer over the loaded policies.
func New(cfg Config, policies policy.Set, checks ...Check) (*Enforcer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("plateau: invalid configuration:\n%w", err)
	}
	e := &Enforcer{policies: policies, issuers: map[string]bool{}}
	byURA, def := cfg.agreements()
	e.agreements.Store(&agreementSet{byURA: byURA, def: def})
	for _, iss := range cfg.IdentityIssuers {
		e.issuers[strings.TrimSuffix(iss, "/")] = true
	}
	for _, c := range checks {
		if !c.Function().Valid() {
			return nil, fmt.Errorf("plateau: check %T is for unknown function %q", c, c.Function())
		}
		tc, isToken := c.(TokenCheck)
		ac, isAccess := c.(AccessCheck)
		if !isToken && !isAccess {
			return nil, fmt.Errorf("plateau: check %T implements neither CheckToken nor CheckAccess", c)
		}
		if isToken {
			e.token = append(e.token, tc)
		}
		if isAccess {
			e.access = append(e.access, ac)
		}
	}
	return e, nil
}

// Agreement returns the agreement that covers ura: its own, its
// collaboration's, or the default; false when there is none.
func (e *Enforcer) Agreement(ura string) (*Agreement, bool) {
	set := e.agreements.Load()
	if a, ok := set.byURA[ura]; ok {
		return a, true
	}
	if set.def != nil {
		return set.def, true
	}
	return nil, false
}

// agreementSet is the resolved agreements and the default of one
// configuration.
type agreementSet struct {
	byURA map[string]*Agreement
	def   *Agreement
}

// SetAgreements replaces the agreements and the default with those of cfg,
// at once: a decision under way finishes with the agreements it started
// with, the next one sees the new. The policies, the checks and the
// identity issuers stay those New was given (cfg.IdentityIssuers and
// cfg.PolicyDir are not read). An invalid cfg changes nothing.
func (e *Enforcer) SetAgreements(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("plateau: invalid configuration:\n%w", err)
	}
	byURA, def := cfg.agreements()
	e.agreements.Store(&agreementSet{byURA: byURA, def: def})
	return nil
}

// Policies are the policies the enforcer decides with.
func (e *Enforcer) Policies() policy.Set { return e.policies }

func notListed(ura string) *Refusal {
	return &Refusal{Function: Authorization, Required: 1, Delivered: 0, Partner: ura,
		Reason: fmt.Sprintf("organisation %s is not on this node's list of partners", ura)}
}

// TokenDecision is the outcome of a token request's user authentication.
type TokenDecision struct {
	Agreement *Agreement
	// Required is the agreed plateau; Delivered what the request meets (≥ Required).
	Required, Delivered int
	User                *User // nil when the request named no user
	// Extra are the claims the function checks added (TokenContext.Claims).
	Extra map[string]any
}

// Claims are the access token claims that carry the authentication to data
// access: merge them into oauth.Grant.Claims.
func (a TokenDecision) Claims() map[string]any {
	c := map[string]any{ClaimAuthn: a.Delivered}
	for k, v := range a.Extra {
		c[k] = v
	}
	if u := a.User; u != nil {
		if u.ID != "" {
			c[ClaimUser] = u.ID
		}
		if u.Role != "" && u.RoleSystem == nl.SystemUZIRole {
			c[ClaimRole] = u.Role
		}
	}
	return c
}

// TokenUser reads back what TokenDecision.Claims put in an access token.
func TokenUser(claims map[string]any) (authenticated int, userID, role string) {
	switch v := claims[ClaimAuthn].(type) {
	case int:
		authenticated = v
	case float64: // JSON numbers
		authenticated = int(v)
	case int64:
		authenticated = int(v)
	}
	userID, _ = claims[ClaimUser].(string)
	role, _ = claims[ClaimRole].(string)
	return authenticated, userID, role
}

// CheckTokenRequest decides at token issuance: the client must be a
// partner, and the user data of the request must meet the authentication
// plateau agreed with it. The error is a *Refusal or a server error.
func (e *Enforcer) CheckTokenRequest(ctx context.Context, tc TokenContext) error {
	_, err := e.Authenticate(ctx, tc)
	return err
}

// Authenticate is CheckTokenRequest that also returns what was established,
// for the access token's claims.
func (e *Enforcer) Authenticate(ctx context.Context, tc TokenContext) (TokenDecision, error) {
	a, ok := e.Agreement(tc.ClientURA)
	if !ok {
		return TokenDecision{}, notListed(tc.ClientURA)
	}
	user := tc.User
	var userErr error
	if user == nil && tc.Assertion != nil {
		user, userErr = UserFromClaims(tc.Assertion)
		if user == nil && userErr == nil {
			user = systemFromClaims(tc.Assertion)
		}
	}
	required := a.Plateau(Authentication)
	delivered, reason := e.assess(tc, user, userErr, required, a.SystemIdentity)
	if delivered < required {
		return TokenDecision{}, &Refusal{Function: Authentication, Required: required, Delivered: delivered, Reason: reason, Partner: tc.ClientURA}
	}
	if userErr != nil {
		user = nil // plateau 1: user data need mean nothing, so bad data is dropped, not trusted
	}
	for _, c := range e.token {
		if err := runCheck(c.CheckToken(ctx, a.Plateau(c.Function()), &tc), c.Function(), tc.ClientURA); err != nil {
			return TokenDecision{}, err
		}
	}
	return TokenDecision{Agreement: a, Required: required, Delivered: delivered, User: user, Extra: tc.Claims}, nil
}

// assess returns the highest authentication plateau the request meets, up
// to limit, and why it does not meet the next one. It stops at limit: what
// the agreement does not require is not asked for.
func (e *Enforcer) assess(tc TokenContext, u *User, userErr error, limit int, system bool) (int, string) {
	level := 1 // the client itself is authenticated by mTLS and its assertion
	for p := 2; p <= limit; p++ {
		if why := e.unmet(p, tc, u, userErr, system); why != "" {
			return level, why
		}
		level = p
	}
	return level, ""
}

// unmet says why the request does not meet plateau p's own requirements.
// system says whether the agreement allows a system identity instead of a user.
func (e *Enforcer) unmet(p int, tc TokenContext, u *User, userErr error, system bool) string {
	if u != nil && u.System && userErr == nil {
		return unmetSystem(p, tc, system)
	}
	switch p {
	case 2:
		switch {
		case userErr != nil:
			return "the user claims of the grant assertion are malformed: " + userErr.Error()
		case u == nil:
			return "user authentication at plateau 2 needs the user's identity: send " + ClaimUserID + ", " + ClaimUserIDSystem + ", " + ClaimUserRole + " and " + ClaimUserRoleSystem + " in the grant assertion"
		case u.ID == "":
			return "the request names no user (" + ClaimUserID + ")"
		case u.IDSystem != nl.SystemUZIPers && u.IDSystem != nl.SystemAGB:
			return fmt.Sprintf("the user identifier must be in an agreed code system (%s or %s), not %q", nl.SystemUZIPers, nl.SystemAGB, u.IDSystem)
		case u.Role == "":
			return "the request carries no role for the user (" + ClaimUserRole + ")"
		case u.RoleSystem != nl.SystemUZIRole:
			return fmt.Sprintf("the user's role must be an UZI role code (%s or urn:oid:%s), not in %q", nl.SystemUZIRole, nl.OIDUZIRole, u.RoleSystem)
		case !policy.ValidRoleCode(u.Role):
			return fmt.Sprintf("%q is not a role code the UZI register issues (RoleCodeNL)", u.Role)
		case !u.StrongAuthentication():
			return "the request does not declare strong two-factor authentication of the user (" + ClaimUserLoA + " substantial or high, or " + ClaimUserAMR + " mfa)"
		}
	case 3:
		switch {
		case tc.GrantType != oauth.GrantTypeJWTBearer || tc.Assertion == nil:
			return "user authentication at plateau 3 needs the organisation and user data signed by the requesting organisation: use the jwt-bearer grant with a grant assertion"
		case tc.Assertion["sub"] != tc.ClientURA:
			return "the grant assertion's subject is not the requesting organisation"
		case u.Source < SignedByOrganisation:
			return "the user data is not signed by the requesting organisation"
		case u.IDSystem != nl.SystemUZIPers:
			return "the user must be identified by UZI number (" + nl.SystemUZIPers + ")"
		case u.Organisation != "" && u.Organisation != tc.ClientURA:
			return fmt.Sprintf("the user acts for organisation %s, not for the requesting %s", u.Organisation, tc.ClientURA)
		}
	case 4:
		switch {
		case u.Source != SignedByIdentityIssuer:
			return "user authentication at plateau 4 needs the user's identity signed by the identity issuer (e.g. Dezi); the request has " + u.Source.String() + " user data"
		case !e.issuers[strings.TrimSuffix(u.Issuer, "/")]:
			return fmt.Sprintf("identity issuer %q is not trusted by this node", u.Issuer)
		case u.LoA != LoAHigh:
			loa := u.LoA
			if loa == "" {
				loa = "none"
			}
			return fmt.Sprintf("the user's authentication must be eIDAS high (%s); the identity declares %s", LoAHigh, loa)
		case u.ID == "":
			return "the signed identity carries no UZI number"
		case u.Role == "":
			return "the signed identity carries no role for the requesting organisation"
		case u.Organisation != tc.ClientURA:
			return fmt.Sprintf("the signed identity is not for the requesting organisation %s", tc.ClientURA)
		}
	}
	return ""
}

// CheckAccess decides on a data request: the partner must be listed, its
// token must carry the agreed authentication, and the care application's
// policy must allow the request at the agreed authorization plateau — for
// plateau 2 and up, for the user's role. Then the other functions' checks
// run. The error is a *Refusal or a server error.
func (e *Enforcer) CheckAccess(ctx context.Context, ac AccessContext) error {
	a, ok := e.Agreement(ac.PartnerURA)
	if !ok {
		return notListed(ac.PartnerURA)
	}
	if need := a.Plateaus[index(Authentication)]; ac.Authenticated < need {
		return &Refusal{Function: Authentication, Required: need, Delivered: ac.Authenticated, Partner: ac.PartnerURA,
			Reason: "the access token was not issued for the user authentication agreed with " + a.label(ac.PartnerURA)}
	}
	if err := e.authorize(a, &ac); err != nil {
		return err
	}
	for _, c := range e.access {
		if err := runCheck(c.CheckAccess(ctx, a.Plateau(c.Function()), &ac), c.Function(), ac.PartnerURA); err != nil {
			return err
		}
	}
	return nil
}

func (e *Enforcer) authorize(a *Agreement, ac *AccessContext) error {
	pz := a.Plateaus[index(Authorization)]
	refuse := func(required, delivered int, format string, args ...any) error {
		return &Refusal{Function: Authorization, Required: required, Delivered: delivered, Partner: ac.PartnerURA, Reason: fmt.Sprintf(format, args...)}
	}
	if !a.MayUse(ac.Application) {
		return refuse(pz, 0, "care application %q is not part of the agreement with %s", ac.Application, a.label(ac.PartnerURA))
	}
	pol := e.policies[ac.Application]
	if pol == nil {
		return refuse(pz, 0, "this node has no access policy for care application %q", ac.Application)
	}
	r := pol.Match(ac.ResourceType, ac.Interaction, ac.Operation, ac.Params)
	if r == nil {
		return refuse(pz, 0, "no rule of the %s policy (version %d) allows this %s on %s", pol.Application, pol.Version, ac.Interaction, ac.ResourceType)
	}
	if r.From > pz {
		return refuse(r.From, pz, "%s %q requires authorization plateau %d; the agreement with %s is at plateau %d",
			pol.Application, r.ID, r.From, a.label(ac.PartnerURA), pz)
	}
	if pz >= 2 {
		if ac.UserRole == "" {
			return refuse(pz, lowerAllowed(r, pz, ""), "authorization at plateau %d decides on the user's role, and the access token carries none", pz)
		}
		if !r.Allows(pz, ac.UserRole) {
			return refuse(pz, lowerAllowed(r, pz, ac.UserRole), "role %s may not use %s %q under the %s (policy version %d)",
				ac.UserRole, pol.Application, r.ID, basis(pz), pol.Version)
		}
	}
	if err := returnedTypes(pol, r, ac); err != "" {
		return refuse(pz, 0, "%s", err)
	}
	return nil
}

// lowerAllowed is the highest plateau below p at which role would have been
// allowed the rule: what the request does deliver.
func lowerAllowed(r *policy.Rule, p int, role string) int {
	for q := p - 1; q >= r.From; q-- {
		if q == 1 || (role != "" && r.Allows(q, role)) {
			return q
		}
	}
	return 0
}

func basis(p int) string {
	switch p {
	case 2:
		return "collaboration's rules"
	case 3:
		return "national authorization guideline"
	case 4:
		return "medical authorization protocol"
	}
	return "bilateral agreement"
}

// returnedTypes checks the resource types _include and _revinclude would
// add to the answer against the rule.
func returnedTypes(pol *policy.Policy, r *policy.Rule, ac *AccessContext) string {
	var defs *spec.Definitions
	for k, vs := range ac.Params {
		rev := strings.HasPrefix(k, "_revinclude")
		if !rev && !strings.HasPrefix(k, "_include") {
			continue
		}
		for _, v := range vs {
			src, rest, _ := strings.Cut(v, ":")
			param, target, _ := strings.Cut(rest, ":")
			if rev {
				if !r.Returns(src) {
					return fmt.Sprintf("%s %q may not return %s resources (%s=%s)", pol.Application, r.ID, src, k, v)
				}
				continue
			}
			if target != "" {
				if !r.Returns(target) {
					return fmt.Sprintf("%s %q may not return %s resources (%s=%s)", pol.Application, r.ID, target, k, v)
				}
				continue
			}
			if defs == nil {
				defs = spec.For(pol.FHIRVersion)
			}
			sp := defs.SearchParam(src, param)
			if sp == nil || len(sp.Targets) == 0 {
				return fmt.Sprintf("%s=%s does not name a reference search parameter", k, v)
			}
			for _, t := range sp.Targets {
				if !r.Returns(t) {
					return fmt.Sprintf("%s %q may not return %s resources (%s=%s)", pol.Application, r.ID, t, k, v)
				}
			}
		}
	}
	return ""
}

func (a *Agreement) label(ura string) string {
	if a.Default {
		return ura + " (default agreement)"
	}
	if a.Name != "" {
		return a.Name
	}
	return ura
}

// runCheck passes a check's refusal on and marks anything else as a server error.
func runCheck(err error, f Function, ura string) error {
	if err == nil {
		return nil
	}
	if r := AsRefusal(err); r != nil {
		if r.Function == "" {
			r.Function = f
		}
		if r.Partner == "" {
			r.Partner = ura
		}
		return r
	}
	return fmt.Errorf("plateau: %s check: %w", f, err)
}

// CheckPartner refuses an organisation that has no agreement. The node calls
// it for system-to-system requests that carry no user and give no access to
// a participant's data (a Notified Pull notification's client_credentials
// token), where the authentication plateau has nothing to judge.
func (e *Enforcer) CheckPartner(ura string) error {
	if _, ok := e.Agreement(ura); !ok {
		return notListed(ura)
	}
	return nil
}
