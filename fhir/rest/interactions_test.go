package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
)

// wantIssues checks that the OperationOutcome lists an issue at each of the
// expressions.
func wantIssues(exprs ...string) func(*testing.T, *harness, *http.Response, []byte) {
	return func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
		t.Helper()
		var oo struct{ Issue []fhir.Issue }
		if err := json.Unmarshal(b, &oo); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, is := range oo.Issue {
			got = append(got, is.Expression...)
		}
		for _, e := range exprs {
			if !slices.Contains(got, e) {
				t.Errorf("no issue at %s; issues %s", e, b)
			}
		}
	}
}

// nothingWritten checks that the store holds the n versions seeded.
func nothingWritten(n int) func(*testing.T, *harness, *http.Response, []byte) {
	return func(t *testing.T, h *harness, _ *http.Response, _ []byte) {
		t.Helper()
		if got := h.store.count(); got != n {
			t.Errorf("store holds %d versions, want %d: something was written", got, n)
		}
	}
}

func TestBadInput(t *testing.T) {
	const ns = `xmlns="http://hl7.org/fhir"`
	xml := hdr("Content-Type", "application/fhir+xml")
	run(t, []testCase{
		{
			name: "every structural problem is listed with its location", method: http.MethodPost, path: "Patient",
			body:   `{"resourceType":"Patient","foo":1,"birthDate":"03-02-1970","gender":["male"],"active":"yes","name":[{"given":"Jan"}],"managingOrganization":{"reference":"Organisation/1"}}`,
			status: http.StatusBadRequest,
			check: all(wantIssues("Patient.foo", "Patient.birthDate", "Patient.gender", "Patient.active", "Patient.name[0].given", "Patient.managingOrganization.reference"),
				nothingWritten(0)),
		},
		{
			name: "required elements", method: http.MethodPost, path: "Observation",
			body:   `{"resourceType":"Observation","valueQuantity":{"value":1.5},"extension":[{"valueString":"x"}]}`,
			status: http.StatusBadRequest,
			check:  wantIssues("Observation.status", "Observation.code", "Observation.extension[0].url"),
		},
		{name: "R4 element on STU3", method: http.MethodPost, path: "Observation", body: `{"resourceType":"Observation","status":"final","code":{"text":"x"},"note":[{"text":"a"}],"valueInteger":1}`, status: http.StatusBadRequest, check: wantIssues("Observation.valueInteger")},
		{name: "R4 element on R4", version: fhir.R4, method: http.MethodPost, path: "Observation", body: `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":1}`, status: http.StatusCreated},
		{name: "unknown resource type in the body", method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patiënt"}`, status: http.StatusBadRequest, check: wantOutcome("invalid", "Patiënt")},
		{name: "unknown resource type in the URL", method: http.MethodPost, path: "Patiënt", body: `{"resourceType":"Patiënt"}`, status: http.StatusNotFound},
		{name: "contained resource is validated", method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","nam":"x"}]}`, status: http.StatusBadRequest, check: wantIssues("Patient.contained[0].nam")},
		{name: "malformed XML", method: http.MethodPost, path: "Patient", header: xml, body: `<Patient ` + ns + `><name>`, status: http.StatusBadRequest, check: wantOutcome("structure", "not valid FHIR XML")},
		{name: "XML with a DOCTYPE (no XXE)", method: http.MethodPost, path: "Patient", header: xml, body: `<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient ` + ns + `><name><text value="&x;"/></name></Patient>`, status: http.StatusBadRequest, check: all(wantOutcome("structure", "DOCTYPE"), nothingWritten(0))},
		{name: "XML entity expansion (billion laughs)", method: http.MethodPost, path: "Patient", header: xml, body: `<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><Patient ` + ns + `><name><text value="&b;"/></name></Patient>`, status: http.StatusBadRequest, check: wantOutcome("structure", "DOCTYPE")},
		{name: "XML nesting too deep", method: http.MethodPost, path: "Questionnaire", header: xml, body: `<Questionnaire ` + ns + `>` + strings.Repeat("<item>", 100) + strings.Repeat("</item>", 100) + `</Questionnaire>`, status: http.StatusBadRequest, check: wantOutcome("structure", "deeper than 100")},
		{name: "XML invalid UTF-8", method: http.MethodPost, path: "Patient", header: xml, body: "<Patient " + ns + "><name><text value=\"\xc3\x28\"/></name></Patient>", status: http.StatusBadRequest, check: wantOutcome("structure", "UTF-8")},
		{name: "XML of the wrong type", method: http.MethodPost, path: "Patient", header: xml, body: `<Observation ` + ns + `/>`, status: http.StatusBadRequest, check: wantOutcome("invalid", "Observation")},
		{name: "XML update id mismatch", setup: seedPatients, method: http.MethodPut, path: "Patient/p1", header: xml, body: `<Patient ` + ns + `><id value="p2"/></Patient>`, status: http.StatusBadRequest, check: wantOutcome("invalid", "differs")},
		{name: "XML body over the limit", configure: func(c *rest.Config) { c.MaxBodyBytes = 32 }, method: http.MethodPost, path: "Patient", header: xml, body: `<Patient ` + ns + `><active value="true"/></Patient>`, status: http.StatusRequestEntityTooLarge},
		{name: "version conflict", setup: seedPatients, method: http.MethodPut, path: "Patient/p1", header: hdr("If-Match", `W/"7"`), body: `{"resourceType":"Patient","id":"p1"}`, status: http.StatusPreconditionFailed, check: nothingWritten(3)},
		{name: "duplicate key at the top", method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patient","gender":"male","gender":"female"}`, status: http.StatusBadRequest, check: all(wantOutcome("structure", `"gender" appears more than once`), wantIssues("Patient.gender"), nothingWritten(0))},
		{name: "duplicate key deep in an update", setup: seedPatients, method: http.MethodPut, path: "Patient/p1", body: `{"resourceType":"Patient","id":"p1","name":[{"family":"a"},{"given":["b"],"family":"c","family":"d"}]}`, status: http.StatusBadRequest, check: all(wantIssues("Patient.name[1].family"), nothingWritten(3))},
		{name: "duplicate key spelled with an escape", method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patient","active":true,"active":false}`, status: http.StatusBadRequest, check: wantIssues("Patient.active")},
		{name: "duplicate key in a transaction entry", method: http.MethodPost, path: "", body: `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","meta":{"tag":[{"code":"a","code":"b"}]}},"request":{"method":"POST","url":"Patient"}}]}`, status: http.StatusBadRequest, check: all(wantIssues("Bundle.entry[0].resource.meta.tag[0].code"), nothingWritten(0))},
		{name: "unknown search parameter in strict mode", setup: seedPatients, path: "Patient?nickname=x", header: hdr("Prefer", "handling=strict"), status: http.StatusBadRequest, check: wantOutcome("invalid", "nickname")},
	})
}

func TestHistory(t *testing.T) {
	setup := func(f *fakeStore) {
		seedPatients(f)                                                          // p1 (12:01), p2 (12:02), p3 (12:03)
		f.seed(tenant, `{"resourceType":"Patient","id":"p1","gender":"female"}`) // 12:04, version 2
		f.seed(tenant, `{"resourceType":"Organization","id":"o1","name":"x"}`)   // 12:05
		f.mu.Lock()
		f.delete(tenant, "Patient", "p2") // 12:06
		f.mu.Unlock()
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  struct{ Method, URL string }
		Response struct{ Status, Etag string }
	}
	history := func(total int, want ...string) func(*testing.T, *harness, *http.Response, []byte) {
		return func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
			t.Helper()
			var bu struct {
				Type  string
				Total int
				Link  []struct{ Relation, URL string }
				Entry []entry
			}
			if err := json.Unmarshal(b, &bu); err != nil || bu.Type != "history" || bu.Total != total {
				t.Fatalf("want a history Bundle with total %d, got %s", total, b)
			}
			var got []string
			for _, e := range bu.Entry {
				got = append(got, e.Request.Method+" "+e.Request.URL+" "+e.Response.Etag)
				if e.Request.Method == http.MethodDelete && e.Resource != nil {
					t.Errorf("deleted version has a resource: %s", e.Resource)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("entries = %q, want %q", got, want)
			}
		}
	}
	run(t, []testCase{
		{name: "instance", setup: setup, path: "Patient/p1/_history", status: http.StatusOK, check: history(2, `PUT Patient/p1 W/"2"`, `POST Patient W/"1"`)},
		{name: "instance deleted", setup: setup, path: "Patient/p2/_history", status: http.StatusOK, check: history(2, `DELETE Patient/p2 W/"2"`, `POST Patient W/"1"`)},
		{name: "type", setup: setup, path: "Patient/_history", status: http.StatusOK, check: history(5, `DELETE Patient/p2 W/"2"`, `PUT Patient/p1 W/"2"`, `POST Patient W/"1"`, `POST Patient W/"1"`, `POST Patient W/"1"`)},
		{name: "tenant", setup: setup, path: "_history", status: http.StatusOK, check: history(6, `DELETE Patient/p2 W/"2"`, `POST Organization W/"1"`, `PUT Patient/p1 W/"2"`, `POST Patient W/"1"`, `POST Patient W/"1"`, `POST Patient W/"1"`)},
		{name: "_since", setup: setup, path: "_history?_since=2025-03-01T12:05:00Z", status: http.StatusOK, check: history(2, `DELETE Patient/p2 W/"2"`, `POST Organization W/"1"`)},
		{
			name: "_count pages with a next link", setup: setup, path: "Patient/_history?_count=2", status: http.StatusOK,
			check: all(history(5, `DELETE Patient/p2 W/"2"`, `PUT Patient/p1 W/"2"`), func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				var bu struct {
					Link []struct{ Relation, URL string }
				}
				json.Unmarshal(b, &bu) //nolint:errcheck // checked above
				if len(bu.Link) != 2 || bu.Link[1].Relation != "next" || bu.Link[1].URL != h.base+"/Patient/_history?_count=2&_offset=2" {
					t.Errorf("links = %+v", bu.Link)
				}
			}),
		},
		{name: "unknown resource", setup: setup, path: "Patient/p9/_history", status: http.StatusNotFound},
		{name: "bad _since", setup: setup, path: "_history?_since=yesterday", status: http.StatusBadRequest, check: wantOutcome("invalid", "_since")},
		{name: "unsupported parameter", setup: setup, path: "_history?_at=2025", status: http.StatusBadRequest, check: wantOutcome("not-supported", "_at")},
		{name: "POST _history", method: http.MethodPost, path: "Patient/_history", status: http.StatusMethodNotAllowed},
		{name: "history as XML", setup: setup, path: "Patient/p1/_history?_format=xml", status: http.StatusOK, contentType: xmlCT, check: wantXML(`<type value="history"/>`)},
	})
}

func TestConditional(t *testing.T) {
	const withIdent = `{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"1"}],"gender":"male"}`
	two := func(f *fakeStore) {
		f.seed(tenant, `{"resourceType":"Patient","id":"a","identifier":[{"system":"urn:s","value":"1"}]}`)
		f.seed(tenant, `{"resourceType":"Patient","id":"b","identifier":[{"system":"urn:s","value":"2"}]}`)
		f.seed(tenant, `{"resourceType":"Patient","id":"c","identifier":[{"system":"urn:s","value":"2"}]}`)
	}
	idIs := func(id string) func(*testing.T, *harness, *http.Response, []byte) {
		return func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
			t.Helper()
			if got := decode(t, b)["id"]; got != id {
				t.Errorf("id = %v, want %s", got, id)
			}
		}
	}
	run(t, []testCase{
		{name: "If-None-Exist without a match creates", setup: two, method: http.MethodPost, path: "Patient", header: hdr("If-None-Exist", "identifier=urn:s|9"), body: withIdent, status: http.StatusCreated, check: nothingWritten(4)},
		{name: "If-None-Exist with one match returns it", setup: two, method: http.MethodPost, path: "Patient", header: hdr("If-None-Exist", "identifier=urn:s|1"), body: withIdent, status: http.StatusOK, check: all(idIs("a"), nothingWritten(3))},
		{name: "If-None-Exist with several matches", setup: two, method: http.MethodPost, path: "Patient", header: hdr("If-None-Exist", "identifier=urn:s|2"), body: withIdent, status: http.StatusPreconditionFailed, check: all(wantOutcome("multiple-matches", "2 Patient"), nothingWritten(3))},
		{name: "If-None-Exist with an unknown parameter", setup: two, method: http.MethodPost, path: "Patient", header: hdr("If-None-Exist", "nickname=x"), body: withIdent, status: http.StatusBadRequest, check: nothingWritten(3)},
		{name: "If-None-Exist as Type?query", setup: two, method: http.MethodPost, path: "Patient", header: hdr("If-None-Exist", "Patient?identifier=urn:s|1"), body: withIdent, status: http.StatusOK, check: idIs("a")},
		{name: "conditional update of one match", setup: two, method: http.MethodPut, path: "Patient?identifier=urn:s|1", body: withIdent, status: http.StatusOK, check: all(idIs("a"), nothingWritten(4))},
		{name: "conditional update without a match creates", setup: two, method: http.MethodPut, path: "Patient?identifier=urn:s|7", body: withIdent, status: http.StatusCreated, check: nothingWritten(4)},
		{name: "conditional update of several", setup: two, method: http.MethodPut, path: "Patient?identifier=urn:s|2", body: withIdent, status: http.StatusPreconditionFailed, check: nothingWritten(3)},
		{name: "conditional update with another id", setup: two, method: http.MethodPut, path: "Patient?identifier=urn:s|1", body: `{"resourceType":"Patient","id":"b"}`, status: http.StatusBadRequest, check: nothingWritten(3)},
		{name: "conditional delete", setup: two, method: http.MethodDelete, path: "Patient?identifier=urn:s|1", status: http.StatusNoContent, check: nothingWritten(4)},
		{name: "conditional delete of several", setup: two, method: http.MethodDelete, path: "Patient?identifier=urn:s|2", status: http.StatusPreconditionFailed, check: nothingWritten(3)},
		{name: "conditional delete without a match (STU3)", setup: two, method: http.MethodDelete, path: "Patient?identifier=urn:s|7", status: http.StatusNotFound},
		{name: "conditional delete without a match (R4)", version: fhir.R4, setup: two, method: http.MethodDelete, path: "Patient?identifier=urn:s|7", status: http.StatusNoContent},
	})
}

// txBundle builds a transaction or batch Bundle from entries.
func txBundle(typ string, entries ...string) string {
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

type responseEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Response struct {
		Status, Location, Etag string
		Outcome                json.RawMessage
	}
}

func responseBundle(t *testing.T, b []byte, typ string) []responseEntry {
	t.Helper()
	var bu struct {
		ResourceType, Type string
		Entry              []responseEntry
	}
	if err := json.Unmarshal(b, &bu); err != nil || bu.Type != typ {
		t.Fatalf("want a %s Bundle, got %s", typ, b)
	}
	return bu.Entry
}

func TestTransaction(t *testing.T) {
	const (
		patUUID = "urn:uuid:0d2a3e4c-1f45-4b8e-9a3c-6f1d2e3a4b5c"
		orgUUID = "urn:uuid:8c9e7d51-2a7b-4c8d-9e0f-1a2b3c4d5e6f"
	)
	// The Observation comes first and points at both later entries.
	good := txBundle("transaction",
		`{"fullUrl":"urn:uuid:5f5e5d5c-5b5a-4959-8857-565554535251","resource":{"resourceType":"Observation","status":"final","code":{"text":"bp"},"subject":{"reference":"`+patUUID+`"},"performer":[{"reference":"`+orgUUID+`"}],"identifier":[{"system":"urn:ietf:rfc:3986","value":"`+patUUID+`"}]},"request":{"method":"POST","url":"Observation"}}`,
		`{"fullUrl":"`+patUUID+`","resource":{"resourceType":"Patient","managingOrganization":{"reference":"`+orgUUID+`"}},"request":{"method":"POST","url":"Patient"}}`,
		`{"fullUrl":"`+orgUUID+`","resource":{"resourceType":"Organization","name":"Zkh"},"request":{"method":"PUT","url":"Organization/org1"}}`,
		`{"request":{"method":"GET","url":"Patient/p1"}}`,
		`{"request":{"method":"DELETE","url":"Patient/p2"}}`,
	)
	run(t, []testCase{
		{
			name: "references to fullUrls are rewritten, entries answered in order", setup: seedPatients,
			method: http.MethodPost, path: "", body: good, status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				es := responseBundle(t, b, "transaction-response")
				if len(es) != 5 {
					t.Fatalf("%d entries", len(es))
				}
				for i, want := range []string{"201 Created", "201 Created", "201 Created", "200 OK", "204 No Content"} {
					if es[i].Response.Status != want {
						t.Errorf("entry %d status %q, want %q", i, es[i].Response.Status, want)
					}
				}
				var obs struct {
					Subject    struct{ Reference string }
					Performer  []struct{ Reference string }
					Identifier []struct{ Value string }
				}
				json.Unmarshal(es[0].Resource, &obs) //nolint:errcheck // checked below
				patID := strings.TrimPrefix(es[1].FullURL, h.base+"/")
				if obs.Subject.Reference != patID || !strings.HasPrefix(patID, "Patient/") {
					t.Errorf("subject = %q, patient is %q", obs.Subject.Reference, patID)
				}
				if len(obs.Performer) != 1 || obs.Performer[0].Reference != "Organization/org1" {
					t.Errorf("performer = %+v", obs.Performer)
				}
				if obs.Identifier[0].Value != patUUID {
					t.Errorf("an identifier was rewritten: %+v", obs.Identifier)
				}
				if !strings.Contains(string(es[3].Resource), `"id":"p1"`) {
					t.Errorf("GET entry: %s", es[3].Resource)
				}
				if h.store.txCommits != 1 {
					t.Errorf("%d transactions committed", h.store.txCommits)
				}
				if _, err := h.store.Read(context.Background(), tenant, "Patient", "p2"); err == nil {
					t.Error("p2 not deleted")
				}
			},
		},
		{
			name: "a failing entry writes nothing", setup: seedPatients, method: http.MethodPost, path: "",
			body: txBundle("transaction",
				`{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`,
				`{"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"9\""}}`),
			status: http.StatusPreconditionFailed,
			check:  all(wantOutcome("conflict", "Bundle.entry[1]"), nothingWritten(3)),
		},
		{
			name: "every invalid entry is listed and nothing written", setup: seedPatients, method: http.MethodPost, path: "",
			body: txBundle("transaction",
				`{"resource":{"resourceType":"Patient","birthDate":"gisteren"},"request":{"method":"POST","url":"Patient"}}`,
				`{"resource":{"resourceType":"Observation","status":"final"},"request":{"method":"POST","url":"Observation"}}`,
				`{"request":{"method":"PATCH","url":"Patient/p1"}}`),
			status: http.StatusBadRequest,
			check:  all(wantIssues("Bundle.entry[0].resource.birthDate", "Bundle.entry[1].resource.code", "Bundle.entry[2]"), nothingWritten(3)),
		},
		{
			name: "ifNoneExist inside the transaction", setup: func(f *fakeStore) {
				f.seed(tenant, `{"resourceType":"Patient","id":"known","identifier":[{"system":"urn:s","value":"1"}]}`)
			},
			method: http.MethodPost, path: "",
			body: txBundle("transaction",
				`{"fullUrl":"`+patUUID+`","resource":{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"1"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:s|1"}}`,
				`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"`+patUUID+`"}},"request":{"method":"POST","url":"Observation"}}`),
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				es := responseBundle(t, b, "transaction-response")
				if es[0].Response.Status != "200 OK" || !strings.Contains(string(es[1].Resource), `"reference":"Patient/known"`) {
					t.Errorf("entries %s", b)
				}
				if h.store.count() != 2 {
					t.Errorf("%d versions stored, want 2", h.store.count())
				}
			},
		},
		{
			name: "transaction as XML", setup: seedPatients, method: http.MethodPost, path: "",
			header: hdr("Content-Type", "application/fhir+xml", "Accept", "application/fhir+xml"),
			body:   `<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/><entry><resource><Patient><active value="true"/></Patient></resource><request><method value="POST"/><url value="Patient"/></request></entry></Bundle>`,
			status: http.StatusOK, contentType: xmlCT, check: all(wantXML(`<type value="transaction-response"/>`), wantXML(`<status value="201 Created"/>`), nothingWritten(4)),
		},
		{name: "transaction without a transactional store", configure: func(c *rest.Config) { c.Store = plainStore{c.Store} }, method: http.MethodPost, path: "", body: good, status: http.StatusBadRequest, check: wantOutcome("not-supported", "batch")},
		{name: "not a Bundle", method: http.MethodPost, path: "", body: `{"resourceType":"Patient"}`, status: http.StatusBadRequest, check: wantOutcome("invalid", "Bundle")},
		{name: "a searchset Bundle", method: http.MethodPost, path: "", body: txBundle("searchset"), status: http.StatusBadRequest, check: wantOutcome("invalid", "searchset")},
		{name: "malformed JSON", method: http.MethodPost, path: "", body: `{"resourceType":"Bundle",`, status: http.StatusBadRequest, check: wantOutcome("structure", "JSON")},
		{
			name: "Authorize sees every entry; one denial fails all", setup: seedPatients,
			configure: func(c *rest.Config) {
				c.Authorize = func(_ context.Context, r *rest.Request) error {
					if r.Entry == 2 {
						return errors.New("not this one")
					}
					return nil
				}
			},
			method: http.MethodPost, path: "",
			body: txBundle("transaction",
				`{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`,
				`{"request":{"method":"DELETE","url":"Patient/p1"}}`),
			status: http.StatusForbidden, check: all(wantOutcome("forbidden", "Bundle.entry[1]"), nothingWritten(3)),
		},
	})
}

func TestBatch(t *testing.T) {
	run(t, []testCase{
		{
			name: "entries succeed and fail on their own", setup: seedPatients, method: http.MethodPost, path: "",
			body: txBundle("batch",
				`{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`,
				`{"resource":{"resourceType":"Patient","birthDate":"x"},"request":{"method":"POST","url":"Patient"}}`,
				`{"request":{"method":"GET","url":"Patient/p9"}}`,
				`{"request":{"method":"GET","url":"Patient?_id=p2"}}`,
				`{"resource":{"resourceType":"Patient","id":"p3","gender":"other"},"request":{"method":"PUT","url":"Patient/p3"}}`),
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				es := responseBundle(t, b, "batch-response")
				var got []string
				for _, e := range es {
					got = append(got, e.Response.Status)
				}
				if want := []string{"201 Created", "400 Bad Request", "404 Not Found", "200 OK", "200 OK"}; !slices.Equal(got, want) {
					t.Errorf("statuses %q, want %q", got, want)
				}
				if !strings.Contains(string(es[1].Response.Outcome), "Patient.birthDate") || !strings.Contains(string(es[3].Resource), `"type":"searchset"`) {
					t.Errorf("entries %s", b)
				}
				if h.store.count() != 5 {
					t.Errorf("%d versions, want 5", h.store.count())
				}
			},
		},
		{name: "batch works without transactions", configure: func(c *rest.Config) { c.Store = plainStore{c.Store} }, method: http.MethodPost, path: "", body: txBundle("batch", `{"request":{"method":"GET","url":"Patient/p1"}}`), status: http.StatusOK},
	})
}

func TestCommit(t *testing.T) {
	failing := func(c *rest.Config) {
		c.Commit = func(context.Context, *rest.Request, rest.Result) error { return errors.New("audit disk full") }
	}
	run(t, []testCase{
		{name: "read withheld", configure: failing, setup: seedPatients, path: "Patient/p1", status: http.StatusServiceUnavailable, check: all(wantOutcome("transient", "the audit log is unavailable; nothing was returned"), func(t *testing.T, _ *harness, resp *http.Response, b []byte) {
			if resp.Header.Get("ETag") != "" || strings.Contains(string(b), "Jansen") {
				t.Errorf("data left: %v %s", resp.Header, b)
			}
		})},
		{name: "search withheld", configure: failing, setup: seedPatients, path: "Patient", status: http.StatusServiceUnavailable},
		{name: "create answered 503, the write stays", configure: failing, method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patient"}`, status: http.StatusServiceUnavailable, check: all(wantHeader("Location", ""), nothingWritten(1))},
		{name: "an error answer is withheld too", configure: failing, path: "Patient/p9", status: http.StatusServiceUnavailable},
	})

	t.Run("Commit runs before the first byte and sees the result", func(t *testing.T) {
		var sent atomic.Bool
		var committed []string
		var h *harness
		h = newHarness(t, fhir.STU3, func(c *rest.Config) {
			c.Commit = func(_ context.Context, req *rest.Request, res rest.Result) error {
				if sent.Load() {
					t.Error("Commit after the response was sent")
				}
				committed = append(committed, fmt.Sprintf("%s %d %d", req.Interaction, res.Status, len(res.Resources)))
				return nil
			}
		})
		h.store.seed(tenant, patient1)
		resp, _ := h.do(t, http.MethodGet, "Patient/p1", nil, "")
		sent.Store(true)
		if resp.StatusCode != http.StatusOK || !slices.Equal(committed, []string{"read 200 1"}) {
			t.Errorf("status %d, committed %q", resp.StatusCode, committed)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.observed) != 1 || h.observed[0].res.Status != http.StatusOK {
			t.Errorf("observed %+v", h.observed)
		}
	})
}

func TestCapabilityStatement(t *testing.T) {
	type statement struct {
		Format []string
		Rest   []struct {
			Interaction []struct{ Code string }
			Resource    []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name, Type string }
			}
		}
	}
	codes := func(list []struct{ Code string }) []string {
		var out []string
		for _, c := range list {
			out = append(out, c.Code)
		}
		return out
	}
	check := func(system []string, patientInteractions int) func(*testing.T, *harness, *http.Response, []byte) {
		return func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
			var cs statement
			if err := json.Unmarshal(b, &cs); err != nil {
				t.Fatal(err)
			}
			if got := codes(cs.Rest[0].Interaction); !slices.Equal(got, system) {
				t.Errorf("system interactions %q, want %q", got, system)
			}
			for _, r := range cs.Rest[0].Resource {
				if r.Type != "Patient" {
					continue
				}
				if len(r.Interaction) != patientInteractions {
					t.Errorf("Patient interactions %q", codes(r.Interaction))
				}
				var params []string
				for _, p := range r.SearchParam {
					params = append(params, p.Name+":"+p.Type)
				}
				for _, want := range []string{"_id:token", "_lastUpdated:date", "identifier:token", "birthdate:date", "general-practitioner:reference", "name:string"} {
					if !slices.Contains(params, want) {
						t.Errorf("Patient search parameter %s not listed: %q", want, params)
					}
				}
			}
		}
	}
	run(t, []testCase{
		{name: "history and transactions", path: "metadata", status: http.StatusOK, check: check([]string{"transaction", "batch", "history-system"}, 8)},
		{name: "a plain store", configure: func(c *rest.Config) { c.Store = plainStore{c.Store} }, path: "metadata", status: http.StatusOK, check: check([]string{"batch"}, 6)},
		{name: "as XML", path: "metadata?_format=xml", status: http.StatusOK, contentType: xmlCT, check: wantXML(`<format value="xml"/>`)},
	})
}

// BenchmarkTransaction measures a transaction of 50 entries (25 Patients
// and 25 Observations referring to them by urn:uuid) through the HTTP API.
func BenchmarkTransaction(b *testing.B) {
	h := newHarness(b, fhir.STU3, func(c *rest.Config) { c.Observe = nil })
	var entries []string
	for i := range 25 {
		u := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i)
		entries = append(entries,
			`{"fullUrl":"`+u+`","resource":{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"99999`+fmt.Sprint(1000+i)+`"}],"name":[{"family":"Jansen","given":["Jan"]}],"gender":"male","birthDate":"1970-01-01"},"request":{"method":"POST","url":"Patient"}}`,
			`{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"subject":{"reference":"`+u+`"},"effectiveDateTime":"2024-01-01T10:00:00+01:00","valueQuantity":{"value":120,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},"request":{"method":"POST","url":"Observation"}}`)
	}
	body := txBundle("transaction", entries...)
	client := h.srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(h.base+"/", "application/fhir+json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		<-h.done
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
	}
}
