package consult

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

type bundle struct {
	ResourceType string
	Type         string
	Entry        []struct {
		FullURL  string
		Resource json.RawMessage
	}
}

func parseBundle(t *testing.T, raw json.RawMessage) bundle {
	t.Helper()
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "collection" {
		t.Fatalf("not a collection Bundle (%v): %.200s", err, raw)
	}
	return b
}

// patientBSNs lists the BSNs of the Patient resources in b.
func patientBSNs(b bundle) []string {
	var out []string
	for _, e := range b.Entry {
		var p struct {
			ResourceType string
			Identifier   []struct{ System, Value string }
		}
		_ = json.Unmarshal(e.Resource, &p)
		if p.ResourceType != "Patient" {
			continue
		}
		for _, id := range p.Identifier {
			if id.System == nl.SystemBSN {
				out = append(out, id.Value)
			}
		}
	}
	return out
}

func TestConsult(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	drugUse := bgz.Queries()[7]
	if drugUse.Name != "DrugUse" {
		t.Fatalf("block 7 is %s", drugUse.Name)
	}
	down := httptest.NewTLSServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more

	for _, tc := range []struct {
		name    string
		patient int
		setup   func(t *testing.T)
		// want is the status of every block, except those in except.
		want      int
		except    map[string]int
		outcome   string // part of every refused block's outcome
		resources bool
	}{
		{name: "consent permits: every block answered", patient: 0, want: http.StatusOK, resources: true},
		{name: "no consent: every block refused", patient: 1, want: http.StatusForbidden, outcome: "consent does not permit"},
		{name: "consent service down: fail closed", patient: 0, want: http.StatusServiceUnavailable, outcome: "consent service could not be consulted",
			setup: func(t *testing.T) {
				e.checker.set(e.consentClient(t, down.URL, 0))
				t.Cleanup(func() { e.checker.set(e.consentClient(t, e.consentTS.URL, 0)) })
			}},
		{name: "holder policy withholds one block", patient: 0, want: http.StatusOK, resources: true,
			except: map[string]int{drugUse.Name: http.StatusForbidden}, outcome: "withheld for this role",
			setup: func(t *testing.T) {
				p := func(req *rest.Request, tok *oauth.AccessToken) error {
					if _, err := bgz.Match(bgz.SearchOf(req.Type, req.Operation, req.Params), e.patients[0].BSN); err == nil && strings.Contains(req.Params.Get("code"), "228366006") {
						return fhir.Errorf(http.StatusForbidden, "forbidden", "DrugUse is withheld for this role")
					}
					return nil
				}
				e.policy.Store(&p)
				t.Cleanup(func() { e.policy.Store(nil) })
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			res, err := e.requester.Consult(ctx, uraRequester, e.request(tc.patient))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Queries) != len(bgz.Queries()) {
				t.Fatalf("%d query results, want %d", len(res.Queries), len(bgz.Queries()))
			}
			for _, q := range res.Queries {
				want := tc.want
				if s, ok := tc.except[q.Block]; ok {
					want = s
				}
				if q.Status != want {
					t.Errorf("%s: status %d (%s), want %d", q.Block, q.Status, q.Outcome, want)
				}
				if q.Status != http.StatusOK && !strings.Contains(q.Outcome, tc.outcome) {
					t.Errorf("%s: outcome %q lacks %q", q.Block, q.Outcome, tc.outcome)
				}
			}
			b := parseBundle(t, res.Bundle)
			if len(b.Entry) != res.Resources {
				t.Errorf("bundle has %d entries, result says %d", len(b.Entry), res.Resources)
			}
			if !tc.resources {
				if res.Resources != 0 || res.Complete {
					t.Errorf("refused consult returned %d resources (complete %v)", res.Resources, res.Complete)
				}
				return
			}
			if res.Complete != (len(tc.except) == 0) {
				t.Errorf("complete = %v", res.Complete)
			}
			if got := patientBSNs(b); len(got) != 1 || got[0] != e.patients[tc.patient].BSN {
				t.Errorf("patients in the bundle: %v", got)
			}
			answered := 0
			for _, q := range res.Queries {
				if q.Status == http.StatusOK && q.Matches > 0 {
					answered++
				}
			}
			t.Logf("%d resources, %d blocks with matches", res.Resources, answered)
			if answered < len(res.Queries)/2 {
				t.Errorf("only %d blocks had matches", answered)
			}
		})
	}
}

// TestHolderRefusesOutsideTheConsult drives the holder's FHIR endpoint
// directly with a valid consult token, the way a misbehaving peer would.
func TestHolderRefusesOutsideTheConsult(t *testing.T) {
	e := newEnv(t, 0)
	base := e.dir[uraHolder+" "+PayloadBgZServer]
	tok, err := e.token(t, base)
	if err != nil {
		t.Fatal(err)
	}
	consented, other := e.patients[0].BSN, e.patients[1].BSN
	problem := bgz.Queries()[5].Query(consented) // Condition?patient.identifier=...
	for _, tc := range []struct {
		name   string
		path   string
		status int
		diag   string
	}{
		{"a BgZ query for the consented patient", problem, http.StatusOK, ""},
		{"with paging and the Provenance revinclude", problem + "&_count=2&" + bgz.ProvenanceRevinclude, http.StatusOK, ""},
		{"a query not in the BgZ set", "Condition?patient.identifier=" + nl.SystemBSN + "|" + consented + "&clinical-status=active", http.StatusForbidden, "not one of the bgz queries"},
		{"a search without a patient", "Condition?code=" + bgz.SystemSNOMED + "|1", http.StatusForbidden, "exactly one patient"},
		{"two patients in one search", "Condition?patient.identifier=" + nl.SystemBSN + "|" + consented + "," + nl.SystemBSN + "|" + other, http.StatusForbidden, "exactly one patient"},
		{"a read", "Patient/" + patientID(t, e, 0), http.StatusForbidden, "only the searches"},
		{"another patient than consented", bgz.Queries()[5].Query(other), http.StatusForbidden, "consent does not permit"},
		{"a write", "", http.StatusForbidden, "only the searches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var body []byte
			if tc.path == "" {
				req, _ := http.NewRequest(http.MethodPost, base+"/Condition", strings.NewReader(`{"resourceType":"Condition","subject":{"reference":"Patient/x"}}`))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/fhir+json")
				resp, err := e.party.HTTP.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				status = resp.StatusCode
			} else {
				status, body = e.get(t, tok, base+"/"+tc.path)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", status, tc.status, body)
			}
			if tc.diag != "" && body != nil && !strings.Contains(string(body), tc.diag) {
				t.Errorf("answer lacks %q: %.300s", tc.diag, body)
			}
		})
	}
	// The token opens only its own participant's endpoint.
	if status, _ := e.get(t, tok, e.dir[uraHolder2+" "+PayloadBgZServer]+"/"+problem); status != http.StatusUnauthorized {
		t.Errorf("token at another participant's endpoint: status %d, want 401", status)
	}
}

func patientID(t *testing.T, e *env, i int) string {
	t.Helper()
	var p struct{ ID string }
	if err := json.Unmarshal(e.patients[i].Resources[0], &p); err != nil || p.ID == "" {
		t.Fatalf("demo patient id: %v", err)
	}
	return p.ID
}

// TestTokenRequests covers the holder's authorization server decisions on
// consult token requests, over the real token endpoint.
func TestTokenRequests(t *testing.T) {
	e := newEnv(t, 0)
	base := e.dir[uraHolder+" "+PayloadBgZServer]
	issuer := e.dir[uraHolder+" "+PayloadAuthServer]
	for _, tc := range []struct {
		name     string
		resource string
		want     error
		code     string
	}{
		{"a participant's endpoint", base, nil, ""},
		{"the other participant's endpoint", e.dir[uraHolder2+" "+PayloadBgZServer], nil, ""},
		{"not a participant", issuer + "/fhir/stu3/99999999", oauth.ErrInvalidTarget, "invalid_target"},
		{"with a trailing slash", base + "/", oauth.ErrInvalidTarget, "invalid_target"},
		{"another server", "https://elsewhere.example/fhir/stu3/" + uraHolder, oauth.ErrInvalidTarget, "invalid_target"},
		{"malformed", "/fhir/stu3/" + uraHolder, oauth.ErrInvalidTarget, "invalid_target"},
		{"with a fragment", base + "#x", oauth.ErrInvalidTarget, "invalid_target"},
		{"no resource", "", oauth.ErrInvalidGrant, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.token(t, tc.resource)
			if !errors.Is(err, tc.want) && (err != nil || tc.want != nil) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var er *oauth.ErrorResponse
			if tc.want != nil && (!errors.As(err, &er) || er.Status != http.StatusBadRequest || er.Code != tc.code) {
				t.Errorf("refusal %+v, want 400 %s", er, tc.code)
			}
		})
	}
}

func TestResolveGrant(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	base := func(t string) string { return "https://node.example/fhir/stu3/" + t }
	s := New(Config{Applications: bgzOnly, Tenants: func() []string { return []string{uraHolder} }, FHIRBase: base, Now: func() time.Time { return now }})
	user := map[string]any{plateau.ClaimUserID: userUZI, plateau.ClaimUserRole: userRole, plateau.ClaimUserRoleSystem: SystemUZIRole,
		AssertionRequesterType: "Z3"}
	good := oauth.GrantRequest{ClientID: uraRequester, GrantType: GrantTypeJWT, Scope: []string{ApplicationBgZ}, Resource: base(uraHolder), Assertion: user}
	g, err := s.ResolveGrant(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	if g.Audience != base(uraHolder) || g.Subject != uraRequester || g.Claims[ClaimConsult] != uraHolder ||
		g.Claims[ClaimRequesterType] != "Z3" || len(g.Scope) != 1 || g.Scope[0] != ApplicationBgZ || g.NotAfter.Sub(now) > MaxTokenLifetime {
		t.Errorf("grant %+v", g)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*oauth.GrantRequest)
		want   error
	}{
		{"client_credentials", func(r *oauth.GrantRequest) { r.GrantType = oauth.GrantTypeClientCredentials }, oauth.ErrInvalidGrant},
		{"authorization base", func(r *oauth.GrantRequest) { r.AuthorizationBase = "x" }, oauth.ErrInvalidGrant},
		{"no resource", func(r *oauth.GrantRequest) { r.Resource = "" }, oauth.ErrInvalidGrant},
		{"resource of no participant", func(r *oauth.GrantRequest) { r.Resource = base("00000099") }, oauth.ErrInvalidTarget},
		{"no scope", func(r *oauth.GrantRequest) { r.Scope = nil }, oauth.ErrInvalidScope},
		{"unknown application", func(r *oauth.GrantRequest) { r.Scope = []string{"eoverdracht"} }, oauth.ErrInvalidScope},
		{"two scopes", func(r *oauth.GrantRequest) { r.Scope = []string{ApplicationBgZ, "x"} }, oauth.ErrInvalidScope},
		{"no user", func(r *oauth.GrantRequest) { r.Assertion = map[string]any{} }, oauth.ErrInvalidGrant},
		{"malformed requester type", func(r *oauth.GrantRequest) {
			r.Assertion = map[string]any{plateau.ClaimUserID: userUZI, plateau.ClaimUserRole: userRole, AssertionRequesterType: "Z 3"}
		}, oauth.ErrInvalidGrant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.mutate(&r)
			if _, err := s.ResolveGrant(context.Background(), r); !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// fixedChecker answers every question the same way and remembers the last.
type fixedChecker struct {
	d    consent.Decision
	err  error
	last consent.Question
}

func (f *fixedChecker) Decide(_ context.Context, q consent.Question) (consent.Decision, error) {
	f.last = q
	return f.d, f.err
}

// TestAuthorizeData checks the holder's per-request decision on tokens as
// the resource server verified them.
func TestAuthorizeData(t *testing.T) {
	base := func(t string) string { return "https://node.example/fhir/stu3/" + t }
	const bsn = "999911120"
	q := bgz.Queries()[5].Query(bsn)
	_, _, params, _ := bgz.ParseQuery(q)
	request := func(tenant string) *rest.Request {
		return &rest.Request{Tenant: tenant, Interaction: rest.InteractionSearchType, Type: "Condition", Params: params}
	}
	token := func(mut func(*oauth.AccessToken)) *oauth.AccessToken {
		tok := &oauth.AccessToken{Subject: uraRequester, ClientID: uraRequester, Scope: []string{ApplicationBgZ}, Audience: []string{base(uraHolder)},
			Claims: map[string]any{ClaimConsult: uraHolder, ClaimRequesterType: "Z3", plateau.ClaimAuthn: float64(3), plateau.ClaimUser: userUZI, plateau.ClaimRole: userRole}}
		if mut != nil {
			mut(tok)
		}
		return tok
	}
	for _, tc := range []struct {
		name    string
		checker *fixedChecker
		tok     *oauth.AccessToken
		tenant  string
		status  int // 0: allowed
		profile string
	}{
		{"permit", &fixedChecker{d: consent.DecisionPermit}, token(nil), uraHolder, 0, "Mitz closed question: Permit"},
		{"deny", &fixedChecker{d: consent.DecisionDeny}, token(nil), uraHolder, 403, "Mitz closed question: Deny"},
		{"not applicable", &fixedChecker{d: consent.DecisionNotApplicable}, token(nil), uraHolder, 403, "Mitz closed question: NotApplicable"},
		{"indeterminate", &fixedChecker{d: consent.DecisionIndeterminate}, token(nil), uraHolder, 403, "Mitz closed question: Indeterminate"},
		{"unavailable", &fixedChecker{err: consent.ErrUnavailable}, token(nil), uraHolder, 503, "Mitz closed question: unavailable"},
		{"other error, even with Permit", &fixedChecker{d: consent.DecisionPermit, err: errors.New("boom")}, token(nil), uraHolder, 503, "Mitz closed question: unavailable"},
		{"token for another tenant", &fixedChecker{d: consent.DecisionPermit}, token(nil), uraHolder2, 403, ""},
		{"not a consult token", &fixedChecker{d: consent.DecisionPermit}, token(func(t *oauth.AccessToken) { delete(t.Claims, ClaimConsult) }), uraHolder, 403, ""},
		{"another audience", &fixedChecker{d: consent.DecisionPermit}, token(func(t *oauth.AccessToken) { t.Audience = []string{base(uraHolder2)} }), uraHolder, 403, ""},
		{"no application scope", &fixedChecker{d: consent.DecisionPermit}, token(func(t *oauth.AccessToken) { t.Scope = []string{"x"} }), uraHolder, 403, ""},
		{"no user", &fixedChecker{d: consent.DecisionPermit}, token(func(t *oauth.AccessToken) { delete(t.Claims, plateau.ClaimUser) }), uraHolder, 403, ""},
		{"no requester type", &fixedChecker{d: consent.DecisionPermit}, token(func(t *oauth.AccessToken) { delete(t.Claims, ClaimRequesterType) }), uraHolder, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Applications: bgzOnly, Tenants: func() []string { return []string{uraHolder, uraHolder2} }, FHIRBase: base,
				FacilityType: func(string) string { return holderType }, Consent: tc.checker})
			ctx := WithCheck(context.Background())
			err := s.AuthorizeData(ctx, tc.tok, request(tc.tenant))
			status := 0
			if err != nil {
				fe := fhir.AsError(err)
				if fe == nil {
					t.Fatalf("error %v is no fhir.Error", err)
				}
				status = fe.Status
			}
			if status != tc.status {
				t.Fatalf("status %d (%v), want %d", status, err, tc.status)
			}
			c, _ := CheckFrom(ctx)
			if c.ConsentProfile != tc.profile {
				t.Errorf("consent profile %q, want %q", c.ConsentProfile, tc.profile)
			}
			if tc.profile != "" {
				want := consent.Question{PatientBSN: bsn, DataHolderURA: uraHolder, DataHolderType: holderType, RequesterURA: uraRequester,
					RequesterType: "Z3", RequesterRole: userRole, RequesterUZI: userUZI, Purpose: "TREAT"}
				if tc.checker.last != want {
					t.Errorf("question %+v, want %+v", tc.checker.last, want)
				}
				if c.Block != "Problem" || c.PatientBSN != bsn {
					t.Errorf("check %+v", c)
				}
			}
		})
	}
}

// TestAuthorizeDataConsentSource: with ConsentSource the Checker is chosen
// per question (by the requester) and the audit profile names it; no
// Checker refuses with 503.
func TestAuthorizeDataConsentSource(t *testing.T) {
	base := func(t string) string { return "https://node.example/fhir/stu3/" + t }
	_, _, params, _ := bgz.ParseQuery(bgz.Queries()[5].Query("999911120"))
	local, mitz := &fixedChecker{d: consent.DecisionPermit}, &fixedChecker{d: consent.DecisionDeny}
	const uraOther = "00000055"
	s := New(Config{Applications: bgzOnly, Tenants: func() []string { return []string{uraHolder} }, FHIRBase: base,
		FacilityType: func(string) string { return holderType }, Consent: mitz,
		ConsentSource: func(q consent.Question) (consent.Checker, string) {
			switch q.RequesterURA {
			case uraRequester:
				return local, "plateau 1 local registry"
			case uraOther:
				return mitz, "plateau 4 Mitz closed question"
			}
			return nil, "plateau 2 regional portal (not configured)"
		}})
	for _, tc := range []struct {
		requester string
		status    int
		profile   string
	}{
		{uraRequester, 0, "plateau 1 local registry: Permit"},
		{uraOther, http.StatusForbidden, "plateau 4 Mitz closed question: Deny"},
		{"00000066", http.StatusServiceUnavailable, "plateau 2 regional portal (not configured): unavailable"},
	} {
		tok := &oauth.AccessToken{Subject: tc.requester, ClientID: tc.requester, Scope: []string{ApplicationBgZ}, Audience: []string{base(uraHolder)},
			Claims: map[string]any{ClaimConsult: uraHolder, ClaimRequesterType: "Z3", plateau.ClaimAuthn: float64(3), plateau.ClaimUser: userUZI, plateau.ClaimRole: userRole}}
		ctx := WithCheck(context.Background())
		err := s.AuthorizeData(ctx, tok, &rest.Request{Tenant: uraHolder, Interaction: rest.InteractionSearchType, Type: "Condition", Params: params})
		status := 0
		if fe := fhir.AsError(err); fe != nil {
			status = fe.Status
		} else if err != nil {
			t.Fatalf("%s: error %v is no fhir.Error", tc.requester, err)
		}
		c, _ := CheckFrom(ctx)
		if status != tc.status || c.ConsentProfile != tc.profile {
			t.Errorf("requester %s: status %d, profile %q; want %d, %q", tc.requester, status, c.ConsentProfile, tc.status, tc.profile)
		}
		// A refusal for want of consent names the function and plateau.
		if want := "consent decision Deny of the Mitz closed question (consent, plateau 4)"; tc.status == http.StatusForbidden &&
			!strings.Contains(fhir.AsError(err).Issues[0].Diagnostics, want) {
			t.Errorf("requester %s: diagnostics %q, want %q", tc.requester, fhir.AsError(err).Issues[0].Diagnostics, want)
		}
	}
	if local.last.RequesterURA != uraRequester || mitz.last.RequesterURA != uraOther {
		t.Errorf("questions went to the wrong source: local %+v, Mitz %+v", local.last, mitz.last)
	}
}

func TestConsultRequestErrors(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tenant string
		mutate func(*Request)
		status int
	}{
		{"unknown participant", "00000099", nil, http.StatusNotFound},
		{"invalid BSN", uraRequester, func(r *Request) { r.PatientBSN = "123456789" }, http.StatusBadRequest},
		{"invalid holder", uraRequester, func(r *Request) { r.HolderURA = "x" }, http.StatusBadRequest},
		{"no user", uraRequester, func(r *Request) { r.UserID = "" }, http.StatusBadRequest},
		{"unknown application", uraRequester, func(r *Request) { r.Application = "eoverdracht" }, http.StatusBadRequest},
		{"holder not in the addressbook", uraRequester, func(r *Request) { r.HolderURA = "00000077" }, http.StatusUnprocessableEntity},
		{"addressbook unreachable", uraRequester, func(r *Request) { r.HolderURA = uraDirectoryDown }, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request(0)
			if tc.mutate != nil {
				tc.mutate(&r)
			}
			_, err := e.requester.Consult(ctx, tc.tenant, r)
			fe := fhir.AsError(err)
			if fe == nil || fe.Status != tc.status {
				t.Fatalf("error %v, want status %d", err, tc.status)
			}
		})
	}
}
