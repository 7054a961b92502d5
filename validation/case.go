// Package validation is the conformance kit: it plays the counterpart of a
// GtK under test over the real wire (mTLS, OAuth2, FHIR), runs the cases of
// one role and care application, reports each verdict with the requirement
// it checks, and issues a signed proof of validation when every mandatory
// case passes (SPEC §7; seed 004 "Toetreden en Valideren").
//
// The engine knows no care application: applications register their
// cases and their counterpart record (Registry.AddApplication); generic
// cases (TLS, OAuth, plateau, audit) register with no application.
package validation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/fhir"
)

// Role is the role of the node under test in an exchange pattern. The kit
// plays the opposite one: the receiver for a sender, the requester for a
// holder, and so on.
type Role string

// Roles of a node under test (SPEC §4).
const (
	RoleSender    Role = "sender"    // Notified Pull: notifies, serves the pull
	RoleReceiver  Role = "receiver"  // Notified Pull: is notified, pulls
	RoleHolder    Role = "holder"    // Direct Pull: answers a requester's queries
	RoleRequester Role = "requester" // Direct Pull: queries a holder
	// Push (Verzenden/Ontvangen): the sender delivers a message to the
	// receiver's $process-message; the receiver stores it, answers with a
	// signed delivery receipt and later acknowledges it.
	RolePushSender   Role = "push-sender"
	RolePushReceiver Role = "push-receiver"
)

// Roles lists every role, in report order.
var Roles = []Role{RoleSender, RoleReceiver, RoleHolder, RoleRequester, RolePushSender, RolePushReceiver}

// ParseRole accepts a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return "", fmt.Errorf("unknown role %q: one of %s", s, strings.Join(names, ", "))
}

// Counterpart is the role the kit plays against a node in role r.
func (r Role) Counterpart() Role {
	switch r {
	case RoleSender:
		return RoleReceiver
	case RoleReceiver:
		return RoleSender
	case RoleHolder:
		return RoleRequester
	case RoleRequester:
		return RoleHolder
	case RolePushSender:
		return RolePushReceiver
	case RolePushReceiver:
		return RolePushSender
	}
	return ""
}

// Case is one conformance check.
type Case struct {
	// ID is stable across versions (reports and proofs cite it), e.g.
	// "bgz.sender.notification-shape".
	ID    string
	Title string
	// Roles the case applies to; empty means every role (a generic function).
	Roles []Role
	// Application is the care application ("bgz"); empty for a generic case.
	Application string
	// MinPlateau and MaxPlateau bound the plateaus the case applies at;
	// zero means unbounded.
	MinPlateau, MaxPlateau int
	// Mandatory cases must pass for a proof of validation.
	Mandatory bool
	// Negative cases send what a conformant node must refuse.
	Negative bool
	// Final cases run after every other case of the run (e.g. to read the
	// audit trail the others left).
	Final bool
	// Requirement states what is checked; Source where it is required
	// (TA section, RFC, seed document).
	Requirement string
	Source      string
	// Run performs the case against the node and returns its verdict.
	Run func(ctx context.Context, p *Probe) Verdict
}

// applies reports whether the case belongs to a run of role, application
// and plateau.
func (c Case) applies(role Role, app string, plateau int) bool {
	if c.Application != "" && c.Application != app {
		return false
	}
	if len(c.Roles) > 0 && !slices.Contains(c.Roles, role) {
		return false
	}
	if c.MinPlateau > 0 && plateau < c.MinPlateau {
		return false
	}
	if c.MaxPlateau > 0 && plateau > c.MaxPlateau {
		return false
	}
	return true
}

// Status is a verdict's outcome.
type Status string

const (
	Passed  Status = "passed"
	Failed  Status = "failed"
	Skipped Status = "skipped" // could not be run here (e.g. needs a driver); never a pass
	Errored Status = "error"   // the kit itself could not complete the case
)

// Verdict is the outcome of one case with the evidence.
type Verdict struct {
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Exchanges are the requests and answers the case made or observed.
	Exchanges []Exchange `json:"exchanges,omitempty"`
}

// Pass, Fail, Skip and Error build verdicts.
func Pass(format string, args ...any) Verdict {
	return Verdict{Status: Passed, Detail: fmt.Sprintf(format, args...)}
}

func Fail(format string, args ...any) Verdict {
	return Verdict{Status: Failed, Detail: fmt.Sprintf(format, args...)}
}

func Skip(format string, args ...any) Verdict {
	return Verdict{Status: Skipped, Detail: fmt.Sprintf(format, args...)}
}

func Error(format string, args ...any) Verdict {
	return Verdict{Status: Errored, Detail: fmt.Sprintf(format, args...)}
}

// Problems collects failed expectations of one case: a verdict fails with
// all of them listed, not only the first.
type Problems []string

func (ps *Problems) Add(format string, args ...any) { *ps = append(*ps, fmt.Sprintf(format, args...)) }

// Check adds the problem when ok is false.
func (ps *Problems) Check(ok bool, format string, args ...any) {
	if !ok {
		ps.Add(format, args...)
	}
}

// Verdict passes with detail when nothing was found, and fails otherwise.
func (ps Problems) Verdict(detail string) Verdict {
	if len(ps) == 0 {
		return Pass("%s", detail)
	}
	return Fail("%s", strings.Join(ps, "; "))
}

// Application is a care application as the kit needs it: its name (which
// is also its OAuth scope), the FHIR version and addressbook payload type
// of its data endpoint, and the record the kit holds when it plays the
// sender or the holder.
type Application struct {
	Name  string
	Title string
	// FHIRVersion is the version of the application's data; zero is STU3.
	// The Notified Pull Tasks stay STU3 whatever it is (the technical
	// agreement's Task endpoint); an application of another version has
	// its data on a FHIR base of its own (/fhir/r4/{ura}).
	FHIRVersion fhir.Version
	// ServerPayloadType is the addressbook payloadType of the
	// application's data endpoint; empty is the BgZ (2017) server.
	ServerPayloadType string
	// Record returns the transaction Bundles (of FHIRVersion) the kit's
	// counterpart serves, and the BSN of the patient they are about.
	Record func() (bsn string, bundles [][]byte, err error)
	// Endpoints are the application's own endpoints the kit looks up in
	// the target's addressbook entry, beside the generic ones (found in
	// Target.Endpoints by payload type, or listed in Target.Missing).
	Endpoints []Endpoint
	// Serve, when set, adds the application's own holder endpoints to the
	// kit's counterpart (beyond its FHIR bases), for a run in which the
	// kit plays the holder of the application: e.g. Beeldbeschikbaarheid's
	// ImagingStudy search and DICOMweb. It is called once per run.
	Serve func(cp *Counterpart) (Service, error)
	// KitEndpoints are the endpoints Serve answers on, as the kit's
	// addressbook entry lists them: url is the counterpart's https base,
	// ura the kit's URA.
	KitEndpoints func(url, ura string) []addressbook.EndpointSpec
}

// Endpoint is an endpoint type of an addressbook entry: its payload type
// and, for a FHIR endpoint, the FHIR version it must declare.
type Endpoint struct {
	PayloadType string
	FHIRVersion string
}

// Version is the application's FHIR version (STU3 when not set).
func (a Application) Version() fhir.Version {
	if a.FHIRVersion == "" {
		return fhir.STU3
	}
	return a.FHIRVersion
}

// PayloadType is the addressbook payloadType of the application's data
// endpoint.
func (a Application) PayloadType() string {
	if a.ServerPayloadType == "" {
		return addressbook.PayloadBgZServer
	}
	return a.ServerPayloadType
}

// Registry holds the cases the kit can run. The composition root fills it;
// nothing registers itself.
type Registry struct {
	cases []Case
	ids   map[string]bool
	apps  map[string]Application
}

func NewRegistry() *Registry {
	return &Registry{ids: map[string]bool{}, apps: map[string]Application{}}
}

// Add registers cases (generic ones: no Application).
func (r *Registry) Add(cases ...Case) error {
	for _, c := range cases {
		switch {
		case c.ID == "" || c.Run == nil:
			return fmt.Errorf("validation: case %q needs an id and a Run", c.ID)
		case r.ids[c.ID]:
			return fmt.Errorf("validation: case %s registered twice", c.ID)
		case c.Requirement == "" || c.Source == "":
			return fmt.Errorf("validation: case %s must state its requirement and its source", c.ID)
		case c.Application != "" && r.apps[c.Application].Name == "":
			return fmt.Errorf("validation: case %s is for care application %q, which is not registered", c.ID, c.Application)
		}
		r.ids[c.ID] = true
		r.cases = append(r.cases, c)
	}
	return nil
}

// AddApplication registers a care application and its cases.
func (r *Registry) AddApplication(app Application, cases ...Case) error {
	if app.Name == "" || app.Record == nil {
		return fmt.Errorf("validation: application %q needs a name and a record", app.Name)
	}
	if _, ok := r.apps[app.Name]; ok {
		return fmt.Errorf("validation: application %s registered twice", app.Name)
	}
	r.apps[app.Name] = app
	for i := range cases {
		if cases[i].Application == "" {
			cases[i].Application = app.Name
		}
	}
	return r.Add(cases...)
}

// Application returns the registered care application name.
func (r *Registry) Application(name string) (Application, bool) {
	a, ok := r.apps[name]
	return a, ok
}

// Applications lists the registered care applications' names.
func (r *Registry) Applications() []string {
	var out []string
	for n := range r.apps {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Select returns the cases of a run, in registration order.
func (r *Registry) Select(role Role, app string, plateau int) []Case {
	var out, final []Case
	for _, c := range r.cases {
		switch {
		case !c.applies(role, app, plateau):
		case c.Final:
			final = append(final, c)
		default:
			out = append(out, c)
		}
	}
	return append(out, final...)
}

// Roles lists the roles of the node under test that app has cases of
// (its own, not the generic ones), in report order: the roles a node
// running app can be validated in for it.
func (r *Registry) Roles(app string) []Role {
	var out []Role
	for _, role := range Roles {
		for _, c := range r.cases {
			if c.Application == app && (len(c.Roles) == 0 || slices.Contains(c.Roles, role)) {
				out = append(out, role)
				break
			}
		}
	}
	return out
}

// Runnable reports why a run of role, app and plateau would validate
// nothing of the application: it is not registered, or none of its cases
// applies (the generic cases alone prove nothing about it). Nil when the
// run has cases of the application.
func (r *Registry) Runnable(role Role, app string, plateau int) error {
	if _, ok := r.apps[app]; !ok {
		return fmt.Errorf("validation: no cases for care application %q (known: %v)", app, r.Applications())
	}
	if !slices.ContainsFunc(r.Select(role, app, plateau), func(c Case) bool { return c.Application == app }) {
		return fmt.Errorf("validation: the kit has no %s cases for the role %s at plateau %d (its roles: %v)", app, role, plateau, r.Roles(app))
	}
	return nil
}

// Cases returns every registered case.
func (r *Registry) Cases() []Case { return slices.Clone(r.cases) }
