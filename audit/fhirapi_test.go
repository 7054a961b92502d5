package audit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
)

func TestFHIRAuditEventSearchAndRead(t *testing.T) {
	ctx := context.Background()
	s := backends(t)["sqlite"](t, nil)
	day := time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)
	fixtures := []Record{
		{Time: day, Tenant: "00000001", ActorURA: "00000002", Patient: "999909587", Outcome: 200, Action: ActionRead, Interaction: "search-type", Types: []string{"Condition"}, Query: "Condition?patient.identifier=x"},
		{Time: day.Add(time.Hour), Tenant: "00000001", ActorURA: "00000003", Patient: "999909587", Outcome: 403, OutcomeText: "no consent", Action: ActionRead, Interaction: "read"},
		{Time: day.AddDate(0, 0, 1), Tenant: "00000001", ActorURA: "00000002", Patient: "999911259", Outcome: 200, Action: ActionRead, Interaction: "read"},
		{Time: day.AddDate(0, 0, 2), Tenant: "00000004", ActorURA: "00000002", Patient: "999909587", Outcome: 200, Action: ActionCreate, Interaction: "notify", Type: "notify"},
	}
	for _, r := range fixtures {
		r.ActorSystem, r.ActorUser, r.ActorRole, r.ActorName, r.Address = "90000001", "900000123", "01.015", "Dr. Test", "127.0.0.1:1"
		r.Sensitivity, r.AuthzProtocol, r.Checks = "N", "np-authorization-base", []string{"mtls"}
		if err := s.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := s.List(ctx, Filter{})
	tenantOf := func(r *http.Request) string { return r.PathValue("ura") }
	mux := http.NewServeMux()
	mux.Handle("GET /internal/{ura}/r4/", FHIRHandler(s.Store, fhir.R4, tenantOf))
	mux.Handle("GET /internal/{ura}/stu3/", FHIRHandler(s.Store, fhir.STU3, tenantOf))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return resp.StatusCode, doc
	}
	ids := func(doc map[string]any) []string {
		var out []string
		entries, _ := doc["entry"].([]any)
		for _, e := range entries {
			out = append(out, e.(map[string]any)["resource"].(map[string]any)["id"].(string))
		}
		return out
	}
	bsn := url.QueryEscape("http://fhir.nl/fhir/NamingSystem/bsn|999909587")
	cases := []struct {
		name   string
		path   string
		status int
		want   []int // indexes into all, in the order expected
	}{
		{"patient by system|BSN, newest first", "/internal/00000001/r4/AuditEvent?patient=" + bsn, 200, []int{1, 0}},
		{"patient by OID system", "/internal/00000001/r4/AuditEvent?patient.identifier=" + url.QueryEscape("urn:oid:2.16.840.1.113883.2.4.6.3|999909587"), 200, []int{1, 0}},
		{"bare BSN, oldest first", "/internal/00000001/r4/AuditEvent?patient=999909587&_sort=date", 200, []int{0, 1}},
		{"other tenant sees its own only", "/internal/00000004/r4/AuditEvent?patient=999909587", 200, []int{3}},
		{"date range", "/internal/00000001/r4/AuditEvent?date=ge2025-03-10T09:30:00Z&date=lt2025-03-12", 200, []int{2, 1}},
		{"date day", "/internal/00000001/r4/AuditEvent?date=2025-03-11", 200, []int{2}},
		{"outcome refused", "/internal/00000001/r4/AuditEvent?outcome=4", 200, []int{1}},
		{"agent URA", "/internal/00000001/r4/AuditEvent?agent=" + url.QueryEscape("http://fhir.nl/fhir/NamingSystem/ura|00000003"), 200, []int{1}},
		{"count", "/internal/00000001/r4/AuditEvent?_count=1", 200, []int{2}},
		{"stu3", "/internal/00000001/stu3/AuditEvent?patient=999909587", 200, []int{1, 0}},
		{"invalid BSN", "/internal/00000001/r4/AuditEvent?patient=123456789", 400, nil},
		{"unknown parameter", "/internal/00000001/r4/AuditEvent?entity=x", 400, nil},
		{"bad date", "/internal/00000001/r4/AuditEvent?date=yesterday", 400, nil},
		{"bad outcome", "/internal/00000001/r4/AuditEvent?outcome=2", 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, doc := get(tc.path)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, doc)
			}
			if status != 200 {
				if doc["resourceType"] != "OperationOutcome" {
					t.Errorf("error is not an OperationOutcome: %v", doc)
				}
				return
			}
			var want []string
			for _, i := range tc.want {
				want = append(want, all[i].EventID)
			}
			if got := ids(doc); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("ids %v, want %v", got, want)
			}
			if doc["type"] != "searchset" {
				t.Errorf("not a searchset: %v", doc["type"])
			}
		})
	}

	t.Run("total and next link", func(t *testing.T) {
		_, doc := get("/internal/00000001/r4/AuditEvent?_count=1")
		links, _ := json.Marshal(doc["link"])
		if doc["total"] != float64(3) || !strings.Contains(string(links), `"next"`) {
			t.Errorf("total %v, links %s", doc["total"], links)
		}
	})
	t.Run("read and R4 shape", func(t *testing.T) {
		status, ev := get("/internal/00000001/r4/AuditEvent/" + all[1].EventID)
		if status != 200 {
			t.Fatalf("status %d: %v", status, ev)
		}
		b, _ := json.Marshal(ev)
		for _, want := range []string{`"outcome":"4"`, `"outcomeDesc":"no consent"`, `"code":"rest"`, `"code":"read"`,
			`"who":{"display":"Dr. Test","identifier":{"system":"http://fhir.nl/fhir/NamingSystem/uzi-nr-pers","value":"900000123"}}`,
			`"value":"00000003"`, `"what":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999909587"}}`,
			`"observer":{"display":"node-a","identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"00000001"}}`,
			`"valueString":"np-authorization-base"`, `"address":"127.0.0.1:1"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("AuditEvent lacks %s:\n%s", want, b)
			}
		}
	})
	t.Run("STU3 shape", func(t *testing.T) {
		_, ev := get("/internal/00000001/stu3/AuditEvent/" + all[0].EventID)
		b, _ := json.Marshal(ev)
		for _, want := range []string{`"userId":{"system":"http://fhir.nl/fhir/NamingSystem/uzi-nr-pers"`, `"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn"`,
			`"system":"http://hl7.org/fhir/audit-event-type"`, `"query":"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("STU3 AuditEvent lacks %s:\n%s", want, b)
			}
		}
		if strings.Contains(string(b), `"who"`) || strings.Contains(string(b), `"what"`) {
			t.Errorf("STU3 AuditEvent has R4 elements:\n%s", b)
		}
	})
	t.Run("read of another tenant's record", func(t *testing.T) {
		if status, _ := get("/internal/00000001/r4/AuditEvent/" + all[3].EventID); status != 404 {
			t.Errorf("status %d, want 404", status)
		}
	})
	t.Run("only GET", func(t *testing.T) {
		rec := httptest.NewRecorder()
		FHIRHandler(s.Store, fhir.R4, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/AuditEvent/x", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("status %d", rec.Code)
		}
	})
}
