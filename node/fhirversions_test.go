package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
)

// fhirCall is one request on the internal listener as participant 1.
func (e *edgeEnv) fhirCall(t *testing.T, method, path, body string, kv ...string) (*http.Response, []byte) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + e.tokens[edgeURA1]}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return do(t, e.internal, method, e.n.InternalURL()+path, h, []byte(body))
}

const (
	r4Patient = `{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Jan</div>"},` +
		`"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911120"}],"name":[{"family":"Jansen"}],"gender":"male","contact":[{"name":{"family":"Buur"}}]}`
	// ServiceRequest exists in R4 only (STU3: ProcedureRequest).
	r4Request = `{"resourceType":"ServiceRequest","id":"s1","status":"active","intent":"order","subject":{"reference":"Patient/p1"}}`
)

// TestInternalFHIRVersions: the internal API serves the R4 store at
// /internal/fhir/r4 and the STU3 store at /internal/fhir/stu3, apart from
// each other, and /internal/fhir negotiates between them by fhirVersion.
func TestInternalFHIRVersions(t *testing.T) {
	e := newEdgeEnv(t)
	json4 := "application/fhir+json; fhirVersion=4.0"
	r4Composition := `{"resourceType":"Composition","id":"c1","status":"final","type":{"text":"letter"},"subject":{"reference":"Patient/p1"},"date":"2025-01-01","author":[{"display":"GP"}],"title":"Verwijzing","section":[{"entry":[{"reference":"ServiceRequest/s1"}]}]}`
	for _, body := range []string{r4Patient, r4Request, r4Composition} {
		var head struct{ ResourceType, ID string }
		_ = json.Unmarshal([]byte(body), &head)
		if resp, b := e.fhirCall(t, http.MethodPut, "/internal/fhir/r4/"+head.ResourceType+"/"+head.ID, body); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT R4 %s: %d %s", head.ResourceType, resp.StatusCode, b)
		}
	}
	for _, body := range []string{
		`{"resourceType":"Patient","id":"q1","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911120"}],"name":[{"family":"Pieters"}],"photo":[{"contentType":"image/png"}]}`,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/q1"}}`,
		`{"resourceType":"Composition","id":"c1","status":"final","type":{"text":"letter"},"subject":{"reference":"Patient/q1"},"date":"2025-01-01","author":[{"display":"GP"}],"title":"Brief","section":[{"entry":[{"reference":"Observation/o1"}]}]}`,
	} {
		var head struct{ ResourceType, ID string }
		_ = json.Unmarshal([]byte(body), &head)
		if resp, b := e.fhirCall(t, http.MethodPut, "/internal/fhir/stu3/"+head.ResourceType+"/"+head.ID, body); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT STU3 %s: %d %s", head.ResourceType, resp.StatusCode, b)
		}
	}
	if _, err := os.Stat(filepath.Join(e.n.cfg.DataDir, "fhir-r4.db")); err != nil {
		t.Errorf("no R4 store file: %v", err)
	}
	for _, tc := range []struct {
		name, method, path, body string
		header                   []string
		status                   int
		contentType, says        string
	}{
		{name: "R4 read", method: "GET", path: "/internal/fhir/r4/ServiceRequest/s1", status: 200, contentType: "fhirVersion=4.0", says: `"intent":"order"`},
		{name: "the STU3 store holds none of it", method: "GET", path: "/internal/fhir/stu3/Patient/p1", status: 404},
		{name: "an R4 type on STU3", method: "GET", path: "/internal/fhir/stu3/ServiceRequest/s1", status: 404, says: "ServiceRequest"},
		{name: "negotiated R4 by Accept", method: "GET", path: "/internal/fhir/ServiceRequest/s1", header: []string{"Accept", json4}, status: 200, contentType: "fhirVersion=4.0"},
		{name: "negotiated R4 by _format", method: "GET", path: "/internal/fhir/Patient/p1?_format=" + "application/fhir%2Bxml%3BfhirVersion%3D4.0", status: 200, contentType: "application/fhir+xml", says: "<Patient"},
		{name: "no version named: STU3", method: "GET", path: "/internal/fhir/Patient/p1", status: 404, contentType: "fhirVersion=3.0"},
		{name: "STU3 metadata", method: "GET", path: "/internal/fhir/stu3/metadata", status: 200, says: `"fhirVersion":"3.0.2"`},
		{name: "R4 metadata", method: "GET", path: "/internal/fhir/r4/metadata", status: 200, says: `"fhirVersion":"4.0.1"`},
		{name: "R4 metadata in XML", method: "GET", path: "/internal/fhir/r4/metadata", header: []string{"Accept", "application/fhir+xml"}, status: 200, says: `<fhirVersion value="4.0.1"/>`},
		{name: "negotiated metadata", method: "GET", path: "/internal/fhir/metadata", header: []string{"Accept", json4}, status: 200, says: `"fhirVersion":"4.0.1"`},
		{name: "R4 $everything", method: "GET", path: "/internal/fhir/r4/Patient/p1/$everything", status: 200, says: "ServiceRequest/s1"},
		{name: "R4 _summary=true", method: "GET", path: "/internal/fhir/r4/Patient/p1?_summary=true", status: 200, says: "SUBSETTED"},
		{name: "STU3 $everything", method: "GET", path: "/internal/fhir/stu3/Patient/q1/$everything", status: 200, contentType: "fhirVersion=3.0", says: "Observation/o1"},
		{name: "negotiated STU3 $everything", method: "GET", path: "/internal/fhir/Patient/q1/$everything", status: 200, says: "Observation/o1"},
		{name: "STU3 _summary=true", method: "GET", path: "/internal/fhir/stu3/Patient/q1?_summary=true", status: 200, says: "SUBSETTED"},
		{name: "STU3 $document", method: "GET", path: "/internal/fhir/stu3/Composition/c1/$document", status: 200, contentType: "fhirVersion=3.0", says: `"type":"document"`},
		{name: "R4 $document", method: "GET", path: "/internal/fhir/r4/Composition/c1/$document", status: 200, contentType: "fhirVersion=4.0", says: "ServiceRequest/s1"},
		{name: "R4 $document in XML", method: "GET", path: "/internal/fhir/r4/Composition/c1/$document?_format=xml", status: 200, says: `<timestamp value=`},
		{name: "STU3 HEAD", method: "HEAD", path: "/internal/fhir/stu3/Patient/q1", status: 200, contentType: "fhirVersion=3.0"},
		{name: "R4 HEAD", method: "HEAD", path: "/internal/fhir/r4/Patient/p1", status: 200, contentType: "fhirVersion=4.0"},
		{name: "R4 $validate", method: "POST", path: "/internal/fhir/r4/ServiceRequest/$validate", body: `{"resourceType":"ServiceRequest","status":"active"}`, status: 200, says: "intent"},
		{name: "R4 $validate of an STU3 resource", method: "POST", path: "/internal/fhir/r4/Patient/$validate", body: `{"resourceType":"Patient","animal":{"species":{"text":"dog"}}}`, status: 200, says: "Patient.animal is not an element"},
		{name: "STU3 $validate", method: "POST", path: "/internal/fhir/stu3/Patient/$validate", body: `{"resourceType":"Patient","animal":{"species":{"text":"dog"}}}`, status: 200, says: "no issues"},
		{name: "body and Accept of different versions", method: "POST", path: "/internal/fhir/Patient", body: r4Patient,
			header: []string{"Content-Type", json4, "Accept", "application/fhir+json; fhirVersion=3.0"}, status: 406, says: "fhirVersion 4.0"},
		{name: "an unserved version", method: "POST", path: "/internal/fhir/Patient", body: r4Patient,
			header: []string{"Content-Type", "application/fhir+json; fhirVersion=5.0"}, status: 415, says: "fhirVersion 5.0"},
		{name: "an R4 body on the STU3 base", method: "POST", path: "/internal/fhir/stu3/ServiceRequest", body: r4Request, status: 404, says: "ServiceRequest"},
		{name: "R4 media type on the STU3 base", method: "POST", path: "/internal/fhir/stu3/Patient", body: r4Patient, header: []string{"Content-Type", json4}, status: 415, says: "fhirVersion 3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.fhirCall(t, tc.method, tc.path, tc.body, tc.header...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), tc.contentType) {
				t.Errorf("Content-Type %q, want %q in it", resp.Header.Get("Content-Type"), tc.contentType)
			}
			if !strings.Contains(string(body), tc.says) {
				t.Errorf("answer does not say %q: %s", tc.says, body)
			}
			if resp.StatusCode >= 400 && resourceTypeOf(body) != "OperationOutcome" {
				t.Errorf("refusal is not an OperationOutcome: %s", body)
			}
		})
	}
	// The refused version is audited with the participant.
	resp, _ := e.fhirCall(t, http.MethodGet, "/internal/fhir/Patient/p1", "", "Accept", "application/fhir+json; fhirVersion=1.0")
	if rec := lastRecord(t, e.n); resp.StatusCode != http.StatusNotAcceptable || rec.Tenant != edgeURA1 || rec.Outcome != http.StatusNotAcceptable {
		t.Errorf("refused version: %d, audit record %+v", resp.StatusCode, rec)
	}
	// $everything is audited with the patient, also when the patient
	// itself is not among what it returns.
	e.fhirCall(t, http.MethodGet, "/internal/fhir/r4/Patient/p1/$everything?_type=ServiceRequest", "")
	if rec := lastRecord(t, e.n); rec.Patient != "999911120" || len(rec.Resources) != 1 {
		t.Errorf("$everything?_type=ServiceRequest audit record: patient %q, resources %v", rec.Patient, rec.Resources)
	}
	// $everything is audited with the patient and every resource returned.
	e.fhirCall(t, http.MethodGet, "/internal/fhir/r4/Patient/p1/$everything", "")
	rec := lastRecord(t, e.n)
	if rec.Patient != "999911120" || !slices.Contains(rec.Resources, "ServiceRequest/s1") || !slices.Contains(rec.Resources, "Patient/p1") {
		t.Errorf("$everything audit record: patient %q, resources %v", rec.Patient, rec.Resources)
	}
}

// TestPublicR4Base: each participant's R4 store is on the public listener
// at /fhir/r4/{ura}, with its own CapabilityStatement, behind the same
// token check and audit as the STU3 base.
func TestPublicR4Base(t *testing.T) {
	e := newEdgeEnv(t)
	base := e.n.PublicURL() + "/fhir/r4/" + edgeURA1
	resp, body := do(t, e.public, http.MethodGet, base+"/metadata", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"fhirVersion":"4.0.1"`) || !strings.Contains(string(body), base) {
		t.Fatalf("R4 metadata: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, e.public, http.MethodGet, base+"/metadata", http.Header{"Accept": {"application/fhir+xml"}}, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<fhirVersion value="4.0.1"/>`) {
		t.Fatalf("R4 metadata in XML: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/Patient/p1/$everything", "/Patient?_summary=true", "/Patient/$validate"} {
		resp, body = do(t, e.public, http.MethodGet, base+path, nil, nil)
		if resp.StatusCode != http.StatusUnauthorized || resourceTypeOf(body) != "OperationOutcome" {
			t.Errorf("%s without a token: %d %s", path, resp.StatusCode, body)
		}
		if rec := lastRecord(t, e.n); rec.Outcome != http.StatusUnauthorized || rec.Tenant != edgeURA1 || rec.ActorURA != edgePartnerURA {
			t.Errorf("%s without a token: audit record %+v", path, rec)
		}
	}
	// The unversioned base negotiates, as the internal one does.
	unversioned := e.n.PublicURL() + "/fhir/" + edgeURA1
	for _, tc := range []struct {
		accept string
		status int
		says   string
	}{
		{"", http.StatusOK, `"fhirVersion":"3.0.2"`},
		{"application/fhir+json; fhirVersion=4.0", http.StatusOK, `"fhirVersion":"4.0.1"`},
		{"application/fhir+xml; fhirVersion=3.0", http.StatusOK, `<fhirVersion value="3.0.2"/>`},
		{"application/fhir+json; fhirVersion=5.0", http.StatusNotAcceptable, "fhirVersion 5.0 is not served"},
	} {
		resp, body := do(t, e.public, http.MethodGet, unversioned+"/metadata", http.Header{"Accept": {tc.accept}}, nil)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
			t.Errorf("unversioned metadata, Accept %q: %d %s", tc.accept, resp.StatusCode, body)
		}
	}
	if rec := lastRecord(t, e.n); rec.Outcome != http.StatusNotAcceptable || rec.Tenant != edgeURA1 || rec.ActorURA != edgePartnerURA {
		t.Errorf("refused version: audit record %+v", rec)
	}
	resp, body = do(t, e.public, http.MethodGet, unversioned+"/Patient/p1/$everything", http.Header{"Accept": {"application/fhir+json; fhirVersion=4.0"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || resourceTypeOf(body) != "OperationOutcome" {
		t.Errorf("unversioned $everything without a token: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, e.public, http.MethodGet, e.n.PublicURL()+"/fhir/r4/90000077/metadata", nil, nil)
	if resp.StatusCode != http.StatusNotFound || resourceTypeOf(body) != "OperationOutcome" {
		t.Errorf("unknown participant: %d %s", resp.StatusCode, body)
	}
}

// TestR4StoreOnPostgres: with store.postgres the R4 store has its own
// schema beside the STU3 one.
func TestR4StoreOnPostgres(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "noder4_")
	e := newEdgeEnv(t, func(c *Config) { c.Store.Postgres, c.Store.Schema = dsn, schema })
	if resp, b := e.fhirCall(t, http.MethodPut, "/internal/fhir/r4/ServiceRequest/s1", r4Request); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT R4: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.fhirCall(t, http.MethodGet, "/internal/fhir/r4/ServiceRequest?status=active", ""); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"total":1`) {
		t.Fatalf("R4 search: %d %s", resp.StatusCode, b)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// A store.schema with no room for "_r4" is refused, naming the setting.
	long := schema + "_" + strings.Repeat("x", 60-len(schema)) // dropped with schema
	cfg := startableConfig(t)
	cfg.Store.Postgres, cfg.Store.Schema = dsn, long
	if n, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		n.Close()
		t.Error("a 61-character store.schema was accepted")
	} else if !strings.HasPrefix(err.Error(), "store.schema: ") {
		t.Errorf("error %q does not name store.schema", err)
	}
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", r4Schema(schema)).Scan(&n); err != nil || n != 1 {
		t.Errorf("schema %s: %d, %v", r4Schema(schema), n, err)
	}
}
