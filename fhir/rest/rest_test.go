package rest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
)

const tenant = "00000001"

const patient1 = `{"resourceType":"Patient","id":"p1","meta":{"profile":["http://nictiz.nl/fhir/StructureDefinition/nl-core-patient"]},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jan</div>"},"active":true,"name":[{"family":"Jansen"}],"gender":"male"}`

// harness is one node-like HTTP server mounting rest.Server the way the node
// does, on a real listener on 127.0.0.1.
type harness struct {
	srv   *httptest.Server
	base  string // the FHIR base URL of tenant
	store *fakeStore

	mu       sync.Mutex
	observed []observation
	done     chan struct{} // one value per request Serve finished
}

type observation struct {
	req *rest.Request
	res rest.Result
}

func newHarness(t testing.TB, version fhir.Version, configure func(*rest.Config)) *harness {
	t.Helper()
	h := &harness{store: newFakeStore(), done: make(chan struct{}, 16)}
	cfg := rest.Config{
		Store:   h.store,
		Version: version,
		Logger:  slog.New(slog.DiscardHandler),
		Observe: func(_ context.Context, req *rest.Request, res rest.Result) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.observed = append(h.observed, observation{req, res})
		},
	}
	if configure != nil {
		configure(&cfg)
	}
	srv := rest.New(cfg)
	mux := http.NewServeMux()
	prefix := "/fhir/" + string(version) + "/"
	mux.HandleFunc(prefix+"{ura}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		base := "http://" + r.Host + prefix + r.PathValue("ura")
		srv.Serve(w, r, r.PathValue("ura"), base, r.PathValue("path"))
		h.done <- struct{}{}
	})
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	h.base = h.srv.URL + prefix + tenant
	return h
}

// do sends one request and waits until Serve has returned.
func (h *harness) do(t *testing.T, method, path string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.base+"/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	return resp, b
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, b)
	}
	return m
}

// wantOutcome checks that b is an OperationOutcome whose first issue has
// code and whose diagnostics contain text.
func wantOutcome(code, text string) func(*testing.T, *harness, *http.Response, []byte) {
	return func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
		t.Helper()
		var oo struct {
			ResourceType string
			Issue        []fhir.Issue
		}
		if err := json.Unmarshal(b, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
			t.Fatalf("want an OperationOutcome, got %s", b)
		}
		if oo.Issue[0].Code != code || !strings.Contains(oo.Issue[0].Diagnostics, text) {
			t.Errorf("issue = %+v, want code %q and diagnostics containing %q", oo.Issue[0], code, text)
		}
	}
}

func wantHeader(name, value string) func(*testing.T, *harness, *http.Response, []byte) {
	return func(t *testing.T, _ *harness, resp *http.Response, _ []byte) {
		t.Helper()
		if got := resp.Header.Get(name); got != value {
			t.Errorf("%s = %q, want %q", name, got, value)
		}
	}
}

func all(checks ...func(*testing.T, *harness, *http.Response, []byte)) func(*testing.T, *harness, *http.Response, []byte) {
	return func(t *testing.T, h *harness, resp *http.Response, b []byte) {
		t.Helper()
		for _, c := range checks {
			c(t, h, resp, b)
		}
	}
}

// bundle is the part of a searchset Bundle the tests look at.
type bundle struct {
	ResourceType string
	Type         string
	Total        *int
	Link         []struct{ Relation, URL string }
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   struct{ Mode string }
	}
}

func decodeBundle(t *testing.T, b []byte) bundle {
	t.Helper()
	var bu bundle
	if err := json.Unmarshal(b, &bu); err != nil || bu.ResourceType != "Bundle" || bu.Type != "searchset" {
		t.Fatalf("want a searchset Bundle, got %s", b)
	}
	return bu
}

func (b bundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	return buf.String()
}

func seedPatients(f *fakeStore) {
	f.seed(tenant, patient1)
	f.seed(tenant, `{"resourceType":"Patient","id":"p2","name":[{"family":"Pietersen"}]}`)
	f.seed(tenant, `{"resourceType":"Patient","id":"p3","name":[{"family":"Klaassen"}]}`)
}

type testCase struct {
	name      string
	version   fhir.Version // default STU3
	configure func(*rest.Config)
	setup     func(*fakeStore)
	method    string
	path      string
	header    http.Header
	body      string
	status    int
	check     func(*testing.T, *harness, *http.Response, []byte)
	// contentType is the expected Content-Type; FHIR JSON when empty.
	contentType string
}

const xmlCT = "application/fhir+xml; fhirVersion=3.0; charset=utf-8"

// wantXML checks that the body holds the XML fragment.
func wantXML(fragment string) func(*testing.T, *harness, *http.Response, []byte) {
	return func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
		t.Helper()
		if !bytes.Contains(b, []byte(fragment)) {
			t.Errorf("body lacks %s:\n%s", fragment, b)
		}
	}
}

func run(t *testing.T, cases []testCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			version := tc.version
			if version == "" {
				version = fhir.STU3
			}
			h := newHarness(t, version, tc.configure)
			if tc.setup != nil {
				tc.setup(h.store)
			}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			resp, body := h.do(t, method, tc.path, tc.header, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if len(body) > 0 {
				wantCT := "application/fhir+json; fhirVersion=" + version.MimeVersion() + "; charset=utf-8"
				if tc.contentType != "" {
					wantCT = tc.contentType
				}
				if ct := resp.Header.Get("Content-Type"); ct != wantCT {
					t.Errorf("Content-Type = %q, want %q", ct, wantCT)
				}
			}
			// Every handled request is observed exactly once, errors included.
			h.mu.Lock()
			obs := h.observed
			h.mu.Unlock()
			if len(obs) != 1 {
				t.Fatalf("Observe called %d times, want 1", len(obs))
			}
			if obs[0].res.Status != resp.StatusCode {
				t.Errorf("observed status %d, sent %d", obs[0].res.Status, resp.StatusCode)
			}
			if (obs[0].res.Err != nil) != (resp.StatusCode >= 400) {
				t.Errorf("observed Err = %v with status %d", obs[0].res.Err, resp.StatusCode)
			}
			if tc.check != nil {
				tc.check(t, h, resp, body)
			}
		})
	}
}

func TestRead(t *testing.T) {
	run(t, []testCase{
		{
			name:   "read returns the stored body unchanged with version headers",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			path:   "Patient/p1",
			status: http.StatusOK,
			check: all(wantHeader("ETag", `W/"1"`), wantHeader("Last-Modified", "Sat, 01 Mar 2025 12:01:00 GMT"),
				func(t *testing.T, h *harness, _ *http.Response, b []byte) {
					stored, _ := h.store.Read(context.Background(), tenant, "Patient", "p1")
					if string(b) != string(stored.Body) {
						t.Errorf("body = %s, want the stored bytes %s", b, stored.Body)
					}
					obs := h.observed[0]
					if obs.req.Interaction != rest.InteractionRead || obs.req.Tenant != tenant || obs.req.Type != "Patient" || obs.req.ID != "p1" {
						t.Errorf("observed request %+v", obs.req)
					}
					if len(obs.res.Resources) != 1 || obs.res.Resources[0].ID != "p1" {
						t.Errorf("observed resources %+v", obs.res.Resources)
					}
				}),
		},
		{
			name:    "r4 content type",
			version: fhir.R4,
			setup:   func(f *fakeStore) { f.seed(tenant, patient1) },
			path:    "Patient/p1",
			status:  http.StatusOK,
		},
		{
			name:   "not found",
			path:   "Patient/nope",
			status: http.StatusNotFound,
			check:  wantOutcome("not-found", "Patient/nope"),
		},
		{
			name: "deleted",
			setup: func(f *fakeStore) {
				f.seed(tenant, patient1)
				f.Delete(context.Background(), tenant, "Patient", "p1")
			},
			path:   "Patient/p1",
			status: http.StatusGone,
			check:  wantOutcome("deleted", "Patient/p1"),
		},
		{
			name:   "If-None-Match of the current version",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			path:   "Patient/p1",
			header: hdr("If-None-Match", `W/"1"`),
			status: http.StatusNotModified,
		},
		{
			name:   "_elements on read",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			path:   "Patient/p1?_elements=gender",
			status: http.StatusOK,
			check: func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
				m := decode(t, b)
				if _, ok := m["name"]; ok || m["gender"] != "male" || m["id"] != "p1" {
					t.Errorf("subset = %s", b)
				}
			},
		},
		{
			name: "vread an older version",
			setup: func(f *fakeStore) {
				f.seed(tenant, patient1)
				f.seed(tenant, strings.Replace(patient1, `"active":true`, `"active":false`, 1))
			},
			path:   "Patient/p1/_history/1",
			status: http.StatusOK,
			check: all(wantHeader("ETag", `W/"1"`), func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
				if decode(t, b)["active"] != true {
					t.Errorf("got %s, want version 1", b)
				}
			}),
		},
		{
			name:   "vread unknown version",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			path:   "Patient/p1/_history/9",
			status: http.StatusNotFound,
			check:  wantOutcome("not-found", "version 9"),
		},
	})
}

func TestSearch(t *testing.T) {
	run(t, []testCase{
		{
			name:   "searchset with total, self and next links, absolute fullUrls",
			setup:  seedPatients,
			path:   "Patient?name=x&_count=2",
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				bu := decodeBundle(t, b)
				if bu.Total == nil || *bu.Total != 3 {
					t.Errorf("total = %v, want 3", bu.Total)
				}
				if got, want := bu.link("self"), h.base+"/Patient?_count=2&name=x"; got != want {
					t.Errorf("self = %q, want %q", got, want)
				}
				if got, want := bu.link("next"), h.base+"/Patient?_count=2&_offset=2&name=x"; got != want {
					t.Errorf("next = %q, want %q", got, want)
				}
				if len(bu.Entry) != 2 {
					t.Fatalf("%d entries, want 2", len(bu.Entry))
				}
				if bu.Entry[0].FullURL != h.base+"/Patient/p1" || bu.Entry[0].Search.Mode != "match" {
					t.Errorf("entry = %+v", bu.Entry[0])
				}
				stored, _ := h.store.Read(context.Background(), tenant, "Patient", "p1")
				if string(bu.Entry[0].Resource) != string(stored.Body) {
					t.Errorf("resource = %s, want the stored body %s", bu.Entry[0].Resource, stored.Body)
				}
				if got := h.store.lastQuery; got.Strict || got.Type != "Patient" || got.Params.Get("name") != "x" {
					t.Errorf("query = %+v", got)
				}
				if len(h.observed[0].res.Resources) != 2 {
					t.Errorf("observed %d resources, want 2", len(h.observed[0].res.Resources))
				}
			},
		},
		{
			name:   "last page has no next link",
			setup:  seedPatients,
			path:   "Patient?_count=2&_offset=2",
			status: http.StatusOK,
			check: func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
				bu := decodeBundle(t, b)
				if bu.link("next") != "" || len(bu.Entry) != 1 {
					t.Errorf("bundle = %s", b)
				}
			},
		},
		{
			name: "includes and ignored parameters",
			setup: func(f *fakeStore) {
				p := f.seed(tenant, patient1)
				o := f.seed(tenant, `{"resourceType":"Organization","id":"o1"}`)
				f.page = &store.Page{Matches: []store.Resource{p}, Included: []store.Resource{o}, Total: 1, NextOffset: -1, Ignored: []string{"foo"}}
			},
			path:   "Patient?_include=Patient:organization&foo=bar",
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				bu := decodeBundle(t, b)
				if len(bu.Entry) != 3 || bu.Entry[1].Search.Mode != "include" || bu.Entry[1].FullURL != h.base+"/Organization/o1" {
					t.Fatalf("bundle = %s", b)
				}
				if bu.Entry[2].Search.Mode != "outcome" || !strings.Contains(string(bu.Entry[2].Resource), "foo") {
					t.Errorf("outcome entry = %s", bu.Entry[2].Resource)
				}
				if len(h.observed[0].res.Resources) != 2 {
					t.Errorf("observed %d resources, want match + include", len(h.observed[0].res.Resources))
				}
			},
		},
		{
			name:   "POST _search with a form body",
			setup:  seedPatients,
			method: http.MethodPost,
			path:   "Patient/_search?_count=5",
			header: hdr("Content-Type", "application/x-www-form-urlencoded"),
			body:   "_id=p2",
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				bu := decodeBundle(t, b)
				if len(bu.Entry) != 1 || *bu.Total != 1 || bu.link("self") != h.base+"/Patient?_count=5&_id=p2" {
					t.Errorf("bundle = %s", b)
				}
			},
		},
		{
			name:   "GET _search is not allowed",
			path:   "Patient/_search",
			status: http.StatusMethodNotAllowed,
			check:  wantHeader("Allow", "POST"),
		},
		{
			name:   "_summary=count",
			setup:  seedPatients,
			path:   "Patient?_summary=count",
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				m := decode(t, b)
				if _, ok := m["entry"]; ok || m["total"] != 3.0 {
					t.Errorf("bundle = %s", b)
				}
				if h.store.lastQuery.Params.Has("_summary") {
					t.Error("_summary was passed to the store")
				}
			},
		},
		{
			name:   "_elements subsets matches and tags them SUBSETTED",
			setup:  seedPatients,
			path:   "Patient?_id=p1&_elements=name,Patient.active",
			status: http.StatusOK,
			check: func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
				bu := decodeBundle(t, b)
				// The fake stores keys sorted; the subset keeps the stored order.
				want := `{"active":true,"id":"p1","meta":{"lastUpdated":"2025-03-01T12:01:00Z","profile":["http://nictiz.nl/fhir/StructureDefinition/nl-core-patient"],"versionId":"1","tag":[{"system":"http://hl7.org/fhir/v3/ObservationValue","code":"SUBSETTED","display":"subsetted"}]},"name":[{"family":"Jansen"}],"resourceType":"Patient"}`
				if got := compact(t, bu.Entry[0].Resource); got != want {
					t.Errorf("resource =\n%s\nwant\n%s", got, want)
				}
			},
		},
		{
			name:    "_elements in R4 uses the terminology.hl7.org tag system",
			version: fhir.R4,
			setup: func(f *fakeStore) {
				f.seed(tenant, `{"resourceType":"Patient","id":"p9","gender":"female","meta":{"tag":[{"code":"x"}]}}`)
			},
			path:   "Patient?_elements=gender",
			status: http.StatusOK,
			check: func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
				got := string(decodeBundle(t, b).Entry[0].Resource)
				if !strings.Contains(got, `"tag":[{"code":"x"},{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"`) {
					t.Errorf("resource = %s", got)
				}
			},
		},
		{
			name:   "Prefer: handling=strict",
			path:   "Patient?name=x",
			header: hdr("Prefer", "return=minimal, handling=strict"),
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, _ []byte) {
				if !h.store.lastQuery.Strict {
					t.Error("query not strict")
				}
			},
		},
		{
			name:   "_summary=true with _elements is refused",
			path:   "Patient?_summary=true&_elements=name",
			status: http.StatusBadRequest,
			check:  wantOutcome("invalid", "_summary=true"),
		},
		{
			name:   "invalid search from the store",
			setup:  func(f *fakeStore) { f.err = errors.Join(store.ErrInvalidSearch, errors.New("unknown parameter foo")) },
			path:   "Patient?foo=1",
			status: http.StatusBadRequest,
			check:  wantOutcome("invalid", "unknown parameter foo"),
		},
		{
			name:   "$lastn defaults max to 1 and keeps max out of the search",
			setup:  func(f *fakeStore) { f.seed(tenant, `{"resourceType":"Observation","id":"o1"}`) },
			path:   "Observation/$lastn?code=http://loinc.org|8867-4",
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				q := h.store.lastQuery
				if q.LastN != 1 || q.Type != "Observation" || q.Params.Get("code") != "http://loinc.org|8867-4" {
					t.Errorf("query = %+v", q)
				}
				want := h.base + "/Observation/$lastn?code=" + url.QueryEscape("http://loinc.org|8867-4")
				if got := decodeBundle(t, b).link("self"); got != want {
					t.Errorf("self = %q, want %q", got, want)
				}
				if h.observed[0].req.Operation != "$lastn" || h.observed[0].req.Interaction != rest.InteractionOperation {
					t.Errorf("observed %+v", h.observed[0].req)
				}
			},
		},
		{
			name:   "$lastn max",
			path:   "Observation/$lastn?max=3&patient=Patient/p1",
			status: http.StatusOK,
			check: func(t *testing.T, h *harness, _ *http.Response, _ []byte) {
				if q := h.store.lastQuery; q.LastN != 3 || q.Params.Has("max") {
					t.Errorf("query = %+v", q)
				}
			},
		},
		{name: "$lastn bad max", path: "Observation/$lastn?max=0", status: http.StatusBadRequest, check: wantOutcome("invalid", "max")},
		{name: "$lastn on Patient", path: "Patient/$lastn", status: http.StatusBadRequest, check: wantOutcome("not-supported", "$lastn")},
		{name: "unknown operation", path: "Observation/$stats", status: http.StatusBadRequest, check: wantOutcome("not-supported", "$stats")},
		{name: "POST $lastn", method: http.MethodPost, path: "Observation/$lastn", status: http.StatusMethodNotAllowed, check: wantHeader("Allow", "GET")},
	})
}

func TestWrite(t *testing.T) {
	const newPatient = `{"resourceType":"Patient","meta":{"profile":["http://nictiz.nl/fhir/StructureDefinition/nl-core-patient"]},"gender":"female"}`
	// nested is a valid Patient nesting n (100 or 101) levels deep: a chain
	// of extensions (two levels each) ending in a coded or a name value.
	nested := func(n int) string {
		levels, value := 48, `"valueCodeableConcept":{"coding":[{"code":"x"}]}` // innermost extension at 97: 98, 99, 100
		if n == 101 {
			levels, value = 49, `"valueHumanName":{"given":["x"]}` // at 99: 100, 101
		}
		return `{"resourceType":"Patient","extension":` + strings.Repeat(`[{"url":"http://x","extension":`, levels-1) +
			`[{"url":"http://x",` + value + `}]` + strings.Repeat(`}]`, levels-1) + `}`
	}
	run(t, []testCase{
		{
			name:   "create",
			method: http.MethodPost,
			path:   "Patient",
			header: hdr("Content-Type", "application/fhir+json"),
			body:   newPatient,
			status: http.StatusCreated,
			check: all(wantHeader("ETag", `W/"1"`), func(t *testing.T, h *harness, resp *http.Response, b []byte) {
				if got, want := resp.Header.Get("Location"), h.base+"/Patient/new1/_history/1"; got != want {
					t.Errorf("Location = %q, want %q", got, want)
				}
				m := decode(t, b)
				if m["id"] != "new1" || m["gender"] != "female" {
					t.Errorf("body = %s", b)
				}
				if obs := h.observed[0]; obs.req.Interaction != rest.InteractionCreate || len(obs.res.Resources) != 1 {
					t.Errorf("observed %+v %+v", obs.req, obs.res)
				}
			}),
		},
		{
			name:   "create with Prefer: return=minimal",
			method: http.MethodPost,
			path:   "Patient",
			header: hdr("Prefer", "return=minimal"),
			body:   newPatient,
			status: http.StatusCreated,
			check: func(t *testing.T, _ *harness, resp *http.Response, b []byte) {
				if len(b) != 0 || resp.Header.Get("Location") == "" {
					t.Errorf("body %q, Location %q", b, resp.Header.Get("Location"))
				}
			},
		},
		{
			name:   "create with Prefer: return=OperationOutcome",
			method: http.MethodPost,
			path:   "Patient",
			header: hdr("Prefer", "return=OperationOutcome"),
			body:   newPatient,
			status: http.StatusCreated,
			check:  wantOutcome("informational", "Patient/new1"),
		},
		{name: "create application/json", method: http.MethodPost, path: "Patient", header: hdr("Content-Type", "application/json; charset=utf-8"), body: newPatient, status: http.StatusCreated},
		{name: "nesting of 100 levels is fine", method: http.MethodPost, path: "Patient", body: nested(100), status: http.StatusCreated},
		{name: "nesting of 101 levels", method: http.MethodPost, path: "Patient", body: nested(101), status: http.StatusBadRequest, check: wantOutcome("structure", "deeper than 100")},
		{name: "malformed JSON", method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patient",}`, status: http.StatusBadRequest, check: wantOutcome("structure", "not valid JSON")},
		{name: "invalid UTF-8", method: http.MethodPost, path: "Patient", body: "{\"resourceType\":\"Patient\",\"x\":\"\xff\"}", status: http.StatusBadRequest, check: wantOutcome("structure", "UTF-8")},
		{name: "not an object", method: http.MethodPost, path: "Patient", body: `[{"resourceType":"Patient"}]`, status: http.StatusBadRequest, check: wantOutcome("structure", "not a JSON object")},
		{name: "empty body", method: http.MethodPost, path: "Patient", status: http.StatusBadRequest, check: wantOutcome("required", "Patient")},
		{name: "no resourceType", method: http.MethodPost, path: "Patient", body: `{"id":"x"}`, status: http.StatusBadRequest, check: wantOutcome("required", "resourceType")},
		{name: "resourceType differs from the URL", method: http.MethodPost, path: "Patient", body: `{"resourceType":"Observation"}`, status: http.StatusBadRequest, check: wantOutcome("invalid", "Observation")},
		{name: "resourceType matched case-sensitively", method: http.MethodPost, path: "Patient", body: `{"resourcetype":"Patient"}`, status: http.StatusBadRequest, check: wantOutcome("required", "resourceType")},
		{name: "duplicate resourceType", method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patient","resourceType":"Observation"}`, status: http.StatusBadRequest, check: wantOutcome("structure", `"resourceType" appears more than once at Patient.resourceType`)},
		{
			name:      "body over the limit",
			configure: func(c *rest.Config) { c.MaxBodyBytes = 64 },
			method:    http.MethodPost,
			path:      "Patient",
			body:      newPatient,
			status:    http.StatusRequestEntityTooLarge,
			check:     wantOutcome("too-long", "64 bytes"),
		},
		{
			name: "XML body", method: http.MethodPost, path: "Patient", header: hdr("Content-Type", "application/fhir+xml"),
			body:   `<Patient xmlns="http://hl7.org/fhir"><active value="true"/><birthDate value="1970-02-03"/></Patient>`,
			status: http.StatusCreated,
			check: func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				got := decode(t, b)
				if got["birthDate"] != "1970-02-03" || got["active"] != true {
					t.Errorf("stored %s", b)
				}
			},
		},
		{name: "text body", method: http.MethodPost, path: "Patient", header: hdr("Content-Type", "text/plain"), body: newPatient, status: http.StatusUnsupportedMediaType},
		{name: "body for another FHIR version", method: http.MethodPost, path: "Patient", header: hdr("Content-Type", "application/fhir+json; fhirVersion=4.0"), body: newPatient, status: http.StatusUnsupportedMediaType},
		{
			name:   "invalid resource from the store shows its message",
			setup:  func(f *fakeStore) { f.err = errors.Join(store.ErrInvalid, errors.New("Patient.gender: unknown code")) },
			method: http.MethodPost, path: "Patient", body: newPatient,
			status: http.StatusBadRequest,
			check:  wantOutcome("invalid", "Patient.gender: unknown code"),
		},
		{
			name:   "internal store failure is not shown",
			setup:  func(f *fakeStore) { f.err = errors.New("sqlite: disk I/O error at /var/lib/schakel/db") },
			method: http.MethodPost, path: "Patient", body: newPatient,
			status: http.StatusInternalServerError,
			check: all(wantOutcome("exception", "internal error"), func(t *testing.T, h *harness, _ *http.Response, b []byte) {
				if strings.Contains(string(b), "sqlite") {
					t.Errorf("cause leaked: %s", b)
				}
				if !strings.Contains(h.observed[0].res.Err.Error(), "disk I/O") {
					t.Errorf("observed Err %v lacks the cause", h.observed[0].res.Err)
				}
			}),
		},
		{
			name: "fhir.Error from the store passes through",
			setup: func(f *fakeStore) {
				f.err = fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", "BSN already registered")
			},
			method: http.MethodPost, path: "Patient", body: newPatient,
			status: http.StatusUnprocessableEntity,
			check:  wantOutcome("business-rule", "BSN already registered"),
		},
		{
			name:   "update creates",
			method: http.MethodPut, path: "Patient/p7", body: `{"resourceType":"Patient","id":"p7"}`,
			status: http.StatusCreated,
			check: func(t *testing.T, h *harness, resp *http.Response, _ []byte) {
				if got, want := resp.Header.Get("Location"), h.base+"/Patient/p7/_history/1"; got != want {
					t.Errorf("Location = %q, want %q", got, want)
				}
			},
		},
		{
			name:   "update updates",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			method: http.MethodPut, path: "Patient/p1", body: `{"resourceType":"Patient","id":"p1","gender":"other"}`,
			status: http.StatusOK,
			check:  all(wantHeader("ETag", `W/"2"`), wantHeader("Location", "")),
		},
		{
			name:   "update with matching If-Match",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			method: http.MethodPut, path: "Patient/p1", header: hdr("If-Match", `W/"1"`), body: `{"resourceType":"Patient","id":"p1"}`,
			status: http.StatusOK,
		},
		{
			name:   "update with stale If-Match",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			method: http.MethodPut, path: "Patient/p1", header: hdr("If-Match", `W/"3"`), body: `{"resourceType":"Patient","id":"p1"}`,
			status: http.StatusPreconditionFailed,
			check:  wantOutcome("conflict", "Patient/p1"),
		},
		{name: "update with malformed If-Match", method: http.MethodPut, path: "Patient/p1", header: hdr("If-Match", `3`), body: `{"resourceType":"Patient","id":"p1"}`, status: http.StatusBadRequest},
		{name: "update id differs from the URL", method: http.MethodPut, path: "Patient/p1", body: `{"resourceType":"Patient","id":"p2"}`, status: http.StatusBadRequest, check: wantOutcome("invalid", "differs")},
		{name: "update without id", method: http.MethodPut, path: "Patient/p1", body: `{"resourceType":"Patient"}`, status: http.StatusBadRequest, check: wantOutcome("required", "no id")},
		{
			name:   "delete",
			setup:  func(f *fakeStore) { f.seed(tenant, patient1) },
			method: http.MethodDelete, path: "Patient/p1",
			status: http.StatusNoContent,
			check: func(t *testing.T, h *harness, _ *http.Response, _ []byte) {
				if _, err := h.store.Read(context.Background(), tenant, "Patient", "p1"); !errors.Is(err, store.ErrDeleted) {
					t.Errorf("after delete, read: %v", err)
				}
			},
		},
		{
			name: "delete of a deleted resource succeeds",
			setup: func(f *fakeStore) {
				f.seed(tenant, patient1)
				f.Delete(context.Background(), tenant, "Patient", "p1")
			},
			method: http.MethodDelete, path: "Patient/p1",
			status: http.StatusNoContent,
		},
		{name: "delete of an unknown resource", method: http.MethodDelete, path: "Patient/p1", status: http.StatusNotFound},
	})
}

func TestRouting(t *testing.T) {
	run(t, []testCase{
		{name: "PATCH an instance", method: http.MethodPatch, path: "Patient/p1", body: "[]", status: http.StatusMethodNotAllowed, check: all(wantHeader("Allow", "GET, PUT, DELETE"), wantOutcome("not-supported", "PATCH"))},
		{name: "POST an instance", method: http.MethodPost, path: "Patient/p1", body: "{}", status: http.StatusMethodNotAllowed, check: wantHeader("Allow", "GET, PUT, DELETE")},
		{name: "DELETE a type", method: http.MethodDelete, path: "Patient", status: http.StatusMethodNotAllowed, check: wantHeader("Allow", "GET, POST")},
		{name: "PUT a version", method: http.MethodPut, path: "Patient/p1/_history/1", body: "{}", status: http.StatusMethodNotAllowed, check: wantHeader("Allow", "GET")},
		{name: "unknown resource type", path: "Patient2/p1", status: http.StatusNotFound, check: wantOutcome("not-supported", "Patient2")},
		{name: "lower-case type", path: "patient", status: http.StatusNotFound},
		{name: "R4-only type on STU3", path: "ServiceRequest", status: http.StatusNotFound},
		{name: "STU3-only type on R4", version: fhir.R4, path: "ProcedureRequest", status: http.StatusNotFound},
		{name: "unknown path shape", path: "Patient/p1/foo", status: http.StatusNotFound},
		{name: "too many segments", path: "Patient/p1/_history/1/x", status: http.StatusNotFound},
		{name: "history without a Historian", configure: func(c *rest.Config) { c.Store = plainStore{c.Store} }, path: "Patient/p1/_history", status: http.StatusNotFound, check: wantOutcome("not-supported", "history")},
		{name: "invalid id", path: "Patient/a_b", status: http.StatusBadRequest, check: wantOutcome("invalid", "a_b")},
		{name: "id too long", path: "Patient/" + strings.Repeat("a", 65), status: http.StatusBadRequest},
		{name: "instance operation", path: "Observation/o1/$lastn", status: http.StatusBadRequest, check: wantOutcome("not-supported", "$lastn")},
		{name: "unknown operation", path: "Patient/p1/$frobnicate", status: http.StatusBadRequest, check: wantOutcome("not-supported", "$frobnicate")},
		{name: "system level search", path: "", status: http.StatusNotFound},
		{name: "system operation", path: "$everything", status: http.StatusNotFound},
	})
}

func TestNegotiation(t *testing.T) {
	seed := func(f *fakeStore) { f.seed(tenant, patient1) }
	run(t, []testCase{
		{name: "Accept application/fhir+json", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+json"), status: http.StatusOK},
		{name: "Accept application/json", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/json"), status: http.StatusOK},
		{name: "Accept with fhirVersion", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+json; fhirVersion=3.0"), status: http.StatusOK},
		{name: "Accept of a browser", setup: seed, path: "Patient/p1", header: hdr("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"), status: http.StatusOK, contentType: xmlCT},
		{name: "Accept XML or JSON", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+xml, application/fhir+json;q=0.5"), status: http.StatusOK, contentType: xmlCT, check: wantXML("<gender value=\"male\"/>")},
		{name: "Accept JSON over XML", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+xml;q=0.4, application/fhir+json"), status: http.StatusOK},
		{name: "_format=json", setup: seed, path: "Patient/p1?_format=json", header: hdr("Accept", "application/fhir+xml"), status: http.StatusOK},
		{name: "Accept XML only", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+xml"), status: http.StatusOK, contentType: xmlCT, check: wantXML(`<Patient xmlns="http://hl7.org/fhir"><id value="p1"/>`)},
		{name: "Accept XML with fhirVersion", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+xml; fhirVersion=3.0"), status: http.StatusOK, contentType: xmlCT},
		{name: "Accept XML of another FHIR version", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+xml; fhirVersion=4.0"), status: http.StatusNotAcceptable},
		{name: "_format=xml", setup: seed, path: "Patient/p1?_format=xml", status: http.StatusOK, contentType: xmlCT, check: wantXML(`<div xmlns="http://www.w3.org/1999/xhtml">Jan</div>`)},
		{name: "_format=application/fhir+xml", setup: seed, path: "Patient/p1?_format=" + url.QueryEscape("application/fhir+xml"), status: http.StatusOK, contentType: xmlCT},
		{name: "_format=application/xml", setup: seed, path: "Patient/p1?_format=" + url.QueryEscape("application/xml"), status: http.StatusOK, contentType: xmlCT},
		{name: "search as XML", setup: seed, path: "Patient?_format=xml", status: http.StatusOK, contentType: xmlCT, check: wantXML(`<entry><fullUrl value=`)},
		{name: "errors in XML when XML was asked", path: "Patient/p9?_format=xml", status: http.StatusNotFound, contentType: xmlCT, check: wantXML(`<OperationOutcome xmlns="http://hl7.org/fhir"><issue><severity value="error"/><code value="not-found"/>`)},
		{name: "_format=ttl", setup: seed, path: "Patient/p1?_format=ttl", status: http.StatusNotAcceptable, check: wantOutcome("not-supported", "RDF Turtle")},
		{name: "Accept JSON of another FHIR version", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+json; fhirVersion=4.0"), status: http.StatusNotAcceptable},
		{name: "Accept JSON with q=0", setup: seed, path: "Patient/p1", header: hdr("Accept", "application/fhir+json;q=0"), status: http.StatusNotAcceptable},
	})
}

func TestCapabilities(t *testing.T) {
	deny := func(c *rest.Config) {
		c.Authorize = func(context.Context, *rest.Request) error { return errors.New("no") }
	}
	check := func(fhirVersion string) func(*testing.T, *harness, *http.Response, []byte) {
		return func(t *testing.T, h *harness, _ *http.Response, b []byte) {
			var cs struct {
				ResourceType, FHIRVersion, Kind string
				Format                          []string
				Implementation                  struct{ URL string }
				Rest                            []struct {
					Mode     string
					Resource []struct {
						Type        string
						Interaction []struct{ Code string }
					}
				}
			}
			if err := json.Unmarshal(b, &cs); err != nil {
				t.Fatal(err)
			}
			if cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != fhirVersion || cs.Kind != "instance" || !slices.Equal(cs.Format, []string{"json", "xml"}) {
				t.Errorf("statement = %s", b)
			}
			if cs.Implementation.URL != h.base || len(cs.Rest) != 1 || cs.Rest[0].Mode != "server" {
				t.Errorf("statement = %s", b)
			}
			found := false
			for _, r := range cs.Rest[0].Resource {
				if r.Type == "Patient" && len(r.Interaction) == 8 {
					found = true
				}
			}
			if !found {
				t.Error("Patient with its eight interactions not listed")
			}
			if h.store.calls != 0 {
				t.Error("metadata touched the store")
			}
		}
	}
	run(t, []testCase{
		{name: "STU3, without authorization", configure: deny, path: "metadata", status: http.StatusOK, check: check("3.0.2")},
		{name: "R4", version: fhir.R4, path: "metadata", status: http.StatusOK, check: check("4.0.1")},
		{name: "POST metadata", method: http.MethodPost, path: "metadata", status: http.StatusMethodNotAllowed, check: wantHeader("Allow", "GET")},
	})
}

func TestAuthorize(t *testing.T) {
	untouched := func(t *testing.T, h *harness, _ *http.Response, _ []byte) {
		if h.store.calls != 0 {
			t.Errorf("store called %d times before authorization", h.store.calls)
		}
	}
	var seen *rest.Request
	run(t, []testCase{
		{
			name: "a plain error is a 403 without its text",
			configure: func(c *rest.Config) {
				c.Authorize = func(context.Context, *rest.Request) error { return errors.New("policy engine: rule 17 of tenant file") }
			},
			path:   "Patient/p1",
			status: http.StatusForbidden,
			check: all(untouched, wantOutcome("forbidden", "access denied"), func(t *testing.T, _ *harness, _ *http.Response, b []byte) {
				if strings.Contains(string(b), "rule 17") {
					t.Errorf("policy detail leaked: %s", b)
				}
			}),
		},
		{
			name: "a fhir.Error keeps its status and text",
			configure: func(c *rest.Config) {
				c.Authorize = func(context.Context, *rest.Request) error {
					return fhir.Errorf(http.StatusUnauthorized, "login", "access token expired")
				}
			},
			method: http.MethodPost, path: "Patient", body: `{"resourceType":"Patient"}`,
			status: http.StatusUnauthorized,
			check:  all(untouched, wantOutcome("login", "access token expired")),
		},
		{
			name: "a fhir.Error without status is a 403",
			configure: func(c *rest.Config) {
				c.Authorize = func(context.Context, *rest.Request) error {
					return &fhir.Error{Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: "no consent"}}}
				}
			},
			method: http.MethodDelete, path: "Patient/p1",
			status: http.StatusForbidden,
			check:  all(untouched, wantOutcome("forbidden", "no consent")),
		},
		{
			name: "the hook sees the parsed request",
			configure: func(c *rest.Config) {
				c.Authorize = func(_ context.Context, req *rest.Request) error { seen = req; return nil }
			},
			method: http.MethodPut, path: "Patient/p1?x=y", body: `{"resourceType":"Patient","id":"p1"}`,
			status: http.StatusCreated,
			check: func(t *testing.T, h *harness, _ *http.Response, _ []byte) {
				if seen == nil || seen.Interaction != rest.InteractionUpdate || seen.Tenant != tenant || seen.Base != h.base ||
					seen.Type != "Patient" || seen.ID != "p1" || seen.Params.Get("x") != "y" || !strings.Contains(string(seen.Body), `"p1"`) || seen.HTTP == nil {
					t.Errorf("Authorize saw %+v", seen)
				}
			},
		},
	})
}

// TestParseRequest covers the pre-authorization entry point: the request can
// be inspected and then still be served, body included.
func TestParseRequest(t *testing.T) {
	f := newFakeStore()
	srv := rest.New(rest.Config{Store: f, Version: fhir.STU3, Logger: slog.New(slog.DiscardHandler)})
	body := `{"resourceType":"Patient","id":"p1"}`
	r := httptest.NewRequest(http.MethodPut, "/fhir/stu3/"+tenant+"/Patient/p1", strings.NewReader(body))
	req, err := srv.ParseRequest(r, tenant, "https://gtk.example/fhir/stu3/"+tenant, "Patient/p1")
	if err != nil {
		t.Fatal(err)
	}
	if req.Interaction != rest.InteractionUpdate || req.ID != "p1" || string(req.Body) != body {
		t.Fatalf("parsed %+v", req)
	}
	w := httptest.NewRecorder()
	srv.Serve(w, r, tenant, "https://gtk.example/fhir/stu3/"+tenant, "Patient/p1")
	if w.Code != http.StatusCreated {
		t.Fatalf("serve after parse: %d %s", w.Code, w.Body)
	}

	// A body of unknown length is cut off at the limit all the same.
	small := rest.New(rest.Config{Store: f, Version: fhir.STU3, MaxBodyBytes: 16})
	r = httptest.NewRequest(http.MethodPost, "/fhir/stu3/"+tenant+"/Patient", io.MultiReader(strings.NewReader(body)))
	r.ContentLength = -1
	if _, err := small.ParseRequest(r, tenant, "https://gtk.example", "Patient"); fhir.AsError(err) == nil || fhir.AsError(err).Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body over the limit: %v", err)
	}

	r = httptest.NewRequest(http.MethodPatch, "/fhir/stu3/"+tenant+"/Patient/p1", nil)
	if _, err := srv.ParseRequest(r, tenant, "https://gtk.example", "Patient/p1"); fhir.AsError(err) == nil || fhir.AsError(err).Status != http.StatusMethodNotAllowed {
		t.Fatalf("PATCH: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []rest.Config{
		{Version: fhir.STU3},
		{Store: newFakeStore(), Version: "dstu2"},
		{Store: newFakeStore(), Version: fhir.R4, MaxBodyBytes: -1},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}

// discard is a reusable http.ResponseWriter for the benchmark.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkRead measures read-by-id through the HTTP layer: "handler" calls
// the mux in-process (the cost of this package), "loopback" adds a real
// client and listener on 127.0.0.1.
func BenchmarkRead(b *testing.B) {
	h := newHarness(b, fhir.STU3, func(c *rest.Config) { c.Observe = nil })
	h.store.seed(tenant, patient1)
	handler := h.srv.Config.Handler

	b.Run("handler", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodGet, h.base+"/Patient/p1", nil)
		r.Header.Set("Accept", "application/fhir+json")
		w := &discard{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			handler.ServeHTTP(w, r)
			<-h.done
		}
	})
	b.Run("loopback", func(b *testing.B) {
		client := h.srv.Client()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Get(h.base + "/Patient/p1")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			<-h.done
			if resp.StatusCode != http.StatusOK {
				b.Fatal(resp.Status)
			}
		}
	})
	b.Run("loopback-xml", func(b *testing.B) {
		client := h.srv.Client()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Get(h.base + "/Patient/p1?_format=xml")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			<-h.done
			if resp.StatusCode != http.StatusOK {
				b.Fatal(resp.Status)
			}
		}
	})
}
