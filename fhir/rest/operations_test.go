package rest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// opServer is a rest.Server over an in-memory SQLite store of one FHIR
// version, on a real listener, holding two patients' records.
type opServer struct {
	t    *testing.T
	url  string
	mu   sync.Mutex
	seen []rest.Result // what Observe was told, per request
	reqs []*rest.Request
}

// opRecords are written with PUT (ids chosen) to both versions: the
// resources and elements used are the same in STU3 and R4.
var opRecords = []string{
	`{"resourceType":"Practitioner","id":"dr1","name":[{"family":"Huisarts"}]}`,
	`{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jan Jansen</div>"},"active":true,"name":[{"family":"Jansen"}],"gender":"male","birthDate":"1970-01-01","maritalStatus":{"text":"married"},"contact":[{"name":{"family":"Buur"}}],"generalPractitioner":[{"reference":"Practitioner/dr1"}]}`,
	`{"resourceType":"Patient","id":"p2","name":[{"family":"Pietersen"}]}`,
	`{"resourceType":"Observation","id":"o1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">bp</div>"},"status":"final","code":{"text":"blood pressure"},"subject":{"reference":"Patient/p1"},"component":[{"code":{"text":"systolic"},"valueQuantity":{"value":120},"dataAbsentReason":{"text":"n/a"}}]}`,
	`{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":80}}`,
	`{"resourceType":"Observation","id":"o3","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p2"},"valueQuantity":{"value":70}}`,
	`{"resourceType":"Composition","id":"c1","status":"final","type":{"text":"letter"},"subject":{"reference":"Patient/p1"},"date":"2025-01-01","author":[{"reference":"Practitioner/dr1"}],"title":"Verwijsbrief","section":[{"title":"Metingen","entry":[{"reference":"Observation/o1"},{"reference":"Observation/missing"}]}]}`,
}

func newOpServer(t *testing.T, v fhir.Version) *opServer {
	t.Helper()
	st, err := sqlite.Open(context.Background(), ":memory:", v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o := &opServer{t: t}
	srv := rest.New(rest.Config{Store: st, Version: v, Logger: slog.New(slog.DiscardHandler),
		Observe: func(_ context.Context, req *rest.Request, res rest.Result) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.seen = append(o.seen, res)
			o.reqs = append(o.reqs, req)
		}})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Serve(w, r, tenant, "http://"+r.Host+"/fhir", strings.TrimPrefix(r.URL.Path, "/fhir/"))
	}))
	t.Cleanup(hs.Close)
	o.url = hs.URL + "/fhir/"
	for _, rec := range opRecords {
		var head struct{ ResourceType, ID string }
		_ = json.Unmarshal([]byte(rec), &head)
		if code, _, body := o.do(http.MethodPut, head.ResourceType+"/"+head.ID, rec); code != http.StatusCreated {
			t.Fatalf("seed %s/%s: %d %s", head.ResourceType, head.ID, code, body)
		}
	}
	return o
}

func (o *opServer) do(method, path, body string, header ...string) (int, http.Header, string) {
	o.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, o.url+path, rd)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// last is what Observe saw of the latest request.
func (o *opServer) last() rest.Result {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[len(o.seen)-1]
}

type bundleDoc struct {
	ResourceType string
	Type         string
	Total        *int
	Timestamp    string
	Identifier   struct{ System, Value string }
	Entry        []struct {
		FullURL  string
		Resource map[string]any
		Search   *struct{ Mode string }
	}
}

func (b bundleDoc) refs() []string {
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Resource["resourceType"].(string)+"/"+e.Resource["id"].(string))
	}
	return out
}

func parseBundle(t *testing.T, body string) bundleDoc {
	t.Helper()
	var b bundleDoc
	if err := json.Unmarshal([]byte(body), &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("not a Bundle (%v): %s", err, body)
	}
	return b
}

func outcomeOf(t *testing.T, body string) []fhir.Issue {
	t.Helper()
	var oo struct {
		ResourceType string
		Issue        []fhir.Issue
	}
	if err := json.Unmarshal([]byte(body), &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome (%v): %s", err, body)
	}
	return oo.Issue
}

var versions = []fhir.Version{fhir.STU3, fhir.R4}

func TestEverything(t *testing.T) {
	for _, v := range versions {
		t.Run(string(v), func(t *testing.T) {
			o := newOpServer(t, v)
			code, _, body := o.do(http.MethodGet, "Patient/p1/$everything", "")
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			b := parseBundle(t, body)
			got := b.refs()
			if b.Type != "searchset" || len(got) == 0 || got[0] != "Patient/p1" {
				t.Fatalf("want a searchset with Patient/p1 first, got %s %v", b.Type, got)
			}
			for _, want := range []string{"Observation/o1", "Observation/o2", "Composition/c1", "Practitioner/dr1"} {
				if !slices.Contains(got, want) {
					t.Errorf("missing %s in %v", want, got)
				}
			}
			for _, not := range []string{"Observation/o3", "Patient/p2"} {
				if slices.Contains(got, not) {
					t.Errorf("%s (another patient's) in %v", not, got)
				}
			}
			if b.Total == nil || *b.Total != len(got) {
				t.Errorf("total %v, want %d", b.Total, len(got))
			}
			// Every resource returned is reported, as for a search (the audit).
			res := o.last()
			if len(res.Resources) != len(got) {
				t.Errorf("Observe saw %d resources, the Bundle holds %d", len(res.Resources), len(got))
			}

			code, _, body = o.do(http.MethodGet, "Patient/p1/$everything?_type=Observation&_summary=true", "")
			if code != http.StatusOK {
				t.Fatalf("_type: status %d: %s", code, body)
			}
			b = parseBundle(t, body)
			if got := b.refs(); !slices.Equal(got, []string{"Observation/o1", "Observation/o2"}) {
				t.Errorf("_type=Observation: %v", got)
			}
			if _, ok := b.Entry[0].Resource["text"]; ok {
				t.Errorf("_summary=true kept the narrative: %v", b.Entry[0].Resource)
			}

			for _, tc := range []struct {
				path  string
				want  int
				issue string
			}{
				{"Patient/nobody/$everything", http.StatusNotFound, "not-found"},
				{"Patient/p1/$everything?_type=Nonsense", http.StatusBadRequest, "invalid"},
				{"Patient/p1/$everything?code=x", http.StatusBadRequest, "invalid"},
				{"Patient/$everything", http.StatusBadRequest, "not-supported"},
				{"Observation/o1/$everything", http.StatusBadRequest, "not-supported"},
			} {
				code, _, body := o.do(http.MethodGet, tc.path, "")
				if code != tc.want || outcomeOf(t, body)[0].Code != tc.issue {
					t.Errorf("%s: %d %s, want %d %s", tc.path, code, body, tc.want, tc.issue)
				}
			}
		})
	}
}

func TestSummary(t *testing.T) {
	for _, v := range versions {
		t.Run(string(v), func(t *testing.T) {
			o := newOpServer(t, v)
			get := func(path string) map[string]any {
				t.Helper()
				code, _, body := o.do(http.MethodGet, path, "")
				if code != http.StatusOK {
					t.Fatalf("%s: %d %s", path, code, body)
				}
				var m map[string]any
				_ = json.Unmarshal([]byte(body), &m)
				return m
			}
			subsetted := func(m map[string]any) bool {
				meta, _ := m["meta"].(map[string]any)
				tags, _ := meta["tag"].([]any)
				for _, tg := range tags {
					if tg.(map[string]any)["code"] == "SUBSETTED" {
						return true
					}
				}
				return false
			}
			keys := func(m map[string]any) []string {
				var out []string
				for k := range m {
					out = append(out, k)
				}
				slices.Sort(out)
				return out
			}

			p := get("Patient/p1?_summary=true")
			if got, want := keys(p), []string{"active", "birthDate", "gender", "id", "meta", "name", "resourceType"}; !slices.Equal(got, want) {
				t.Errorf("Patient _summary=true: %v, want %v", got, want)
			}
			if !subsetted(p) {
				t.Error("Patient _summary=true is not tagged SUBSETTED")
			}
			// Backbone elements are cut down too: component.dataAbsentReason is no summary element.
			obs := get("Observation/o1?_summary=true")
			if got, want := keys(obs), []string{"code", "component", "id", "meta", "resourceType", "status", "subject"}; !slices.Equal(got, want) {
				t.Errorf("Observation _summary=true: %v, want %v", got, want)
			}
			comp := obs["component"].([]any)[0].(map[string]any)
			if got, want := keys(comp), []string{"code", "valueQuantity"}; !slices.Equal(got, want) {
				t.Errorf("Observation.component _summary=true: %v, want %v", got, want)
			}
			text := get("Observation/o1?_summary=text")
			if got, want := keys(text), []string{"code", "id", "meta", "resourceType", "status", "text"}; !slices.Equal(got, want) {
				t.Errorf("Observation _summary=text: %v, want %v", got, want)
			}
			// A mandatory choice element is kept by its typed name.
			if code, _, body := o.do(http.MethodPut, "MedicationRequest/m1", `{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order",`+
				`"medicationCodeableConcept":{"text":"paracetamol"},"subject":{"reference":"Patient/p1"},"note":[{"text":"n"}]}`); code != http.StatusCreated {
				t.Fatalf("PUT MedicationRequest: %d %s", code, body)
			}
			med := get("MedicationRequest/m1?_summary=text")
			if _, ok := med["medicationCodeableConcept"]; !ok || med["note"] != nil || med["intent"] == nil {
				t.Errorf("MedicationRequest _summary=text: %v", keys(med))
			}
			data := get("Observation/o1?_summary=data")
			if _, ok := data["text"]; ok || data["component"] == nil || !subsetted(data) {
				t.Errorf("_summary=data: %v", keys(data))
			}
			full := get("Observation/o1?_summary=false")
			if full["text"] == nil || subsetted(full) {
				t.Errorf("_summary=false: %v", keys(full))
			}

			code, _, body := o.do(http.MethodGet, "Observation?subject=Patient/p1&_summary=true", "")
			b := parseBundle(t, body)
			if code != http.StatusOK || len(b.Entry) != 2 {
				t.Fatalf("search _summary=true: %d %s", code, body)
			}
			for _, e := range b.Entry {
				if _, ok := e.Resource["text"]; ok {
					t.Errorf("search _summary=true kept text: %v", e.Resource)
				}
			}
			code, _, body = o.do(http.MethodGet, "Observation?subject=Patient/p1&_summary=count", "")
			if b := parseBundle(t, body); code != http.StatusOK || b.Total == nil || *b.Total != 2 || len(b.Entry) != 0 {
				t.Errorf("_summary=count: %d %s", code, body)
			}
			for _, bad := range []string{"Patient/p1?_summary=count", "Patient/p1?_summary=maybe", "Patient/p1?_summary=true&_summary=text"} {
				if code, _, body := o.do(http.MethodGet, bad, ""); code != http.StatusBadRequest || outcomeOf(t, body)[0].Code != "invalid" {
					t.Errorf("%s: %d %s", bad, code, body)
				}
			}
			// XML: the summary converts like any resource.
			code, h, body := o.do(http.MethodGet, "Patient/p1?_summary=true&_format=xml", "")
			if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/fhir+xml") ||
				!strings.Contains(body, "<birthDate value=\"1970-01-01\"/>") || strings.Contains(body, "<contact>") {
				t.Errorf("XML _summary=true: %d %s", code, body)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, v := range versions {
		t.Run(string(v), func(t *testing.T) {
			o := newOpServer(t, v)
			other := "ServiceRequest" // R4 only
			if v == fhir.R4 {
				other = "ProcedureRequest" // STU3 only
			}
			params := func(mode, res string) string {
				return `{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"` + mode + `"},{"name":"resource","resource":` + res + `}]}`
			}
			for _, tc := range []struct {
				name, method, path, body string
				header                   []string
				want                     int
				severity, issue, says    string
			}{
				{name: "valid resource", path: "Patient/$validate", body: `{"resourceType":"Patient","gender":"male"}`,
					want: 200, severity: "information", issue: "informational", says: "no issues"},
				{name: "unknown element", path: "Patient/$validate", body: `{"resourceType":"Patient","gender":"male","shoeSize":44}`,
					want: 200, severity: "error", says: "shoeSize"},
				{name: "missing mandatory element", path: "Observation/$validate", body: `{"resourceType":"Observation","code":{"text":"x"}}`,
					want: 200, severity: "error", says: "status"},
				{name: "Parameters, mode create", path: "Patient/$validate", body: params("create", `{"resourceType":"Patient"}`),
					want: 200, severity: "information", says: "create"},
				{name: "Parameters, mode update", path: "Patient/p1/$validate", body: params("update", `{"resourceType":"Patient","id":"p1"}`),
					want: 200, severity: "information", says: "update"},
				{name: "mode delete of an existing resource", path: "Patient/p1/$validate?mode=delete",
					want: 200, severity: "information", says: "delete"},
				{name: "XML body", path: "Patient/$validate", body: `<Patient xmlns="http://hl7.org/fhir"><gender value="female"/></Patient>`,
					header: []string{"Content-Type", "application/fhir+xml"}, want: 200, severity: "information"},
				{name: "mode delete of a missing resource", path: "Patient/nobody/$validate?mode=delete", want: 404, severity: "error"},
				{name: "mode update on the type", path: "Patient/$validate?mode=update", body: `{"resourceType":"Patient"}`,
					want: 400, severity: "error", issue: "invalid", says: "mode"},
				{name: "update with another id", path: "Patient/p1/$validate?mode=update", body: `{"resourceType":"Patient","id":"p2"}`,
					want: 400, severity: "error", says: "p2"},
				{name: "unknown mode", path: "Patient/$validate?mode=guess", body: `{"resourceType":"Patient"}`, want: 400, severity: "error", says: "mode"},
				{name: "another type than the URL", path: "Patient/$validate", body: `{"resourceType":"Observation"}`, want: 400, severity: "error", says: "Observation"},
				{name: "a type of the other FHIR version", path: "Patient/$validate", body: `{"resourceType":"` + other + `"}`,
					want: 400, severity: "error", issue: "not-supported", says: other},
				{name: "body of the other FHIR version by media type", path: "Patient/$validate", body: `{"resourceType":"Patient"}`,
					header: []string{"Content-Type", "application/fhir+json; fhirVersion=" + map[fhir.Version]string{fhir.STU3: "4.0", fhir.R4: "3.0"}[v]},
					want:   415, severity: "error", says: "fhirVersion"},
				{name: "a profile", path: "Patient/$validate", body: `{"resourceType":"Parameters","parameter":[{"name":"profile","valueUri":"http://example.org/p"},{"name":"resource","resource":{"resourceType":"Patient"}}]}`,
					want: 400, severity: "error", issue: "not-supported", says: "profile"},
				{name: "no body", path: "Patient/$validate", want: 400, severity: "error", issue: "required"},
				{name: "not JSON", path: "Patient/$validate", body: `{"resourceType":`, want: 400, severity: "error"},
				{name: "GET", method: http.MethodGet, path: "Patient/$validate", want: 405, severity: "error"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					method := tc.method
					if method == "" {
						method = http.MethodPost
					}
					code, _, body := o.do(method, tc.path, tc.body, tc.header...)
					if code != tc.want {
						t.Fatalf("status %d, want %d: %s", code, tc.want, body)
					}
					issues := outcomeOf(t, body)
					if issues[0].Severity != tc.severity || (tc.issue != "" && issues[0].Code != tc.issue) {
						t.Errorf("issue %+v, want %s %s", issues[0], tc.severity, tc.issue)
					}
					all, _ := json.Marshal(issues)
					if !strings.Contains(string(all), tc.says) {
						t.Errorf("issues %s do not name %q", all, tc.says)
					}
				})
			}
			// Nothing was written by $validate.
			if code, _, body := o.do(http.MethodGet, "Patient?gender=female", ""); parseBundle(t, body).Total == nil || *parseBundle(t, body).Total != 0 {
				t.Errorf("$validate stored a resource: %d %s", code, body)
			}
		})
	}
}

func TestDocument(t *testing.T) {
	for _, v := range versions {
		t.Run(string(v), func(t *testing.T) {
			o := newOpServer(t, v)
			code, _, body := o.do(http.MethodGet, "Composition/c1/$document", "")
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			b := parseBundle(t, body)
			got := b.refs()
			if b.Type != "document" || got[0] != "Composition/c1" {
				t.Fatalf("want a document with the Composition first: %s %v", b.Type, got)
			}
			slices.Sort(got[1:])
			if want := []string{"Composition/c1", "Observation/o1", "Patient/p1", "Practitioner/dr1"}; !slices.Equal(got, want) {
				t.Errorf("entries %v, want %v", got, want)
			}
			if b.Identifier.System != "urn:ietf:rfc:3986" || !strings.HasPrefix(b.Identifier.Value, "urn:uuid:") {
				t.Errorf("identifier %+v", b.Identifier)
			}
			if (v == fhir.R4) != (b.Timestamp != "") {
				t.Errorf("timestamp %q on %s", b.Timestamp, v)
			}
			for _, e := range b.Entry {
				if e.Search != nil || !strings.HasSuffix(e.FullURL, "/fhir/"+e.Resource["resourceType"].(string)+"/"+e.Resource["id"].(string)) {
					t.Errorf("entry %s: fullUrl %s, search %v", e.Resource["id"], e.FullURL, e.Search)
				}
			}
			if len(o.last().Resources) != 4 {
				t.Errorf("Observe saw %d resources, want 4", len(o.last().Resources))
			}
			if code, _, body := o.do(http.MethodGet, "Composition/c1/$document?_format=xml", ""); code != http.StatusOK || !strings.Contains(body, `<type value="document"/>`) {
				t.Errorf("XML document: %d %s", code, body)
			}
			for _, tc := range []struct {
				path string
				want int
			}{
				{"Composition/none/$document", http.StatusNotFound},
				{"Composition/c1/$document?persist=true", http.StatusBadRequest},
				{"Composition/$document", http.StatusBadRequest},
				{"Patient/p1/$document", http.StatusBadRequest},
			} {
				if code, _, body := o.do(http.MethodGet, tc.path, ""); code != tc.want {
					t.Errorf("%s: %d, want %d: %s", tc.path, code, tc.want, body)
				}
			}
		})
	}
}

func TestHead(t *testing.T) {
	for _, v := range versions {
		t.Run(string(v), func(t *testing.T) {
			o := newOpServer(t, v)
			for _, tc := range []struct {
				path string
				want int
			}{
				{"Patient/p1", http.StatusOK},
				{"Patient/p1/_history/1", http.StatusOK},
				{"Patient?name=Jansen", http.StatusOK},
				{"metadata", http.StatusOK},
				{"Patient/nobody", http.StatusNotFound},
			} {
				code, h, body := o.do(http.MethodHead, tc.path, "")
				_, gh, gbody := o.do(http.MethodGet, tc.path, "")
				if code != tc.want || body != "" {
					t.Errorf("HEAD %s: %d with %d body bytes, want %d and none", tc.path, code, len(body), tc.want)
				}
				if h.Get("Content-Type") != gh.Get("Content-Type") || h.Get("Etag") != gh.Get("Etag") {
					t.Errorf("HEAD %s: headers %v differ from GET's %v", tc.path, h, gh)
				}
				if tc.path == "Patient/p1" && (h.Get("Content-Length") != gh.Get("Content-Length") || h.Get("Etag") == "" || len(gbody) == 0) {
					t.Errorf("HEAD %s: Content-Length %q, ETag %q; GET's %q", tc.path, h.Get("Content-Length"), h.Get("Etag"), gh.Get("Content-Length"))
				}
			}
			if code, _, _ := o.do(http.MethodHead, "Patient/_search", ""); code != http.StatusMethodNotAllowed {
				t.Errorf("HEAD on POST _search: %d, want 405", code)
			}
		})
	}
}

// Each version's CapabilityStatement names the operations, in JSON and
// XML, and is itself valid against that version's definitions.
func TestCapabilityOperations(t *testing.T) {
	for _, v := range versions {
		t.Run(string(v), func(t *testing.T) {
			o := newOpServer(t, v)
			code, h, body := o.do(http.MethodGet, "metadata", "")
			if code != http.StatusOK || !strings.Contains(h.Get("Content-Type"), "fhirVersion="+v.MimeVersion()) {
				t.Fatalf("metadata: %d %s", code, h.Get("Content-Type"))
			}
			for _, op := range []string{"Patient-everything", "Composition-document", "Resource-validate", "Observation-lastn"} {
				if !strings.Contains(body, op) {
					t.Errorf("CapabilityStatement lacks %s", op)
				}
			}
			if issues := validate.Resource(v, []byte(body)); len(issues) > 0 {
				t.Errorf("CapabilityStatement is not valid %s: %+v", v, issues)
			}
			code, h, body = o.do(http.MethodGet, "metadata", "", "Accept", "application/fhir+xml")
			if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/fhir+xml") || !strings.Contains(body, "<CapabilityStatement") || !strings.Contains(body, "Patient-everything") {
				t.Errorf("XML metadata: %d %s", code, body[:min(len(body), 300)])
			}
		})
	}
}

// Authorize decides on Patient/$everything knowing the patient (read
// first); a refused client is not told whether the patient exists.
func TestEverythingAuthorize(t *testing.T) {
	for _, v := range versions {
		t.Run(string(v), func(t *testing.T) {
			st, err := sqlite.Open(context.Background(), ":memory:", v)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if _, _, err := st.Update(context.Background(), tenant, []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"Jansen"}]}`), ""); err != nil {
				t.Fatal(err)
			}
			var seen []string
			srv := rest.New(rest.Config{Store: st, Version: v, Logger: slog.New(slog.DiscardHandler),
				Authorize: func(_ context.Context, req *rest.Request) error {
					name := "none"
					if req.Patient != nil {
						name = req.Patient.Type + "/" + req.Patient.ID
					}
					seen = append(seen, name)
					return fhir.Errorf(http.StatusForbidden, "forbidden", "not you")
				}})
			for _, id := range []string{"p1", "nobody"} {
				rec := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodGet, "/fhir/Patient/"+id+"/$everything", nil)
				srv.Serve(rec, r, tenant, "http://x/fhir", "Patient/"+id+"/$everything")
				if rec.Code != http.StatusForbidden {
					t.Errorf("%s: %d, want 403: %s", id, rec.Code, rec.Body)
				}
			}
			if !slices.Equal(seen, []string{"Patient/p1", "none"}) {
				t.Errorf("Authorize saw %v", seen)
			}
		})
	}
}
