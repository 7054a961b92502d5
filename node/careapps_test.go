package node

import (
	"net/url"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/policy"
)

// imaging is a Direct Pull application of another FHIR version with
// public routes, for the checks below.
type imaging struct {
	name   string
	routes bool
}

func (a imaging) Name() string                 { return a.name }
func (imaging) FHIRVersion() fhir.Version      { return fhir.R4 }
func (imaging) Patterns() []careapp.Pattern    { return []careapp.Pattern{careapp.DirectPull} }
func (imaging) Queries(string) []careapp.Query { return nil }
func (imaging) Match(careapp.Request, string) (careapp.Query, error) {
	return careapp.Query{}, careapp.ErrNotInSet
}
func (imaging) PatientBSN(url.Values) (string, bool) { return "", false }
func (imaging) Normalize(s string) (string, error)   { return s, nil }
func (imaging) ServerPayloadType() string            { return "urn:test:imaging" }

type withRoutes struct{ imaging }

func (withRoutes) PublicPatterns() []string { return []string{"GET /imaging/{ura}"} }

// The node refuses to start with a care application it cannot serve: one
// without an access policy, one whose policy is for another FHIR version,
// one with public routes of its own it cannot mount; the shipped ones start.
func TestCheckApplications(t *testing.T) {
	policies, err := policy.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkApplications(DefaultApplications(), policies); err != nil {
		t.Errorf("the shipped applications: %v", err)
	}
	// bgz's policy is STU3; an R4 application of that name does not fit it.
	bgzR4 := imaging{name: bgz.Name}
	for _, tc := range []struct {
		name string
		app  careapp.Application
		want string
	}{
		{"no policy", imaging{name: "imaging"}, "no access policy (imaging.yaml)"},
		{"another FHIR version", bgzR4, "is FHIR r4, its policy embedded:bgz.yaml is for stu3"},
		{"routes that cannot be mounted", withRoutes{imaging{name: "beeld"}}, "cannot be mounted"},
	} {
		reg, err := careapp.NewRegistry(tc.app)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkApplications(reg, policies); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// twin is Beeldbeschikbaarheid under another name: its public routes are
// beeld's.
type twin struct{ beeld.App }

func (twin) Name() string { return "beeld-twin" }

// Two applications claiming the same public route do not start; the
// shipped ones mount beeld's routes, endpoints and grants.
func TestCheckApplicationsRoutes(t *testing.T) {
	policies, err := policy.Load("")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := careapp.NewRegistry(beeld.New(), twin{})
	if err != nil {
		t.Fatal(err)
	}
	err = checkApplications(reg, policies)
	if err == nil || !strings.Contains(err.Error(), "beeld and beeld-twin both claim the public route") {
		t.Errorf("checkApplications: %v, want a refusal of the route claimed twice", err)
	}
	if _, ok := DefaultApplications().Get(beeld.Application); !ok {
		t.Error("the shipped applications lack beeld")
	}
}

// Each pull application's data server is listed under its own payload
// type, at the participant's base of the application's FHIR version.
func TestDataEndpoints(t *testing.T) {
	reg, err := careapp.NewRegistry(bgz.New(), imaging{name: "imaging"})
	if err != nil {
		t.Fatal(err)
	}
	eps := DataEndpoints(reg, "https://node.example/", "90000001")
	if len(eps) != 2 || eps[0].ID != "ep-90000001-bgz" || eps[0].PayloadType != bgz.PayloadServer ||
		eps[0].Address != "https://node.example/fhir/stu3/90000001" || eps[0].FHIRVersion != "3.0" {
		t.Errorf("endpoints %+v", eps)
	}
	if len(eps) == 2 && (eps[1].ID != "ep-90000001-imaging" || eps[1].PayloadType != "urn:test:imaging" ||
		eps[1].Address != "https://node.example/fhir/r4/90000001" || eps[1].FHIRVersion != "4.0") {
		t.Errorf("R4 endpoint %+v", eps[1])
	}
}

// pushOnly runs on Push without a message shape.
type pushOnly struct{}

func (pushOnly) Name() string                { return "kraamzorg" }
func (pushOnly) FHIRVersion() fhir.Version   { return fhir.STU3 }
func (pushOnly) Patterns() []careapp.Pattern { return []careapp.Pattern{careapp.Push} }

// The Push service gets the registered applications on Push; one without
// a message shape (push.Application) is refused.
func TestPushApplications(t *testing.T) {
	got, err := pushApplications(DefaultApplications())
	if err != nil || len(got) != 2 || got[0].Name() != "correspondentie" || got[1].Name() != "geboortezorg" {
		t.Errorf("shipped: %v, %v", got, err)
	}
	reg, err := careapp.NewRegistry(pushOnly{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pushApplications(reg); err == nil || !strings.Contains(err.Error(), "kraamzorg runs on push but has no message shape") {
		t.Errorf("an application without a message shape: %v", err)
	}
}
