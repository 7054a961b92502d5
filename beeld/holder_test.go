package beeld

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit/audittest"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

const holderURA = "90000002"

var otherPatient = Patient{BSN: "999990020", Family: "Jansen", Given: "Piet", Sex: "M"}

// consentByPatient permits the patients listed, denies the rest.
type consentByPatient map[string]bool

func (c consentByPatient) Decide(_ context.Context, q consent.Question) (consent.Decision, error) {
	if q.DataHolderURA != holderURA || q.RequesterURA != "90000001" || q.RequesterRole != "01.015" || q.RequesterType != "Z1" {
		return "", errors.New("unexpected question")
	}
	if c[q.PatientBSN] {
		return consent.DecisionPermit, nil
	}
	return consent.DecisionDeny, nil
}

// holderFixture is a holder in front of a PACS with two patients' studies;
// access tokens are named by the bearer value.
type holderFixture struct {
	srv, pacs   *httptest.Server
	log         *audittest.Log
	mine, other []*Study
	admitted    []Access
	// now is the holder's clock; owners counts the PACS queries of whose
	// a study is, decisions the consent questions.
	now               time.Time
	owners, decisions atomic.Int64
}

// countingTransport counts the QIDO-RS queries of a study's patient.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Has("StudyInstanceUID") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// countingChecker counts the consent questions.
type countingChecker struct {
	consent.Checker
	n *atomic.Int64
}

func (c countingChecker) Decide(ctx context.Context, q consent.Question) (consent.Decision, error) {
	c.n.Add(1)
	return c.Checker.Decide(ctx, q)
}

func token(tenant, bsn string) *oauth.AccessToken {
	return &oauth.AccessToken{Subject: "90000001", ClientID: "90000001", Scope: []string{Application},
		Claims: map[string]any{consult.ClaimConsult: tenant, ClaimPatient: bsn, plateau.ClaimAuthn: 1,
			plateau.ClaimUser: "900012345", plateau.ClaimRole: "01.015", consult.ClaimRequesterType: "Z1"}}
}

func newHolderFixture(t *testing.T) *holderFixture {
	t.Helper()
	pacs, mine, other := testPACS(t)
	f := &holderFixture{pacs: pacs, log: &audittest.Log{}, mine: mine, other: other, now: time.Now()}
	pacsHTTP := &http.Client{Transport: countingTransport{next: pacs.Client().Transport, n: &f.owners}}
	tokens := map[string]*oauth.AccessToken{
		"mine":    token(holderURA, testPatient.BSN),
		"other":   token(holderURA, otherPatient.BSN),
		"foreign": token("90000004", testPatient.BSN),
	}
	var base string
	h := NewHolder(HolderConfig{
		Backend: func(tenant string) (Backend, bool) {
			return Backend{Base: pacs.URL, HTTP: pacsHTTP}, tenant == holderURA
		},
		Tenants:      func() []string { return []string{holderURA} },
		FHIRBase:     func(t string) string { return base + "/fhir/r4/" + t },
		DICOMwebBase: func(t string) string { return base + "/dicomweb/" + t },
		Verify: func(r *http.Request, aud string) (*oauth.AccessToken, error) {
			if aud != base+"/fhir/r4/"+holderURA {
				return nil, errors.New("wrong audience")
			}
			tok, ok := tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
			if !ok {
				return nil, errors.New("no token")
			}
			return tok, nil
		},
		PeerURA: func(*http.Request) string { return "90000001" },
		Admit: func(_ context.Context, _ *oauth.AccessToken, a Access) error {
			f.admitted = append(f.admitted, a)
			return nil
		},
		FacilityType: func(string) string { return "Z3" },
		ConsentSource: func(consent.Question) (consent.Checker, string) {
			return countingChecker{consentByPatient{testPatient.BSN: true}, &f.decisions}, "Mitz closed question"
		},
		Audit: f.log,
		Now:   func() time.Time { return f.now },
	})
	mux := http.NewServeMux()
	h.Routes(mux)
	f.srv = httptest.NewServer(mux)
	base = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

func (f *holderFixture) get(t *testing.T, path, tok, accept string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func TestImagingStudySearch(t *testing.T) {
	f := newHolderFixture(t)
	q := "/fhir/r4/" + holderURA + "/ImagingStudy?" + url.Values{"patient.identifier": {SystemBSN + "|" + testPatient.BSN}}.Encode()
	res, body := f.get(t, q, "mine", "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("search: %d %s", res.StatusCode, body)
	}
	studies, err := summaries(body, testPatient.BSN)
	if err != nil {
		t.Fatal(err)
	}
	if len(studies) != 2 {
		t.Fatalf("%d studies, want 2", len(studies))
	}
	s := studies[1]
	if s.UID != f.mine[1].UID || s.Series != 2 || s.Instances != 3 || s.Started != "2026-09-15" ||
		!slices.Equal(s.Modalities, []string{"US"}) || s.Endpoint != f.srv.URL+"/dicomweb/"+holderURA ||
		!slices.Equal(s.SOPInstanceUIDs, SortedUIDs(f.mine[1])) {
		t.Errorf("study summary %+v", s)
	}
	if strings.Contains(string(body), f.pacs.URL) {
		t.Error("the answer names the PACS's own URL")
	}
	var doc struct {
		Entry []struct {
			FullURL  string
			Resource struct {
				Identifier []struct{ System, Value string }
				Subject    struct{ Display string }
			}
		}
	}
	_ = json.Unmarshal(body, &doc)
	if e := doc.Entry[0]; e.FullURL != f.srv.URL+"/fhir/r4/"+holderURA+"/ImagingStudy/"+f.mine[0].UID ||
		e.Resource.Identifier[0].System != SystemDICOMUID || e.Resource.Identifier[0].Value != "urn:oid:"+f.mine[0].UID ||
		e.Resource.Subject.Display != "Anna de Vries" {
		t.Errorf("entry %+v", e)
	}
	rec := f.log.Last()
	if rec.Outcome != http.StatusOK || rec.Patient != testPatient.BSN || rec.Tenant != holderURA || rec.ActorURA != "90000001" ||
		len(rec.Resources) != 2 || !strings.HasSuffix(rec.ConsentProfile, "Permit") {
		t.Errorf("audit record %+v", rec)
	}
	if len(f.admitted) != 1 || f.admitted[0].Interaction != "search-type" || f.admitted[0].Patient != testPatient.BSN {
		t.Errorf("agreement asked %+v", f.admitted)
	}
}

func TestWADOThroughHolder(t *testing.T) {
	f := newHolderFixture(t)
	st := f.mine[1]
	res, body := f.get(t, "/dicomweb/"+holderURA+"/studies/"+st.UID, "mine", MediaStudy)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("WADO-RS: %d %s", res.StatusCode, body)
	}
	var got []string
	err := ReadMultipart(res.Header.Get("Content-Type"), strings.NewReader(string(body)), func(part io.Reader) error {
		b, _ := io.ReadAll(part)
		info, err := ParseInstance(b)
		got = append(got, info.SOPInstanceUID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, SortedUIDs(st)) {
		t.Errorf("instances %v, want %v", got, SortedUIDs(st))
	}
	rec := f.log.Last()
	if rec.Outcome != http.StatusOK || rec.Interaction != "read" || !slices.Equal(rec.Resources, []string{"ImagingStudy/" + st.UID}) || rec.Patient != testPatient.BSN {
		t.Errorf("audit record %+v", rec)
	}

	// Metadata and searches come back with the node's URLs, the patient's only.
	res, body = f.get(t, "/dicomweb/"+holderURA+"/studies/"+st.UID+"/metadata", "mine", "")
	if res.StatusCode != http.StatusOK || strings.Contains(string(body), f.pacs.URL) || !strings.Contains(string(body), f.srv.URL+"/dicomweb/"+holderURA+"/studies/") {
		t.Errorf("metadata: %d %s", res.StatusCode, body)
	}
	res, body = f.get(t, "/dicomweb/"+holderURA+"/studies", "mine", "")
	var sets []Dataset
	_ = json.Unmarshal(body, &sets)
	if res.StatusCode != http.StatusOK || len(sets) != 2 || sets[0].String(TagPatientID) != testPatient.BSN ||
		sets[0].String(TagRetrieveURL) != f.srv.URL+"/dicomweb/"+holderURA+"/studies/"+f.mine[0].UID {
		t.Errorf("QIDO-RS studies: %d %s", res.StatusCode, body)
	}
	res, body = f.get(t, "/dicomweb/"+holderURA+"/studies/"+st.UID+"/series", "mine", "")
	_ = json.Unmarshal(body, &sets)
	if res.StatusCode != http.StatusOK || len(sets) != 2 {
		t.Errorf("QIDO-RS series: %d %s", res.StatusCode, body)
	}
}

func TestHolderRefusals(t *testing.T) {
	f := newHolderFixture(t)
	mine, theirs := f.mine[0], f.other[0]
	search := func(bsn string) string {
		return "/fhir/r4/" + holderURA + "/ImagingStudy?" + url.Values{"patient.identifier": {SystemBSN + "|" + bsn}}.Encode()
	}
	for _, c := range []struct {
		name, path, tok string
		status          int
		diagnostics     string
		patient         string // the record's patient
	}{
		{"no token", "/dicomweb/" + holderURA + "/studies/" + mine.UID, "", http.StatusUnauthorized, "access token", ""},
		{"unknown token", "/dicomweb/" + holderURA + "/studies/" + mine.UID, "forged", http.StatusUnauthorized, "access token", ""},
		{"token for another participant", "/dicomweb/" + holderURA + "/studies/" + mine.UID, "foreign", http.StatusForbidden, "not issued for this participant", ""},
		{"study of another patient", "/dicomweb/" + holderURA + "/studies/" + theirs.UID, "mine", http.StatusForbidden, "not of the access token's patient", testPatient.BSN},
		{"instance of another patient's study", "/dicomweb/" + holderURA + "/studies/" + theirs.UID + "/series/" + theirs.Series[0].UID + "/instances/" + theirs.Series[0].Instances[0].SOPInstanceUID, "mine", http.StatusForbidden, "not of the access token's patient", testPatient.BSN},
		{"metadata of another patient's study", "/dicomweb/" + holderURA + "/studies/" + theirs.UID + "/metadata", "mine", http.StatusForbidden, "not of the access token's patient", testPatient.BSN},
		{"QIDO-RS for another patient", "/dicomweb/" + holderURA + "/studies?PatientID=" + otherPatient.BSN, "mine", http.StatusForbidden, "another patient", testPatient.BSN},
		{"consent refused", "/dicomweb/" + holderURA + "/studies/" + theirs.UID, "other", http.StatusForbidden, "consent decision Deny", otherPatient.BSN},
		{"search for another patient", search(otherPatient.BSN), "mine", http.StatusForbidden, "another patient", otherPatient.BSN},
		{"search refused consent", search(otherPatient.BSN), "other", http.StatusForbidden, "consent decision Deny", otherPatient.BSN},
		{"search without patient", "/fhir/r4/" + holderURA + "/ImagingStudy", "mine", http.StatusBadRequest, "patient.identifier", ""},
		{"search by another parameter", "/fhir/r4/" + holderURA + "/ImagingStudy?modality=CT", "mine", http.StatusBadRequest, "not supported", ""},
		{"not a UID", "/dicomweb/" + holderURA + "/studies/abc", "mine", http.StatusBadRequest, "not a DICOM UID", testPatient.BSN},
		{"unknown study", "/dicomweb/" + holderURA + "/studies/2.25.1", "mine", http.StatusNotFound, "no study", testPatient.BSN},
		{"outside studies", "/dicomweb/" + holderURA + "/instances", "mine", http.StatusBadRequest, "studies/", testPatient.BSN},
		{"participant without a PACS", "/dicomweb/90000004/studies/" + mine.UID, "mine", http.StatusNotFound, "no images", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(f.log.Records())
			res, body := f.get(t, c.path, c.tok, "")
			var oo struct {
				ResourceType string
				Issue        []struct{ Code, Diagnostics string }
			}
			_ = json.Unmarshal(body, &oo)
			if res.StatusCode != c.status || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || !strings.Contains(oo.Issue[0].Diagnostics, c.diagnostics) {
				t.Fatalf("%d %s, want %d OperationOutcome with %q", res.StatusCode, body, c.status, c.diagnostics)
			}
			if len(f.log.Records()) != before+1 {
				t.Fatalf("%d audit records written, want 1", len(f.log.Records())-before)
			}
			rec := f.log.Last()
			if rec.Outcome != c.status || rec.Patient != c.patient || !strings.Contains(rec.OutcomeText, c.diagnostics) || rec.ActorURA != "90000001" {
				t.Errorf("audit record %+v", rec)
			}
		})
	}
}

func TestResolveGrant(t *testing.T) {
	h := NewHolder(HolderConfig{
		Backend:  func(t string) (Backend, bool) { return Backend{}, t == holderURA },
		Tenants:  func() []string { return []string{holderURA, "90000004"} },
		FHIRBase: func(t string) string { return "https://node/fhir/r4/" + t },
	})
	good := oauth.GrantRequest{ClientID: "90000001", GrantType: consult.GrantTypeJWT, Scope: []string{Application},
		Resource: "https://node/fhir/r4/" + holderURA, Assertion: map[string]any{AssertionPatient: testPatient.BSN,
			plateau.ClaimUserID: "900012345", plateau.ClaimUserRole: "01.015", consult.AssertionRequesterType: "Z1"}}
	g, err := h.ResolveGrant(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	if g.Audience != good.Resource || g.Claims[ClaimPatient] != testPatient.BSN || g.Claims[consult.ClaimConsult] != holderURA ||
		g.Claims[consult.ClaimRequesterType] != "Z1" || !slices.Equal(g.Scope, []string{Application}) {
		t.Errorf("grant %+v", g)
	}
	for name, mod := range map[string]func(r *oauth.GrantRequest){
		"client credentials":       func(r *oauth.GrantRequest) { r.GrantType = "client_credentials" },
		"authorization base":       func(r *oauth.GrantRequest) { r.AuthorizationBase = "x" },
		"two scopes":               func(r *oauth.GrantRequest) { r.Scope = []string{Application, "bgz"} },
		"no resource":              func(r *oauth.GrantRequest) { r.Resource = "" },
		"another node's resource":  func(r *oauth.GrantRequest) { r.Resource = "https://elsewhere/fhir/r4/" + holderURA },
		"participant without PACS": func(r *oauth.GrantRequest) { r.Resource = "https://node/fhir/r4/90000004" },
		"no patient": func(r *oauth.GrantRequest) {
			r.Assertion = map[string]any{plateau.ClaimUserID: "900012345", plateau.ClaimUserRole: "01.015"}
		},
		"invalid BSN": func(r *oauth.GrantRequest) { r.Assertion[AssertionPatient] = "123456789" },
		"no user": func(r *oauth.GrantRequest) {
			r.Assertion = map[string]any{AssertionPatient: testPatient.BSN}
		},
	} {
		r := good
		r.Assertion = map[string]any{}
		for k, v := range good.Assertion {
			r.Assertion[k] = v
		}
		mod(&r)
		if _, err := h.ResolveGrant(context.Background(), r); err == nil {
			t.Errorf("%s: granted", name)
		}
	}
}

// TestStudyOwnerKept: whose a study is is asked of the PACS once per
// StudyOwnerTTL, not per retrieval; consent is asked every time, and a
// token of another patient is refused on the kept answer as on a fresh one.
func TestStudyOwnerKept(t *testing.T) {
	f := newHolderFixture(t)
	st := f.mine[1]
	in := st.Series[0].Instances[0]
	for _, path := range []string{"/studies/" + st.UID, "/studies/" + st.UID + "/series/" + st.Series[0].UID,
		"/studies/" + st.UID + "/series/" + st.Series[0].UID + "/instances/" + in.SOPInstanceUID} {
		if res, body := f.get(t, "/dicomweb/"+holderURA+path, "mine", MediaStudy); res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, res.StatusCode, body)
		}
	}
	if n, d := f.owners.Load(), f.decisions.Load(); n != 1 || d != 3 {
		t.Errorf("three retrievals of one study: %d queries of its patient, %d consent questions; want 1 and 3", n, d)
	}
	if res, body := f.get(t, "/dicomweb/"+holderURA+"/studies/"+st.UID, "other", MediaStudy); res.StatusCode != http.StatusForbidden ||
		!strings.Contains(string(body), "not of the access token's patient") {
		t.Errorf("another patient's token on a kept study: %d %s", res.StatusCode, body)
	}
	f.now = f.now.Add(defaultStudyOwnerTTL)
	if res, _ := f.get(t, "/dicomweb/"+holderURA+"/studies/"+st.UID, "mine", MediaStudy); res.StatusCode != http.StatusOK || f.owners.Load() != 2 {
		t.Errorf("after the TTL: %d, %d queries of the study's patient, want 2", res.StatusCode, f.owners.Load())
	}
	// A study the PACS does not hold is asked every time.
	for range 2 {
		if res, _ := f.get(t, "/dicomweb/"+holderURA+"/studies/1.2.3.4", "mine", MediaStudy); res.StatusCode != http.StatusNotFound {
			t.Errorf("unknown study: %d", res.StatusCode)
		}
	}
	if f.owners.Load() != 4 {
		t.Errorf("%d queries, want 4", f.owners.Load())
	}
}
