package bgz

import (
	"net/url"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
)

// Name is the care application's name, its OAuth scope and its policy's name.
const Name = "bgz"

// PayloadServer is the addressbook payloadType of a BgZ server's FHIR base
// (SPEC §9).
const PayloadServer = "http://nictiz.nl/fhir/CapabilityStatement/bgz2017-servercapabilities"

// ReferralTask is the workflow Task a BgZ referral carries: SNOMED
// 3457005 "Patient referral", with no profile of its own.
var ReferralTask = careapp.TaskKind{Code: careapp.Coding{System: SystemSNOMED, Code: "3457005", Display: "Patient referral"}}

// App is BgZ as a care application (careapp.Workflow): the query set of
// SPEC §5 on Notified Pull, Direct Pull and Indexed Pull.
type App struct{}

// New returns the BgZ care application.
func New() App { return App{} }

func (App) Name() string              { return Name }
func (App) FHIRVersion() fhir.Version { return fhir.STU3 }

// Patterns: a referral (Notified Pull) first, then the consult (Direct
// Pull) and the consult of every holder the referral index names.
func (App) Patterns() []careapp.Pattern {
	return []careapp.Pattern{careapp.NotifiedPull, careapp.DirectPull, careapp.IndexedPull}
}

// Queries are the 26 searches of a BgZ retrieval for the patient.
func (App) Queries(bsn string) []careapp.Query {
	out := make([]careapp.Query, 0, len(blocks))
	for _, b := range blocks {
		out = append(out, b.query(bsn))
	}
	return out
}

func (b Block) query(bsn string) careapp.Query {
	return careapp.Query{Name: b.Name, Code: careapp.Coding(b.Code), Search: b.Query(bsn)}
}

// Match is the package's Match on a received request (paging parameters
// left out), as a careapp.Query.
func (App) Match(req careapp.Request, bsn string) (careapp.Query, error) {
	b, err := Match(SearchOf(req.Type, req.Operation, req.Params), bsn)
	if err != nil {
		return careapp.Query{}, &notInSet{err}
	}
	return b.query(bsn), nil
}

// notInSet is a refusal of Match: both ErrNotAllowed (or ErrInvalidQuery)
// and careapp.ErrNotInSet.
type notInSet struct{ err error }

func (e *notInSet) Error() string   { return e.err.Error() }
func (e *notInSet) Unwrap() []error { return []error{e.err, careapp.ErrNotInSet} }

func (App) PatientBSN(params url.Values) (string, bool) { return PatientBSN(params) }
func (App) Normalize(search string) (string, error)     { return Normalize(search) }
func (App) ServerPayloadType() string                   { return PayloadServer }

// WorkflowTasks: a BgZ referral is one kind of Task.
func (App) WorkflowTasks() []careapp.TaskKind { return []careapp.TaskKind{ReferralTask} }
