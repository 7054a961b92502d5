package careapp_test

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
)

// app is a hand-written application of the shape the test needs.
type app struct {
	name     string
	version  fhir.Version
	patterns []careapp.Pattern
}

func (a app) Name() string                { return a.name }
func (a app) FHIRVersion() fhir.Version   { return a.version }
func (a app) Patterns() []careapp.Pattern { return a.patterns }

// pullApp adds a query set and a workflow.
type pullApp struct{ app }

func (pullApp) Queries(bsn string) []careapp.Query {
	return []careapp.Query{{Name: "Problem", Search: "Condition?patient.identifier=" + bsn}}
}
func (pullApp) Match(careapp.Request, string) (careapp.Query, error) {
	return careapp.Query{}, careapp.ErrNotInSet
}
func (pullApp) PatientBSN(url.Values) (string, bool) { return "", false }
func (pullApp) Normalize(s string) (string, error)   { return s, nil }
func (pullApp) ServerPayloadType() string            { return "urn:test:server" }
func (pullApp) WorkflowTasks() []careapp.TaskKind    { return []careapp.TaskKind{{}} }

func TestNewRegistryRefuses(t *testing.T) {
	ok := pullApp{app{"bgz", fhir.STU3, []careapp.Pattern{careapp.NotifiedPull}}}
	for _, tc := range []struct {
		name string
		apps []careapp.Application
		want string
	}{
		{"no name", []careapp.Application{app{"", fhir.STU3, []careapp.Pattern{careapp.Push}}}, "name"},
		{"upper-case name", []careapp.Application{app{"BgZ", fhir.STU3, []careapp.Pattern{careapp.Push}}}, "name"},
		{"twice", []careapp.Application{ok, ok}, "twice"},
		{"no patterns", []careapp.Application{app{"x", fhir.STU3, nil}}, "no exchange pattern"},
		{"unknown pattern", []careapp.Application{app{"x", fhir.STU3, []careapp.Pattern{"carrier-pigeon"}}}, "unknown exchange pattern"},
		{"unknown FHIR version", []careapp.Application{app{"x", "dstu2", []careapp.Pattern{careapp.Push}}}, "FHIR version"},
		{"notified pull without a workflow", []careapp.Application{app{"x", fhir.STU3, []careapp.Pattern{careapp.NotifiedPull}}}, "no workflow"},
		{"direct pull without a query set", []careapp.Application{app{"x", fhir.R4, []careapp.Pattern{careapp.DirectPull}}}, "no query set"},
	} {
		_, err := careapp.NewRegistry(tc.apps...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

func TestRegistryLookups(t *testing.T) {
	bgz := pullApp{app{"bgz", fhir.STU3, []careapp.Pattern{careapp.NotifiedPull, careapp.DirectPull}}}
	letters := app{"correspondentie", fhir.STU3, []careapp.Pattern{careapp.Push}}
	r4 := pullApp{app{"imaging", fhir.R4, []careapp.Pattern{careapp.DirectPull}}}
	reg, err := careapp.NewRegistry(bgz, letters, r4)
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Names(); !slices.Equal(got, []string{"bgz", "correspondentie", "imaging"}) {
		t.Errorf("Names %v", got)
	}
	var on []string
	for _, a := range reg.On(careapp.DirectPull) {
		on = append(on, a.Name())
	}
	if !slices.Equal(on, []string{"bgz", "imaging"}) {
		t.Errorf("On(direct-pull) %v", on)
	}
	if w, err := reg.Workflow("bgz"); err != nil || w.Name() != "bgz" {
		t.Errorf("Workflow(bgz): %v, %v", w, err)
	}
	// imaging has a query set but does not run on Notified Pull.
	if _, err := reg.Workflow("imaging"); !errors.Is(err, careapp.ErrUnknown) || !strings.Contains(err.Error(), "supported: bgz") {
		t.Errorf("Workflow(imaging): %v", err)
	}
	if _, err := reg.QuerySet("correspondentie", careapp.DirectPull); !errors.Is(err, careapp.ErrUnknown) {
		t.Errorf("QuerySet(correspondentie): %v", err)
	}
	if q, err := reg.QuerySet("imaging", careapp.DirectPull); err != nil || q.FHIRVersion() != fhir.R4 {
		t.Errorf("QuerySet(imaging): %v, %v", q, err)
	}
	var none *careapp.Registry
	if _, err := none.Workflow("bgz"); !errors.Is(err, careapp.ErrUnknown) {
		t.Errorf("nil registry: %v", err)
	}
}

// routesApp serves its exchange on routes of its own, without a query set.
type routesApp struct{ app }

func (routesApp) PublicPatterns() []string { return []string{"GET /imaging/{ura}"} }

// An application with routes of its own runs on Direct Pull and Indexed
// Pull without a query set; a query-set lookup neither finds it nor
// offers it instead.
func TestRegistryRoutesApplication(t *testing.T) {
	bgz := pullApp{app{"bgz", fhir.STU3, []careapp.Pattern{careapp.NotifiedPull, careapp.DirectPull}}}
	imaging := routesApp{app{"beeld", fhir.R4, []careapp.Pattern{careapp.DirectPull, careapp.IndexedPull}}}
	reg, err := careapp.NewRegistry(bgz, imaging)
	if err != nil {
		t.Fatal(err)
	}
	if on := reg.On(careapp.IndexedPull); len(on) != 1 || on[0].Name() != "beeld" {
		t.Errorf("On(indexed-pull) %v", on)
	}
	_, err = reg.QuerySet("beeld", careapp.DirectPull)
	if !errors.Is(err, careapp.ErrUnknown) || !strings.HasSuffix(err.Error(), "supported: bgz") {
		t.Errorf("QuerySet(beeld): %v, want unknown offering bgz only", err)
	}
}
