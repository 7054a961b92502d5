// Package eoverdracht is the care application eOverdracht — the nursing
// transfer (Nictiz eOverdracht 4.0 on FHIR STU3) — as it runs on Notified
// Pull: the workflow Task (profile eOverdracht-Task, code SNOMED 308292007
// "Overdracht van zorg") whose inputs reference the aanmeldbericht
// (admission request, Composition profile eOverdracht-AdvanceNotice) and
// the overdrachtbericht (nursing handoff, eOverdracht-NursingHandoff-*),
// which the receiver reads as document Bundles with
// Composition/{id}/$document; the receiver's accept or reject and the
// status flow requested → accepted | rejected → in-progress → completed;
// and the demo data of the Nictiz qualification fixtures.
package eoverdracht

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
)

// Name is the care application's name, its OAuth scope and its policy's name.
const Name = "eoverdracht"

// Code systems and profiles of eOverdracht 4.0.
const (
	SystemSNOMED = "http://snomed.info/sct"

	ProfileTask           = "http://nictiz.nl/fhir/StructureDefinition/eOverdracht-Task"
	ProfileAdvanceNotice  = "http://nictiz.nl/fhir/StructureDefinition/eOverdracht-AdvanceNotice"
	ProfileHandoffAdults  = "http://nictiz.nl/fhir/StructureDefinition/eOverdracht-NursingHandoff-Adults"
	ProfileHandoffChild   = "http://nictiz.nl/fhir/StructureDefinition/eOverdracht-NursingHandoff-Children"
	ProfileHandoffNewborn = "http://nictiz.nl/fhir/StructureDefinition/eOverdracht-NursingHandoff-Neonates"

	// PayloadServer is the addressbook payloadType under which a sending
	// system lists the FHIR base that serves the transfer dossier.
	PayloadServer = "http://nictiz.nl/fhir/CapabilityStatement/eOverdracht-ServerCapabilities"
)

// The codes of the workflow Task and of its inputs (eOverdracht 4.0 TA).
var (
	// TransferTask is Task.code: "Overdracht van zorg".
	TransferTask = careapp.Coding{System: SystemSNOMED, Code: "308292007", Display: "Overdracht van zorg"}
	// InputAdvanceNotice types the input referencing the aanmeldbericht.
	InputAdvanceNotice = careapp.Coding{System: SystemSNOMED, Code: "721915006", Display: "Admission request document"}
	// InputNursingHandoff types the input referencing the overdrachtbericht.
	InputNursingHandoff = careapp.Coding{System: SystemSNOMED, Code: "11171000146100", Display: "verslag van verpleegkundige overdracht"}
)

// documents maps a Composition profile to the Composition.type it must
// carry and the Task input that references it.
var documents = map[string]careapp.Coding{
	ProfileAdvanceNotice:  InputAdvanceNotice,
	ProfileHandoffAdults:  InputNursingHandoff,
	ProfileHandoffChild:   InputNursingHandoff,
	ProfileHandoffNewborn: InputNursingHandoff,
}

// App is eOverdracht as a care application (careapp.Transfer, careapp.Decision).
type App struct{}

// New returns the eOverdracht care application.
func New() App { return App{} }

func (App) Name() string              { return Name }
func (App) FHIRVersion() fhir.Version { return fhir.STU3 }

// Patterns: the transfer is a Notified Pull.
func (App) Patterns() []careapp.Pattern { return []careapp.Pattern{careapp.NotifiedPull} }

// Queries: a transfer makes no searches available, only the documents its
// workflow Task references (its read inputs).
func (App) Queries(string) []careapp.Query { return nil }

// Match refuses every search: none is part of a transfer.
func (App) Match(req careapp.Request, _ string) (careapp.Query, error) {
	return careapp.Query{}, &notInSet{req.Type}
}

type notInSet struct{ typ string }

func (e *notInSet) Error() string {
	return "eOverdracht makes no searches available (a " + e.typ + " search); read the documents the workflow Task references"
}
func (e *notInSet) Unwrap() error { return careapp.ErrNotInSet }

// PatientBSN is the patient a search names by BSN (patient.identifier or
// identifier on Patient).
func (App) PatientBSN(params url.Values) (string, bool) {
	var found []string
	for _, k := range []string{"patient.identifier", "identifier", "subject.identifier"} {
		for _, v := range params[k] {
			sys, val, ok := strings.Cut(v, "|")
			if ok && sys == nl.SystemBSN && nl.ValidateBSN(val) == nil {
				found = append(found, val)
			}
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}

// Normalize refuses every search (there is none in a transfer).
func (App) Normalize(search string) (string, error) {
	return "", &notInSet{strings.SplitN(search, "?", 2)[0]}
}

func (App) ServerPayloadType() string { return PayloadServer }

// WorkflowTasks: one kind, the eOverdracht-Task.
func (App) WorkflowTasks() []careapp.TaskKind {
	return []careapp.TaskKind{{Profile: ProfileTask, Code: TransferTask}}
}

// DocumentOperation: a Composition of the transfer is read as its document
// Bundle.
func (App) DocumentOperation(resourceType string) string {
	if resourceType == "Composition" {
		return "$document"
	}
	return ""
}

// BeforeAcceptance: the receiver decides on the aanmeldbericht.
func (App) BeforeAcceptance(input careapp.Coding) bool {
	return input.System == InputAdvanceNotice.System && input.Code == InputAdvanceNotice.Code
}

// AwaitsDecision: a receiving nurse accepts or rejects the transfer
// request on the aanmeldbericht (careapp.Decision); the node decides
// nothing beyond its own check (Decide).
func (App) AwaitsDecision() bool { return true }

// Status flow of the eOverdracht-Task as the receiving system moves it
// (eOverdracht 4.0 TA; the sender cancels or puts on hold on its own side).
var transitions = map[string][]string{
	"requested":   {"accepted", "rejected"},
	"accepted":    {"in-progress", "rejected"},
	"in-progress": {"completed", "failed"},
}

// ReceiverTransitions are the statuses a receiver may set, by current status.
func (App) ReceiverTransitions() map[string][]string {
	out := make(map[string][]string, len(transitions))
	for k, v := range transitions {
		out[k] = slices.Clone(v)
	}
	return out
}

// ReadInput types a Composition of the sender's record as the Task input
// that references it, refusing a resource that is not an eOverdracht
// Composition: another type, another profile, a type code that does not
// match the profile, or an R4 resource.
func (a App) ReadInput(resource json.RawMessage) (careapp.Coding, error) {
	_, c, err := a.Document(resource)
	return c, err
}

// composition is what the checks read of a Composition.
type composition struct {
	ResourceType string `json:"resourceType"`
	Meta         struct {
		Profile []string `json:"profile"`
	} `json:"meta"`
	Status string `json:"status"`
	Type   struct {
		Coding []struct{ System, Code string } `json:"coding"`
	} `json:"type"`
	Subject *struct {
		Reference string `json:"reference"`
	} `json:"subject"`
	Title  string `json:"title"`
	Author []json.RawMessage
	// Elements that exist only in FHIR R4's Composition.
	Category json.RawMessage `json:"category"`
	Event    []struct {
		Detail json.RawMessage `json:"detail"`
	} `json:"event"`
}

// Document checks an eOverdracht Composition: its profile and the input
// type that references it.
func (App) Document(resource json.RawMessage) (profile string, input careapp.Coding, err error) {
	refuse := func(code, format string, args ...any) (string, careapp.Coding, error) {
		return "", careapp.Coding{}, fhir.Errorf(http.StatusUnprocessableEntity, code, "eOverdracht: "+format, args...)
	}
	var c composition
	if err := json.Unmarshal(resource, &c); err != nil {
		return refuse("invalid", "not a FHIR JSON resource")
	}
	if c.ResourceType != "Composition" {
		return refuse("not-supported", "a transfer's documents are Compositions, not %s", c.ResourceType)
	}
	if len(c.Category) > 0 {
		return refuse("not-supported", "Composition.category is FHIR R4; eOverdracht 4.0 is FHIR STU3 (3.0)")
	}
	for _, p := range c.Meta.Profile {
		if in, ok := documents[p]; ok {
			profile, input = p, in
		}
	}
	if profile == "" {
		return refuse("not-supported", "Composition profile %v is not an eOverdracht 4.0 document (%s or %s)", c.Meta.Profile, ProfileAdvanceNotice, ProfileHandoffAdults)
	}
	typed := false
	for _, cd := range c.Type.Coding {
		if cd.System == input.System && cd.Code == input.Code {
			typed = true
		}
	}
	if !typed {
		return refuse("invalid", "Composition.type must be %s|%s for profile %s", input.System, input.Code, profile)
	}
	if c.Status != "final" && c.Status != "amended" && c.Status != "preliminary" {
		return refuse("invalid", "Composition.status %q: a transfer document is preliminary, final or amended", c.Status)
	}
	if c.Subject == nil || !strings.HasPrefix(c.Subject.Reference, "Patient/") {
		return refuse("required", "Composition.subject must reference the Patient")
	}
	if c.Title == "" || len(c.Author) == 0 {
		return refuse("required", "Composition.title and Composition.author are required")
	}
	return profile, input, nil
}

// Decide is the receiving node's check of the aanmeldbericht before it
// accepts the transfer: a document Bundle whose Composition is an
// eOverdracht document about the referral's patient (the subject Patient
// in the document carries that BSN). Any other answer rejects the
// transfer, with the reason.
func (a App) Decide(document json.RawMessage, patientBSN string) error {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(document, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "document" || len(b.Entry) == 0 {
		return errors.New("what the sender served is not a document Bundle")
	}
	if _, _, err := a.Document(b.Entry[0].Resource); err != nil {
		return err
	}
	var c composition
	_ = json.Unmarshal(b.Entry[0].Resource, &c)
	for _, e := range b.Entry[1:] {
		var p struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(e.Resource, &p) != nil || p.ResourceType != "Patient" || "Patient/"+p.ID != c.Subject.Reference {
			continue
		}
		bsn, _, ok := nl.Patient(e.Resource)
		if !ok || bsn != patientBSN {
			return fmt.Errorf("the aanmeldbericht is about another patient than the referral (%s)", patientBSN)
		}
		return nil
	}
	return errors.New("the aanmeldbericht does not hold its subject Patient")
}
