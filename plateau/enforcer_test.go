package plateau

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/policy"
)

const (
	uraP1     = "00000001"
	uraP2     = "00000002"
	uraP3     = "00000003"
	uraP4     = "00000004"
	uraCollab = "00000005"
	uraOther  = "00000009"
	dezi      = "https://dezi.example"
)

// testPolicy has a rule for every plateau, including one only plateau 4 may use.
const testPolicy = `version: 7
application: test
fhirVersion: STU3
roles:
  physicians: ["01.015", "01.016"]
rules:
  - id: problems
    type: Condition
    include: [Provenance]
    from: 1
    collaboration: [physicians, "30.000"]
    guideline: [physicians, "30.000"]
    protocol: [physicians]
  - id: medication
    type: MedicationStatement
    include: [Medication]
    from: 2
    collaboration: [physicians]
    guideline: [physicians]
    protocol: ["01.015"]
  - id: genetics
    type: Observation
    params: {category: "http://snomed.info/sct|405824009"}
    from: 4
    protocol: ["01.016"]
`

func testEnforcer(t testing.TB, checks ...Check) *Enforcer {
	t.Helper()
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Agreements: []PartnerConfig{
			{URA: uraP1, Name: "P1 hospital", Plateaus: Uniform(1)},
			{URA: uraP2, Name: "P2 hospital", Plateaus: Uniform(2)},
			{URA: uraP3, Name: "P3 hospital", Plateaus: Uniform(3)},
			{URA: uraP4, Name: "P4 hospital", Plateaus: Uniform(4)},
			{Collaboration: []string{uraCollab, "00000006"}, Name: "Regio", Plateaus: Plateaus{Authentication: 2, Authorization: 2}},
		},
		IdentityIssuers: []string{dezi},
	}
	e, err := New(cfg, policy.Set{"test": pol}, checks...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// claims builds grant assertion claims for a user.
func userClaims(ura string, kv ...string) map[string]any {
	c := map[string]any{"iss": ura, "sub": ura}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i]] = kv[i+1]
	}
	return c
}

var p2User = []string{ClaimUserID, "123456789", ClaimUserIDSystem, nl.SystemUZIPers, ClaimUserRole, "01.015",
	ClaimUserRoleSystem, "urn:oid:" + nl.OIDUZIRole, ClaimUserLoA, LoASubstantial}

func signed(iss, ura, loa string) *User {
	return &User{ID: "123456789", IDSystem: nl.SystemUZIPers, Role: "01.015", RoleSystem: nl.SystemUZIRole,
		LoA: loa, Organisation: ura, Issuer: iss, Source: SignedByIdentityIssuer}
}

func TestCheckTokenRequest(t *testing.T) {
	e := testEnforcer(t)
	jwt := oauth.GrantTypeJWTBearer
	cases := []struct {
		name      string
		tc        TokenContext
		function  Function // empty: allowed
		delivered int
		reason    string
	}{
		{name: "unlisted partner", tc: TokenContext{ClientURA: uraOther, GrantType: jwt}, function: Authorization, reason: "not on this node's list"},
		{name: "plateau 1 without user", tc: TokenContext{ClientURA: uraP1, GrantType: oauth.GrantTypeClientCredentials}},
		{name: "plateau 1 with meaningless user data", tc: TokenContext{ClientURA: uraP1, GrantType: jwt, Assertion: userClaims(uraP1, ClaimUserID, "jansen", ClaimUserRole, "dokter")}},
		{name: "plateau 1 with malformed user data", tc: TokenContext{ClientURA: uraP1, GrantType: jwt, Assertion: map[string]any{"sub": uraP1, ClaimUserID: 42}}},
		{name: "plateau 2 without user", tc: TokenContext{ClientURA: uraP2, GrantType: oauth.GrantTypeClientCredentials}, function: Authentication, delivered: 1, reason: "needs the user's identity"},
		{name: "plateau 2 user without role", tc: TokenContext{ClientURA: uraP2, GrantType: jwt, Assertion: userClaims(uraP2, ClaimUserID, "123456789", ClaimUserIDSystem, nl.SystemUZIPers, ClaimUserLoA, LoAHigh)},
			function: Authentication, delivered: 1, reason: "no role"},
		{name: "plateau 2 role in a local code system", tc: TokenContext{ClientURA: uraP2, GrantType: jwt, Assertion: userClaims(uraP2, ClaimUserID, "123456789", ClaimUserIDSystem, nl.SystemUZIPers, ClaimUserRole, "arts", ClaimUserRoleSystem, "urn:local", ClaimUserLoA, LoAHigh)},
			function: Authentication, delivered: 1, reason: "UZI role code"},
		{name: "plateau 2 without strong authentication", tc: TokenContext{ClientURA: uraP2, GrantType: jwt, Assertion: userClaims(uraP2, ClaimUserID, "123456789", ClaimUserIDSystem, nl.SystemUZIPers, ClaimUserRole, "01.015", ClaimUserRoleSystem, nl.SystemUZIRole, ClaimUserLoA, LoALow)},
			function: Authentication, delivered: 1, reason: "two-factor"},
		{name: "plateau 2 met", tc: TokenContext{ClientURA: uraP2, GrantType: jwt, Assertion: userClaims(uraP2, p2User...)}},
		{name: "plateau 2 met with AGB code and amr mfa", tc: TokenContext{ClientURA: uraP2, GrantType: jwt, Assertion: map[string]any{"sub": uraP2, ClaimUserID: "01234567", ClaimUserIDSystem: nl.SystemAGB,
			ClaimUserRole: "30.000", ClaimUserRoleSystem: nl.SystemUZIRole, ClaimUserAMR: []any{"pwd", "mfa"}}}},
		{name: "plateau 3 with unsigned user", tc: TokenContext{ClientURA: uraP3, GrantType: jwt, Assertion: map[string]any{"sub": uraP3},
			User: &User{ID: "123456789", IDSystem: nl.SystemUZIPers, Role: "01.015", RoleSystem: nl.SystemUZIRole, LoA: LoAHigh, Source: Unsigned}},
			function: Authentication, delivered: 2, reason: "not signed by the requesting organisation"},
		{name: "plateau 3 with AGB user", tc: TokenContext{ClientURA: uraP3, GrantType: jwt, Assertion: map[string]any{"sub": uraP3, ClaimUserID: "01234567", ClaimUserIDSystem: nl.SystemAGB,
			ClaimUserRole: "01.015", ClaimUserRoleSystem: nl.SystemUZIRole, ClaimUserLoA: LoAHigh}},
			function: Authentication, delivered: 2, reason: "UZI number"},
		{name: "plateau 3 met", tc: TokenContext{ClientURA: uraP3, GrantType: jwt, Assertion: userClaims(uraP3, p2User...)}},
		{name: "plateau 4 with organisation-signed user only", tc: TokenContext{ClientURA: uraP4, GrantType: jwt, Assertion: userClaims(uraP4, p2User...)},
			function: Authentication, delivered: 3, reason: "signed by the identity issuer"},
		{name: "plateau 4 low assurance", tc: TokenContext{ClientURA: uraP4, GrantType: jwt, Assertion: map[string]any{"sub": uraP4}, User: signed(dezi, uraP4, LoASubstantial)},
			function: Authentication, delivered: 3, reason: "eIDAS high"},
		{name: "plateau 4 untrusted issuer", tc: TokenContext{ClientURA: uraP4, GrantType: jwt, Assertion: map[string]any{"sub": uraP4}, User: signed("https://evil.example", uraP4, LoAHigh)},
			function: Authentication, delivered: 3, reason: "not trusted"},
		{name: "plateau 4 identity for another organisation", tc: TokenContext{ClientURA: uraP4, GrantType: jwt, Assertion: map[string]any{"sub": uraP4}, User: signed(dezi, uraP3, LoAHigh)},
			function: Authentication, delivered: 2, reason: "acts for organisation"},
		{name: "plateau 4 met", tc: TokenContext{ClientURA: uraP4, GrantType: jwt, Assertion: map[string]any{"sub": uraP4}, User: signed(dezi+"/", uraP4, LoAHigh)}},
		{name: "collaboration member at plateau 2", tc: TokenContext{ClientURA: "00000006", GrantType: jwt, Assertion: userClaims("00000006", p2User...)}},
		{name: "collaboration member without user", tc: TokenContext{ClientURA: uraCollab, GrantType: oauth.GrantTypeClientCredentials}, function: Authentication, delivered: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Authenticate(context.Background(), tc.tc)
			if tc.function == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if d.Delivered < d.Required {
					t.Fatalf("delivered %d < required %d", d.Delivered, d.Required)
				}
				if e.CheckTokenRequest(context.Background(), tc.tc) != nil {
					t.Fatal("CheckTokenRequest disagrees with Authenticate")
				}
				return
			}
			r := AsRefusal(err)
			if r == nil {
				t.Fatalf("want a refusal of %s, got %v", tc.function, err)
			}
			if r.Function != tc.function || r.Delivered != tc.delivered || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("got %+v, want function %s delivered %d reason containing %q", r, tc.function, tc.delivered, tc.reason)
			}
			if r.Partner != tc.tc.ClientURA {
				t.Errorf("partner %q", r.Partner)
			}
			if !errors.Is(r.OAuthError(), oauth.ErrInvalidGrant) {
				t.Error("OAuthError does not wrap invalid_grant")
			}
		})
	}
}

func TestTokenClaimsRoundTrip(t *testing.T) {
	e := testEnforcer(t)
	d, err := e.Authenticate(context.Background(), TokenContext{ClientURA: uraP3, GrantType: oauth.GrantTypeJWTBearer, Assertion: userClaims(uraP3, p2User...)})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Claims()
	c[ClaimAuthn] = float64(c[ClaimAuthn].(int)) // as it comes back from JSON
	authn, user, role := TokenUser(c)
	if authn != 3 || user != "123456789" || role != "01.015" {
		t.Fatalf("got %d %q %q", authn, user, role)
	}
}

func access(ura string, authn int, role, typ string, params ...string) AccessContext {
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Add(params[i], params[i+1])
	}
	return AccessContext{PartnerURA: ura, Authenticated: authn, UserRole: role, Application: "test",
		Interaction: "search-type", ResourceType: typ, Params: q}
}

func TestCheckAccess(t *testing.T) {
	e := testEnforcer(t)
	genetics := []string{"category", "http://snomed.info/sct|405824009", "patient.identifier", nl.SystemBSN + "|999999011"}
	cases := []struct {
		name                string
		ac                  AccessContext
		function            Function
		required, delivered int
		reason              string
	}{
		{name: "unlisted partner", ac: access(uraOther, 4, "01.015", "Condition"), function: Authorization, required: 1, reason: "not on this node's list"},
		{name: "plateau 1 listed partner, no role", ac: access(uraP1, 1, "", "Condition")},
		{name: "plateau 1 with revinclude allowed", ac: access(uraP1, 1, "", "Condition", "_revinclude", "Provenance:target")},
		{name: "plateau 1 include not in the rule", ac: access(uraP1, 1, "", "Condition", "_include", "Condition:subject"), function: Authorization, required: 1, reason: "may not return"},
		{name: "plateau 1 partner, plateau-4-only operation", ac: access(uraP1, 1, "", "Observation", genetics...), function: Authorization, required: 4, delivered: 1, reason: "requires authorization plateau 4"},
		{name: "plateau 1 partner, plateau-2 rule", ac: access(uraP1, 1, "01.015", "MedicationStatement"), function: Authorization, required: 2, delivered: 1},
		{name: "no rule for the request", ac: access(uraP1, 1, "", "Encounter"), function: Authorization, required: 1, reason: "no rule"},
		{name: "wrong application", ac: AccessContext{PartnerURA: uraP1, Authenticated: 1, Application: "imaging", Interaction: "search-type", ResourceType: "Condition"}, function: Authorization, required: 1, reason: "no access policy"},
		{name: "plateau 2 without role", ac: access(uraP2, 2, "", "Condition"), function: Authorization, required: 2, delivered: 1, reason: "carries none"},
		{name: "plateau 2 role allowed", ac: access(uraP2, 2, "30.000", "Condition")},
		{name: "plateau 2 role not allowed", ac: access(uraP2, 2, "17.000", "Condition"), function: Authorization, required: 2, delivered: 1, reason: "collaboration's rules"},
		{name: "plateau 2 token below the agreed authentication", ac: access(uraP2, 1, "01.015", "Condition"), function: Authentication, required: 2, delivered: 1},
		{name: "plateau 2 medication by physician", ac: access(uraP2, 2, "01.016", "MedicationStatement", "_include", "MedicationStatement:medication")},
		{name: "plateau 3 guideline", ac: access(uraP3, 3, "30.000", "Condition")},
		{name: "plateau 4 protocol refuses nurse", ac: access(uraP4, 4, "30.000", "Condition"), function: Authorization, required: 4, delivered: 3, reason: "medical authorization protocol"},
		{name: "plateau 4 protocol narrows medication", ac: access(uraP4, 4, "01.016", "MedicationStatement"), function: Authorization, required: 4, delivered: 3},
		{name: "plateau 4 genetics by the protocol's role", ac: access(uraP4, 4, "01.016", "Observation", genetics...)},
		{name: "plateau 4 genetics by another role", ac: access(uraP4, 4, "01.015", "Observation", genetics...), function: Authorization, required: 4, delivered: 0},
		{name: "plateau 3 partner, plateau-4-only operation", ac: access(uraP3, 3, "01.016", "Observation", genetics...), function: Authorization, required: 4, delivered: 3},
		{name: "collaboration agreement", ac: access(uraCollab, 2, "01.015", "Condition")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := e.CheckAccess(context.Background(), tc.ac)
			if tc.function == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			r := AsRefusal(err)
			if r == nil {
				t.Fatalf("want a refusal, got %v", err)
			}
			if r.Function != tc.function || r.Required != tc.required || r.Delivered != tc.delivered || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("got %+v\nwant %s required %d delivered %d reason ~%q", r, tc.function, tc.required, tc.delivered, tc.reason)
			}
			fe := r.FHIRError()
			if fe.Status != 403 || fe.Issues[0].Code != "forbidden" || !strings.Contains(fe.Issues[0].Diagnostics, r.Reason) {
				t.Errorf("FHIR error %+v", fe)
			}
		})
	}
}

func TestDefaultAgreementAndApplications(t *testing.T) {
	pol, err := policy.Parse("test.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Default: Uniform(1), Agreements: []PartnerConfig{{URA: uraP2, Plateaus: Uniform(2), Applications: []string{"other"}}}}, policy.Set{"test": pol})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.CheckAccess(context.Background(), access(uraOther, 1, "", "Condition")); err != nil {
		t.Fatalf("default agreement refused: %v", err)
	}
	if e.CheckPartner(uraOther) != nil {
		t.Fatal("default agreement: CheckPartner refused")
	}
	r := AsRefusal(e.CheckAccess(context.Background(), access(uraP2, 2, "01.015", "Condition")))
	if r == nil || !strings.Contains(r.Reason, "not part of the agreement") {
		t.Fatalf("application outside the agreement: %v", r)
	}
}

// consentCheck stands in for the consent engineer's check: it refuses at
// plateau 4 when the patient is unknown.
type consentCheck struct{ calls []int }

func (c *consentCheck) Function() Function { return Consent }
func (c *consentCheck) CheckAccess(_ context.Context, p int, ac *AccessContext) error {
	c.calls = append(c.calls, p)
	if p == 4 && ac.Patient == "" {
		return &Refusal{Required: 4, Reason: "no consent known in Mitz"}
	}
	if ac.Patient == "boom" {
		return errors.New("mitz unreachable")
	}
	return nil
}

func TestPluggedChecks(t *testing.T) {
	cc := &consentCheck{}
	e := testEnforcer(t, cc)
	if err := e.CheckAccess(context.Background(), access(uraP1, 1, "", "Condition")); err != nil {
		t.Fatal(err)
	}
	r := AsRefusal(e.CheckAccess(context.Background(), access(uraP4, 4, "01.015", "Condition")))
	if r == nil || r.Function != Consent || r.Partner != uraP4 {
		t.Fatalf("consent refusal: %+v", r)
	}
	ac := access(uraP1, 1, "", "Condition")
	ac.Patient = "boom"
	if err := e.CheckAccess(context.Background(), ac); err == nil || AsRefusal(err) != nil {
		t.Fatalf("a failing check must be a server error, got %v", err)
	}
	if len(cc.calls) != 3 || cc.calls[0] != 1 || cc.calls[1] != 4 {
		t.Fatalf("consent check saw plateaus %v", cc.calls)
	}
	if _, err := New(Config{Default: Uniform(1)}, nil, badCheck{}); err == nil {
		t.Fatal("a check with neither method was accepted")
	}
}

type badCheck struct{}

func (badCheck) Function() Function { return Logging }

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty is valid", Config{}, ""},
		{"ura and collaboration", Config{Agreements: []PartnerConfig{{URA: uraP1, Collaboration: []string{uraP2}, Plateaus: Uniform(1)}}}, "not both"},
		{"no ura", Config{Agreements: []PartnerConfig{{Plateaus: Uniform(1)}}}, "is required"},
		{"bad ura", Config{Agreements: []PartnerConfig{{URA: "12", Plateaus: Uniform(1)}}}, "URA"},
		{"ura twice", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Uniform(1)}, {Collaboration: []string{uraP2, uraP1}, Plateaus: Uniform(1)}}}, "already in"},
		{"unknown function", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Plateaus{"teleportation": 2}}}}, "unknown generic function"},
		{"plateau 5", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Plateaus{Consent: 5}}}}, "not 1–4"},
		{"incomplete default", Config{Default: Plateaus{Consent: 1}}, "missing"},
		{"authorization above authentication", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Plateaus{Authentication: 1, Authorization: 3}}}}, "needs the user's role"},
		{"no plateaus without default", Config{Agreements: []PartnerConfig{{URA: uraP1}}}, "plateaus are required"},
		{"issuer not https", Config{IdentityIssuers: []string{"http://dezi"}}, "https"},
		{"bad application", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Uniform(1), Applications: []string{"BgZ!"}}}}, "care application"},
		{"endpoints at addressing plateau 2", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Uniform(2),
			Endpoints: Endpoints{Notification: "https://gtk.example/fhir/stu3/" + uraP1 + "/Task", AuthServer: "https://gtk.example"}}}}, ""},
		{"endpoints at addressing plateau 3", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Uniform(3),
			Endpoints: Endpoints{BgZ: "https://gtk.example/fhir"}}}}, "national addressbook only"},
		{"endpoints taken from the default's addressing plateau", Config{Default: Uniform(4), Agreements: []PartnerConfig{{URA: uraP1,
			Plateaus: Plateaus{Consent: 1}, Endpoints: Endpoints{BgZ: "https://gtk.example/fhir"}}}}, "addressing is agreed at plateau 4"},
		{"endpoints of a collaboration", Config{Agreements: []PartnerConfig{{Collaboration: []string{uraP1, uraP2}, Plateaus: Uniform(1),
			Endpoints: Endpoints{BgZ: "https://gtk.example/fhir"}}}}, "one organisation"},
		{"endpoint not https", Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Uniform(1),
			Endpoints: Endpoints{JWKS: "http://gtk.example/jwks"}}}}, "endpoints.jwks"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestModelComplete(t *testing.T) {
	for _, f := range Functions {
		for p := Lowest; p <= Highest; p++ {
			c, err := CharacteristicOf(f, p)
			if err != nil {
				t.Fatal(err)
			}
			if c.Text == "" || len(c.Sources) == 0 {
				t.Errorf("%s/%d has no text or source", f, p)
			}
		}
	}
	if len(Characteristics) != len(Functions)*Highest {
		t.Fatalf("%d characteristics, want %d", len(Characteristics), len(Functions)*Highest)
	}
}

func TestUserFromIdentity(t *testing.T) {
	e := testEnforcer(t)
	id := &oauth.UserIdentity{Issuer: dezi, UZI: "123456789", RoleCode: "01.016", URA: uraP4, Assurance: oauth.AssuranceHigh}
	tc := TokenContext{ClientURA: uraP4, GrantType: oauth.GrantTypeJWTBearer, Assertion: map[string]any{"sub": uraP4}, User: UserFromIdentity(id)}
	d, err := e.Authenticate(context.Background(), tc)
	if err != nil || d.Delivered != 4 {
		t.Fatalf("verified identity: %v %+v", err, d)
	}
	id.Assurance = oauth.AssuranceSubstantial
	tc.User = UserFromIdentity(id)
	if r := AsRefusal(e.CheckTokenRequest(context.Background(), tc)); r == nil || r.Delivered != 3 {
		t.Fatalf("substantial identity at plateau 4: %+v", r)
	}
	if UserFromIdentity(nil) != nil {
		t.Fatal("nil identity")
	}
}

func TestSignedUser(t *testing.T) {
	claims := map[string]any{"Dezi_id": "900000009", "loa_authn": LoAHigh,
		"relations": []any{map[string]any{"ura": uraP4, "roles": []any{"01.041", "30.000"}}}}
	if _, err := SignedUser(dezi, claims, uraP4, ""); err == nil {
		t.Fatal("two roles and none chosen: accepted")
	}
	u, err := SignedUser(dezi, claims, uraP4, "30.000")
	if err != nil || u.Role != "30.000" || u.ID != "900000009" || u.Organisation != uraP4 || u.LoA != LoAHigh {
		t.Fatalf("%+v %v", u, err)
	}
	if _, err := SignedUser(dezi, claims, uraP4, "01.015"); err == nil {
		t.Fatal("a role the user does not hold was accepted")
	}
}

// TestSetAgreements replaces the agreements of a running enforcer: the next
// decision is taken on the new set, and an invalid set changes nothing.
func TestSetAgreements(t *testing.T) {
	e := testEnforcer(t)
	noUser := TokenContext{ClientURA: uraP1, GrantType: oauth.GrantTypeClientCredentials}
	if err := e.CheckTokenRequest(context.Background(), noUser); err != nil {
		t.Fatalf("plateau 1 without user: %v", err)
	}
	raised := Config{Agreements: []PartnerConfig{{URA: uraP1, Name: "P1 hospital", Plateaus: Plateaus{Authentication: 2}}}}
	if err := e.SetAgreements(raised); err != nil {
		t.Fatal(err)
	}
	var r *Refusal
	if err := e.CheckTokenRequest(context.Background(), noUser); !errors.As(err, &r) || r.Function != Authentication || r.Required != 2 {
		t.Fatalf("after raising authentication to 2: %v, want a refusal (authentication, plateau 2)", err)
	}
	// A token issued at plateau 1 before the raise is refused at its next data access.
	access := AccessContext{PartnerURA: uraP1, Authenticated: 1, Application: "test", Interaction: "search-type", ResourceType: "Condition"}
	if err := e.CheckAccess(context.Background(), access); !errors.As(err, &r) || r.Function != Authentication {
		t.Errorf("data access with a plateau-1 token after the raise: %v", err)
	}
	if _, ok := e.Agreement(uraP2); ok {
		t.Error("P2's agreement survived the replacement")
	}
	invalid := Config{Agreements: []PartnerConfig{{URA: uraP1, Plateaus: Plateaus{Authentication: 1, Authorization: 3}}}}
	if err := e.SetAgreements(invalid); err == nil || !strings.Contains(err.Error(), "authorization at plateau 3") {
		t.Fatalf("invalid agreements: %v", err)
	}
	if a, _ := e.Agreement(uraP1); a.Plateau(Authentication) != 2 {
		t.Errorf("an invalid replacement changed P1's authentication plateau to %d", a.Plateau(Authentication))
	}
	if err := e.SetAgreements(Config{Default: Uniform(1)}); err != nil {
		t.Fatal(err)
	}
	if a, ok := e.Agreement(uraOther); !ok || !a.Default {
		t.Error("the default set at run time does not cover an unlisted partner")
	}
}
