package consent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/nl"
)

// registerJSON posts a registration to the provider registry API as ura.
func registerJSON(t *testing.T, e *env, ura string, reg any) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(reg)
	return do(t, e.pki.httpClient(t, ura), http.MethodPost, e.ts.URL+RegistryPath, "application/json", b)
}

func do(t *testing.T, hc *http.Client, method, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func TestClosedQuestionEndToEnd(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.client(t, uraHolder, nil) // no cache: every change shows at once
	patient := bsn(t, 20)
	q := question(patient)

	decide := func(want Decision) {
		t.Helper()
		got, err := c.Decide(ctx, q)
		if err != nil || got != want {
			t.Fatalf("Decide = %s, %v; want %s", got, err, want)
		}
	}
	decide(DecisionDeny) // unknown patient: nothing registered, no consent

	resp, body := registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	var reg Registration
	json.Unmarshal(body, &reg)
	if reg.HolderURA != uraHolder || reg.Source != SourceProvider || reg.RegisteredBy != uraHolder {
		t.Fatalf("registration %+v: holder must be the provider itself", reg)
	}
	decide(DecisionPermit)
	if err := Require(ctx, c, q); err != nil {
		t.Fatalf("Require = %v", err)
	}

	// Another hospital of the same category is not covered: the provider
	// registered consent about its own data.
	q2 := q
	q2.DataHolderURA = uraHolder2
	if d, err := c.Decide(ctx, q2); err != nil || d != DecisionDeny {
		t.Fatalf("other holder: %s, %v", d, err)
	}

	// The patient withdraws: DELETE by the provider that registered.
	resp, body = do(t, e.pki.httpClient(t, uraHolder), http.MethodDelete, e.ts.URL+RegistryPath+"/"+reg.ID, "", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	decide(DecisionDeny)
	err := Require(ctx, c, q)
	if !errors.Is(err, ErrNoConsent) || Outcome(err).Status != http.StatusForbidden {
		t.Fatalf("Require after withdrawal = %v", err)
	}

	// Every decision is in the audit log, with the patient.
	recs, err := e.srv.ownAudit.List(ctx, audit.Filter{Patient: patient})
	if err != nil {
		t.Fatal(err)
	}
	decisions := 0
	for _, r := range recs {
		if r.Interaction == "consent-decision" {
			decisions++
		}
	}
	if decisions != 6 {
		t.Errorf("audited %d decisions, want 6", decisions)
	}
}

func TestExpiredConsent(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.client(t, uraHolder, nil)
	patient := bsn(t, 21)
	until := e.clock.Now().Add(time.Hour)
	resp, body := registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3", "validUntil": until})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	if d, _ := c.Decide(ctx, question(patient)); d != DecisionPermit {
		t.Fatalf("before expiry: %s", d)
	}
	e.clock.Add(time.Hour)
	if d, _ := c.Decide(ctx, question(patient)); d != DecisionDeny {
		t.Fatalf("after expiry: %s", d)
	}
}

func TestClosedQuestionMalformedNeverPermits(t *testing.T) {
	e := newEnv(t, nil)
	patient := bsn(t, 22)
	// A permit exists, so any Permit below would be the parser's fault.
	if resp, body := registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3"}); resp.StatusCode != 201 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	q, _ := question(patient).Normalize()
	good := string(buildQuery(q, testMessageID, e.ts.URL+ClosedQuestionPath))
	hc := e.pki.httpClient(t, uraAsker)
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		decision    Decision // when status is 200
	}{
		{"valid", "application/soap+xml", good, 200, DecisionPermit},
		{"text/xml accepted", "text/xml; charset=utf-8", good, 200, DecisionPermit},
		{"wrong content type", "application/json", good, 415, ""},
		{"malformed XML", "application/soap+xml", good[:200], 400, ""},
		{"XXE", "application/soap+xml", strings.Replace(good, "\n", "\n<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/hostname\">]>\n", 1), 400, ""},
		{"wrong action", "application/soap+xml", strings.Replace(good, ">"+ActionQuery+"<", ">Nope<", 1), 400, ""},
		{"missing attribute", "application/soap+xml", strings.Replace(good, `code="01.015"`, `code=""`, 1), 200, DecisionIndeterminate},
		{"wrong event code", "application/soap+xml", strings.Replace(good, `code="GGC002"`, `code="GGC001"`, 1), 200, DecisionIndeterminate},
		{"wrong purpose", "application/soap+xml", strings.Replace(good, `code="TREAT"`, `code="COVERAGE"`, 1), 200, DecisionIndeterminate},
		{"too large", "application/soap+xml", good + strings.Repeat(" ", 70<<10), 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, hc, http.MethodPost, e.ts.URL+ClosedQuestionPath, tt.contentType, []byte(tt.body))
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			a, err := parseResponse(body)
			if tt.status != 200 {
				if err == nil || !strings.Contains(err.Error(), "SOAP fault") {
					t.Fatalf("want a SOAP fault, got %+v %v", a, err)
				}
				return
			}
			if err != nil || a.decision != tt.decision {
				t.Fatalf("answer %+v %v, want %s", a, err, tt.decision)
			}
			if tt.decision == DecisionPermit && a.relatesTo != testMessageID {
				t.Errorf("RelatesTo = %q", a.relatesTo)
			}
		})
	}
}

// TestClosedQuestionFaultsAudited: every SOAP fault is a refusal of a
// question about a patient and leaves an audit record with the asker, the
// status and the fault; what of the question was understood is recorded.
func TestClosedQuestionFaultsAudited(t *testing.T) {
	e := newEnv(t, nil)
	patient := bsn(t, 24)
	q, _ := question(patient).Normalize()
	good := string(buildQuery(q, testMessageID, e.ts.URL+ClosedQuestionPath))
	hc := e.pki.httpClient(t, uraAsker)
	faults := func() []audit.Record {
		t.Helper()
		recs, err := e.srv.ownAudit.List(context.Background(), audit.Filter{ActorURA: uraAsker})
		if err != nil {
			t.Fatal(err)
		}
		var out []audit.Record
		for _, r := range recs {
			if r.Interaction == "consent-decision" && r.Outcome >= 400 {
				out = append(out, r)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, contentType, body, says string
		status                        int
	}{
		{"wrong content type", "application/json", good, "Content-Type", 415},
		{"malformed XML", "application/soap+xml", good[:200], "SOAP fault Sender", 400},
		{"XXE", "application/soap+xml", strings.Replace(good, "\n", "\n<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/hostname\">]>\n", 1), "SOAP fault Sender", 400},
		{"wrong action", "application/soap+xml", strings.Replace(good, ">"+ActionQuery+"<", ">Nope<", 1), "wsa:Action", 400},
		{"too large", "application/soap+xml", good + strings.Repeat(" ", 70<<10), "too large", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(faults())
			resp, body := do(t, hc, http.MethodPost, e.ts.URL+ClosedQuestionPath, tc.contentType, []byte(tc.body))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			recs := faults()
			if len(recs) != before+1 {
				t.Fatalf("%d fault records added, want 1", len(recs)-before)
			}
			r := recs[len(recs)-1]
			if r.Outcome != tc.status || !strings.Contains(r.OutcomeText, tc.says) || !strings.HasPrefix(r.Address, "127.0.0.1:") {
				t.Errorf("record %+v, want outcome %d saying %q from 127.0.0.1", r, tc.status, tc.says)
			}
		})
	}

	// A question understood but not answerable names its patient and holder.
	e.srv.store.Close()
	resp, body := do(t, hc, http.MethodPost, e.ts.URL+ClosedQuestionPath, "application/soap+xml", []byte(good))
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("registry closed: status %d, want 500: %s", resp.StatusCode, body)
	}
	recs := faults()
	if len(recs) == 0 {
		t.Fatal("the Receiver fault left no audit record")
	}
	if r := recs[len(recs)-1]; r.Outcome != http.StatusInternalServerError || r.Patient != patient || r.Tenant != uraHolder ||
		!strings.Contains(r.OutcomeText, "registry is unavailable") {
		t.Errorf("record %+v, want outcome 500 naming patient %s and holder %s", r, patient, uraHolder)
	}
}

// TestClosedQuestionWithoutPeerAudited: a question that did not come over
// mTLS is refused and audited with its source.
func TestClosedQuestionWithoutPeerAudited(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest(http.MethodPost, "http://consent.invalid"+ClosedQuestionPath, strings.NewReader("<x/>"))
	req.RemoteAddr = "192.0.2.7:4000"
	rec := &recorder{header: http.Header{}}
	e.srv.Handler().ServeHTTP(rec, req)
	if rec.status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", rec.status)
	}
	recs, err := e.srv.ownAudit.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Outcome != http.StatusForbidden || recs[0].Address != "192.0.2.7:4000" || recs[0].ActorURA != "" {
		t.Errorf("audit records %+v, want one 403 from 192.0.2.7:4000", recs)
	}
}

func TestPeerWithoutCertificateRefused(t *testing.T) {
	e := newEnv(t, nil)
	// The handler itself refuses a request that did not come over mTLS
	// (embedded behind a plain listener by mistake).
	for _, path := range []string{ClosedQuestionPath, SubscriptionPath, RegistryPath, PortalPath} {
		req, _ := http.NewRequest(http.MethodPost, "http://consent.invalid"+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		rec := &recorder{header: http.Header{}}
		e.srv.Handler().ServeHTTP(rec, req)
		if rec.status != http.StatusForbidden {
			t.Errorf("%s without mTLS: %d", path, rec.status)
		}
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func TestRegistryAuthorization(t *testing.T) {
	e := newEnv(t, nil)
	patient := bsn(t, 23)
	tests := []struct {
		name   string
		ura    string
		reg    map[string]any
		status int
	}{
		{"own data", uraHolder, map[string]any{"patient": patient, "effect": "deny", "holderUra": uraHolder}, 201},
		{"someone else's data", uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderUra": uraHolder2}, 403},
		{"invalid BSN", uraHolder, map[string]any{"patient": "111111111", "effect": "permit", "holderType": "Z3"}, 400},
		{"unknown field", uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3", "everyone": true}, 400},
		{"bad effect", uraHolder, map[string]any{"patient": patient, "effect": "sure", "holderType": "Z3"}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := registerJSON(t, e, tt.ura, tt.reg)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("error content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	// Another provider neither sees nor withdraws it.
	resp, body := do(t, e.pki.httpClient(t, uraHolder2), http.MethodGet, e.ts.URL+RegistryPath+"?patient="+patient, "", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("other provider lists %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, e.pki.httpClient(t, uraHolder), http.MethodGet, e.ts.URL+RegistryPath+"?patient="+patient, "", nil)
	var regs []Registration
	if resp.StatusCode != 200 || json.Unmarshal(body, &regs) != nil || len(regs) != 1 {
		t.Fatalf("own list %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, e.pki.httpClient(t, uraHolder2), http.MethodDelete, e.ts.URL+RegistryPath+"/"+regs[0].ID, "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("other provider revokes: %d", resp.StatusCode)
	}
}

func portalConsent(patient, effect string) map[string]any {
	return map[string]any{
		"resourceType": "Consent",
		"status":       "active",
		"scope":        map[string]any{"coding": []any{map[string]any{"system": systemConsentScope, "code": "patient-privacy"}}},
		"category":     []any{map[string]any{"coding": []any{map[string]any{"system": systemDataCategory, "code": "GGC002"}}}},
		"patient":      map[string]any{"identifier": map[string]any{"system": "urn:oid:" + nl.OIDBSN, "value": patient}},
		"contained": []any{
			map[string]any{"resourceType": "Organization", "id": "h", "type": []any{map[string]any{"coding": []any{map[string]any{"system": systemFacilityType, "code": "Z3"}}}}},
			map[string]any{"resourceType": "Organization", "id": "r", "identifier": []any{map[string]any{"system": nl.SystemURA, "value": uraAsker}}},
		},
		"provision": map[string]any{
			"type": effect,
			"actor": []any{
				map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": systemParticipation, "code": "CST"}}}, "reference": map[string]any{"reference": "#h"}},
				map[string]any{"role": map[string]any{"coding": []any{map[string]any{"system": systemParticipation, "code": "IRCP"}}}, "reference": map[string]any{"reference": "#r"}},
			},
			"purpose": []any{map[string]any{"system": systemActReasonSTU3, "code": "TREAT"}},
		},
	}
}

func TestPortalAPI(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	patient := bsn(t, 24)
	c := e.client(t, uraHolder, nil)
	post := func(ura string, v any) (*http.Response, []byte) {
		b, _ := json.Marshal(v)
		return do(t, e.pki.httpClient(t, ura), http.MethodPost, e.ts.URL+PortalPath, "application/fhir+json", b)
	}
	if resp, _ := post(uraHolder, portalConsent(patient, "permit")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("non-portal on the portal API: %d", resp.StatusCode)
	}
	resp, body := post(uraPortal, portalConsent(patient, "permit"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("portal create: %d %s", resp.StatusCode, body)
	}
	if d, err := c.Decide(ctx, question(patient)); err != nil || d != DecisionPermit {
		t.Fatalf("after portal permit: %s %v", d, err)
	}
	// The requester scope holds: another requester is not covered.
	other := question(patient)
	other.RequesterURA = "00000021"
	if d, _ := c.Decide(ctx, other); d != DecisionDeny {
		t.Fatalf("other requester: %s", d)
	}
	var created consentResource
	json.Unmarshal(body, &created)
	resp, body = do(t, e.pki.httpClient(t, uraPortal), http.MethodGet,
		e.ts.URL+PortalPath+"?patient.identifier="+nl.SystemBSN+"|"+patient, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), created.ID) || !strings.Contains(string(body), `"searchset"`) {
		t.Fatalf("search: %d %s", resp.StatusCode, body)
	}

	bad := []struct {
		name string
		mod  func(map[string]any)
	}{
		{"inactive", func(m map[string]any) { m["status"] = "inactive" }},
		{"no holder", func(m map[string]any) {
			p := m["provision"].(map[string]any)
			p["actor"] = p["actor"].([]any)[1:]
		}},
		{"dangling reference", func(m map[string]any) { m["contained"] = []any{} }},
		{"other category", func(m map[string]any) {
			m["category"] = []any{map[string]any{"coding": []any{map[string]any{"system": systemDataCategory, "code": "GGC009"}}}}
		}},
		{"bad BSN", func(m map[string]any) {
			m["patient"] = map[string]any{"identifier": map[string]any{"system": nl.SystemBSN, "value": "123"}}
		}},
		{"unknown element", func(m map[string]any) { m["wish"] = "everything" }},
		{"not a Consent", func(m map[string]any) { m["resourceType"] = "Patient" }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			m := portalConsent(patient, "deny")
			tt.mod(m)
			resp, body := post(uraPortal, m)
			var oo struct {
				ResourceType string `json:"resourceType"`
			}
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
				t.Fatalf("status %d %s, want 400 OperationOutcome", resp.StatusCode, body)
			}
		})
	}
	// Nothing of the refused deny got in.
	if d, _ := c.Decide(ctx, question(patient)); d != DecisionPermit {
		t.Fatalf("after refused posts: %s", d)
	}
	resp, _ = do(t, e.pki.httpClient(t, uraPortal), http.MethodDelete, e.ts.URL+PortalPath+"/"+created.ID, "", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("portal withdraw: %d", resp.StatusCode)
	}
	if d, _ := c.Decide(ctx, question(patient)); d != DecisionDeny {
		t.Fatalf("after withdrawal: %s", d)
	}
}

func TestPostgresServer(t *testing.T) {
	st := openPostgres(t)
	e := newEnv(t, func(c *ServerConfig) { c.Store = st })
	patient := bsn(t, 25)
	if resp, body := registerJSON(t, e, uraHolder, map[string]any{"patient": patient, "effect": "permit", "holderType": "Z3"}); resp.StatusCode != 201 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	if d, err := e.client(t, uraHolder, nil).Decide(context.Background(), question(patient)); err != nil || d != DecisionPermit {
		t.Fatalf("Decide = %s %v", d, err)
	}
}
