package bgzr4

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/policy"
)

const testBSN = "999911120"

// Every R4 search names one resource type R4 knows, the patient by BSN,
// and parses back into itself.
func TestQueriesAreR4Searches(t *testing.T) {
	schema := spec.For(fhir.R4)
	app := New()
	qs := app.Queries(testBSN)
	if len(qs) != 26 {
		t.Fatalf("%d queries, want 26", len(qs))
	}
	seen := map[string]bool{}
	for _, q := range qs {
		if seen[q.Name] {
			t.Errorf("block %s twice", q.Name)
		}
		seen[q.Name] = true
		typ, op, params, err := bgz.ParseQuery(q.Search)
		if err != nil {
			t.Fatalf("%s: %v", q.Name, err)
		}
		if !schema.IsResourceType(typ) {
			t.Errorf("%s: %s is not an R4 resource type", q.Name, typ)
		}
		if bsn, ok := app.PatientBSN(params); !ok || bsn != testBSN {
			t.Errorf("%s: patient %q %v", q.Name, bsn, ok)
		}
		got, err := app.Match(careapp.Request{Type: typ, Operation: op, Params: params}, testBSN)
		if err != nil || got.Name != q.Name {
			t.Errorf("%s: Match = %v, %v", q.Name, got.Name, err)
		}
	}
	if !seen["PlannedCareActivity"] || !strings.HasPrefix(mustFind(t, qs, "PlannedCareActivity").Search, "ServiceRequest?") {
		t.Errorf("PlannedCareActivity is not a ServiceRequest search")
	}
}

func mustFind(t *testing.T, qs []careapp.Query, name string) careapp.Query {
	t.Helper()
	for _, q := range qs {
		if q.Name == name {
			return q
		}
	}
	t.Fatalf("no block %s", name)
	return careapp.Query{}
}

// A request in another spelling (OID system, other order, paging,
// _revinclude of Provenance) is the same query; the STU3 form of a search
// R4 renamed, another patient, or another search is none.
func TestMatch(t *testing.T) {
	app := New()
	same := url.Values{"patient.identifier": {"urn:oid:2.16.840.1.113883.2.4.6.3|" + testBSN}, "status": {"active"},
		"_count": {"10"}, "_revinclude": {"Provenance:target"}}
	if q, err := app.Match(careapp.Request{Type: "ServiceRequest", Params: same}, testBSN); err != nil || q.Name != "PlannedCareActivity" {
		t.Errorf("ServiceRequest in OID form: %v %v", q, err)
	}
	for name, req := range map[string]careapp.Request{
		"STU3 ProcedureRequest": {Type: "ProcedureRequest", Params: url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|" + testBSN}, "status": {"active"}}},
		"other patient":         {Type: "Condition", Params: url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|999911132"}}},
		"unfiltered":            {Type: "Observation", Params: url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|" + testBSN}}},
	} {
		_, err := app.Match(req, testBSN)
		if !errors.Is(err, careapp.ErrNotInSet) || !errors.Is(err, bgz.ErrNotAllowed) {
			t.Errorf("%s: %v, want ErrNotInSet and ErrNotAllowed", name, err)
		}
	}
}

// The application registers beside BgZ on STU3, as a Notified Pull
// application of its own version.
func TestRegistersBesideSTU3(t *testing.T) {
	r, err := careapp.NewRegistry(bgz.New(), New())
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.Workflow(Name)
	if err != nil || w.FHIRVersion() != fhir.R4 || w.WorkflowTasks()[0].Code.Code != "3457005" {
		t.Fatalf("workflow %v: %v", w, err)
	}
	if _, err := r.QuerySet(Name, careapp.DirectPull); err != nil {
		t.Error(err)
	}
	if _, err := r.QuerySet(Name, careapp.IndexedPull); !errors.Is(err, careapp.ErrUnknown) {
		t.Errorf("indexed pull: %v", err)
	}
}

// The embedded policy is for R4 and has a rule for every search, with
// Provenance for _revinclude, and the workflow Task.
func TestPolicyCoversEveryQuery(t *testing.T) {
	set, err := policy.Load("")
	if err != nil {
		t.Fatal(err)
	}
	p := set[Name]
	if p == nil || p.FHIRVersion != fhir.R4 || p.File != "embedded:bgz-r4.yaml" {
		t.Fatalf("bgz-r4 policy: %+v", p)
	}
	for _, q := range New().Queries(testBSN) {
		typ, op, params, err := bgz.ParseQuery(q.Search + "&" + bgz.ProvenanceRevinclude)
		if err != nil {
			t.Fatal(err)
		}
		in := rest.InteractionSearchType
		if op != "" {
			in = rest.InteractionOperation
		}
		r := p.Match(typ, in, op, params)
		if r == nil {
			t.Errorf("%s: no rule", q.Name)
			continue
		}
		if !r.Returns("Provenance") {
			t.Errorf("%s: rule %s does not return Provenance", q.Name, r.ID)
		}
	}
	if r := p.Match("Task", rest.InteractionUpdate, "", nil); r == nil || r.ID != "workflow-task" {
		t.Errorf("workflow Task update: %v", r)
	}
}
