// Package careapp is the shape of a care application (zorgtoepassing): what
// the node, the exchange patterns and the validation kit need to know of
// one, behind small interfaces, and the Registry the composition root fills
// (node.New through node.Options.Applications, network.Up with the same).
//
// Every application implements Application. What else it implements says
// which capabilities it has:
//
//   - QuerySet: a pull application (Notified Pull, Direct Pull, Indexed
//     Pull): the searches and reads that make up a retrieval, matching a
//     request against them, and the patient a request names;
//   - Workflow: a Notified Pull application: the kinds of workflow Task it
//     refers with;
//   - a Push application implements push.Application (declared where it is
//     used, in package push): its message shape, validation and consent rule;
//   - Routes: extra public routes beside FHIR (e.g. DICOMweb for imaging);
//   - DemoMessages: demo data of a Push application (the demo network's
//     message).
//
// The patterns (notifiedpull, consult, push) and the node ask the Registry
// and the application; none of them switches on an application's name.
package careapp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir"
)

// Pattern is an exchange pattern of the Twiin technical agreements (SPEC §4).
type Pattern string

// The exchange patterns, by the names the demo's --pattern flag uses.
const (
	NotifiedPull Pattern = "notified-pull" // TA Notified Pull: the sender notifies, the receiver pulls
	DirectPull   Pattern = "direct-pull"   // targeted query at one holder
	IndexedPull  Pattern = "indexed-pull"  // localization first, then a direct pull at every holder
	Push         Pattern = "push"          // targeted send
)

// Application is what every care application is.
type Application interface {
	// Name is its name on the internal API, in partner agreements and in
	// the validation kit, its OAuth scope and its policy's name
	// (policy/<name>.yaml), e.g. "bgz".
	Name() string
	// FHIRVersion is the FHIR version its resources are in.
	FHIRVersion() fhir.Version
	// Patterns are the exchange patterns it runs on; the first is its own,
	// the default.
	Patterns() []Pattern
}

// Coding is a FHIR Coding reduced to what identifies a concept.
type Coding struct {
	System  string
	Code    string
	Display string
}

// Query is one item of a retrieval: a search or a read of one resource,
// typed with a code (the workflow Task input's type in a Notified Pull).
// Exactly one of Search and Read is set.
type Query struct {
	// Name is the data block it retrieves, e.g. "Problem".
	Name string
	Code Coding
	// Search is relative to the FHIR base, e.g. "Condition?patient.identifier=…",
	// escaped as a URL query.
	Search string
	// Read is the relative reference of a single resource, "Type/id".
	Read string
}

// Request is a data request as a pattern's data endpoint received it.
type Request struct {
	Type      string     // resource type
	Operation string     // "" or a type-level operation such as "$lastn"
	Params    url.Values // as received; the query set ignores its own paging parameters
}

// ErrNotInSet is returned by QuerySet.Match for a request that is none
// of the application's queries.
var ErrNotInSet = errors.New("not one of the care application's queries")

// QuerySet is a pull application's retrieval.
type QuerySet interface {
	Application
	// Queries are the searches (and reads) of a retrieval for the patient
	// with this BSN, in the order they are run and reported.
	Queries(bsn string) []Query
	// Match returns the query for patient bsn that req is, in any spelling
	// the application treats as equal; an error wrapping ErrNotInSet when
	// it is none.
	Match(req Request, bsn string) (Query, error)
	// PatientBSN is the one patient a request's parameters name by BSN;
	// false when they name none, several, or an invalid BSN.
	PatientBSN(params url.Values) (string, bool)
	// Normalize is the canonical form of a search (relative URL), so that
	// a request can be compared with the queries a referral allows.
	Normalize(search string) (string, error)
	// ServerPayloadType is the addressbook Endpoint payloadType under which
	// a data holder lists the FHIR base that serves these queries.
	ServerPayloadType() string
}

// TaskKind is a kind of workflow Task a Notified Pull application refers
// with: its profile (empty when the agreement names none) and its code.
type TaskKind struct {
	Profile string
	Code    Coding
}

// Workflow is a Notified Pull application.
type Workflow interface {
	QuerySet
	// WorkflowTasks are the kinds of workflow Task it refers with; the
	// first is the one a referral gets when the request names none.
	WorkflowTasks() []TaskKind
}

// Route is a public route of an application beside its FHIR endpoints:
// Pattern is a net/http ServeMux pattern relative to /care/{application}/{ura}
// (e.g. "GET /studies/{study}"); Handler serves it once the node has checked
// the peer's certificate and access token (scope = the application's name)
// and put the participant's URA in the request's "ura" path value.
type Route struct {
	Pattern string
	Handler http.Handler
}

// Routes is an application with public routes beside FHIR (e.g. DICOMweb).
type Routes interface {
	Application
	PublicRoutes() []Route
}

// DemoPatient is a patient of the demo network's data, as a demo message
// names them.
type DemoPatient struct {
	BSN, Name string
	BirthDate string // FHIR date
}

// DemoParty is an organisation of the demo network.
type DemoParty struct{ URA, Name string }

// DemoMessages is a Push application with demo data: the message the demo
// network's sender sends (`schakel network up --care <name>`).
type DemoMessages interface {
	Application
	// DemoMessage is a message from sender about patient, as its payload
	// (what push.Application.Validate accepts) and a one-line title for
	// the demo's progress lines.
	DemoMessage(patient DemoPatient, sender DemoParty, at time.Time) (payload []byte, title string, err error)
}

// Registry holds the care applications a node (or the demo network) runs.
// The composition root fills it; nothing registers itself.
type Registry struct {
	apps []Application
}

// NewRegistry registers apps, refusing an unnamed application, one without
// patterns or with an unknown one, one that does not implement what its
// patterns need, and a name registered twice.
func NewRegistry(apps ...Application) (*Registry, error) {
	r := &Registry{}
	for _, a := range apps {
		if err := r.add(a); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *Registry) add(a Application) error {
	name := a.Name()
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return fmt.Errorf("careapp: application name %q must be lower-case letters, digits and '-'", name)
	}
	if _, ok := r.Get(name); ok {
		return fmt.Errorf("careapp: application %s registered twice", name)
	}
	if a.FHIRVersion() != fhir.STU3 && a.FHIRVersion() != fhir.R4 {
		return fmt.Errorf("careapp: application %s: FHIR version %q is not stu3 or r4", name, a.FHIRVersion())
	}
	ps := a.Patterns()
	if len(ps) == 0 {
		return fmt.Errorf("careapp: application %s runs on no exchange pattern", name)
	}
	for _, p := range ps {
		switch p {
		case NotifiedPull:
			if _, ok := a.(Workflow); !ok {
				return fmt.Errorf("careapp: application %s runs on %s but has no workflow (careapp.Workflow)", name, p)
			}
		case DirectPull, IndexedPull:
			if _, ok := a.(QuerySet); !ok {
				return fmt.Errorf("careapp: application %s runs on %s but has no query set (careapp.QuerySet)", name, p)
			}
		case Push:
			// The message shape is push.Application; the node checks it
			// where it builds the Push service.
		default:
			return fmt.Errorf("careapp: application %s: unknown exchange pattern %q", name, p)
		}
	}
	r.apps = append(r.apps, a)
	return nil
}

// All returns the registered applications in registration order.
func (r *Registry) All() []Application {
	if r == nil {
		return nil
	}
	return slices.Clone(r.apps)
}

// Names lists the registered applications' names, in registration order.
func (r *Registry) Names() []string {
	var out []string
	for _, a := range r.All() {
		out = append(out, a.Name())
	}
	return out
}

// Get returns the application with this name.
func (r *Registry) Get(name string) (Application, bool) {
	if r == nil {
		return nil, false
	}
	for _, a := range r.apps { // not All: a data request asks this, and a copy would cost it an allocation
		if a.Name() == name {
			return a, true
		}
	}
	return nil, false
}

// On returns the applications that run on pattern p, in registration order.
func (r *Registry) On(p Pattern) []Application {
	var out []Application
	for _, a := range r.All() {
		if slices.Contains(a.Patterns(), p) {
			out = append(out, a)
		}
	}
	return out
}

// ErrUnknown is returned for an application name no registered
// application has, or one that does not run on the pattern asked for.
var ErrUnknown = errors.New("care application not supported")

// Workflow returns the Notified Pull application with this name.
func (r *Registry) Workflow(name string) (Workflow, error) {
	a, ok := r.Get(name)
	if w, isW := a.(Workflow); ok && isW && slices.Contains(a.Patterns(), NotifiedPull) {
		return w, nil
	}
	return nil, r.unknown(name, NotifiedPull)
}

// QuerySet returns the application with this name that runs on pattern p
// with a query set (DirectPull, IndexedPull or NotifiedPull).
func (r *Registry) QuerySet(name string, p Pattern) (QuerySet, error) {
	a, ok := r.Get(name)
	if q, isQ := a.(QuerySet); ok && isQ && slices.Contains(a.Patterns(), p) {
		return q, nil
	}
	return nil, r.unknown(name, p)
}

func (r *Registry) unknown(name string, p Pattern) error {
	var names []string
	for _, a := range r.On(p) {
		names = append(names, a.Name())
	}
	if len(names) == 0 {
		return unknownError(fmt.Sprintf("care application %q is not supported: no care application runs on %s here", name, p))
	}
	return unknownError(fmt.Sprintf("care application %q is not supported on %s; supported: %s", name, p, strings.Join(names, ", ")))
}

// unknownError is ErrUnknown with the names a client can use instead.
type unknownError string

func (e unknownError) Error() string        { return string(e) }
func (e unknownError) Is(target error) bool { return target == ErrUnknown }
