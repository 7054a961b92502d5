// Package bgzr4 is the BgZ (Basisgegevensset Zorg, patient summary) care
// application on FHIR R4 with the zib2020 information models ("bgz-r4"):
// the set of R4 searches that make up a retrieval, the profiles its
// resources claim, and its workflow Task codes. It sits beside the STU3
// BgZ of package bgz (zib2017, BgZ MSZ 2.0); a partner agreement names
// which of the two a pair of partners exchanges (partners.agreements,
// application "bgz" or "bgz-r4").
//
// The query set follows the STU3 set block by block, in R4 shape: the
// patient by BSN through patient.identifier (identifier on Patient,
// beneficiary.identifier on Coverage), the same block codes, and the one
// resource R4 renamed, ProcedureRequest, as ServiceRequest for
// PlannedCareActivity. Where the published Nictiz R4 material is silent on
// a search (see docs/care-applications.md, "BgZ on R4"), the STU3 search is
// kept, so that a retrieval asks the same of a holder in either version;
// the laboratory panel includes its members through has-member (R4 has
// no related-target).
package bgzr4

import (
	"net/url"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
)

// Name is the care application's name, its OAuth scope and its policy's
// name (policy/bgz-r4.yaml).
const Name = "bgz-r4"

// PayloadServer is the addressbook payloadType of a BgZ R4 server's FHIR
// base: the Nictiz BgZ server CapabilityStatement of the zib2020 BgZ.
const PayloadServer = "http://nictiz.nl/fhir/CapabilityStatement/bgz2020-servercapabilities"

// ReferralTask is the workflow Task a BgZ R4 referral carries: SNOMED
// 3457005 "Patient referral", as in STU3. The Task itself stays on the
// Notified Pull Task endpoint of the technical agreement (FHIR STU3); only
// the data it points at is R4.
var ReferralTask = careapp.TaskKind{Code: careapp.Coding{System: bgz.SystemSNOMED, Code: "3457005", Display: "Patient referral"}}

// patientBSN is the patient chained by BSN.
const patientBSN = "patient.identifier=" + nl.SystemBSN + "|" + bgz.BSNPlaceholder

// Profile is the canonical URL of a nictiz-r4-zib2020 nl-core profile.
func Profile(name string) string { return "http://nictiz.nl/fhir/StructureDefinition/nl-core-" + name }

// blocks are the R4 searches, in the order of the STU3 set, each typed
// with its block's code.
var blocks = []bgz.Block{
	{Name: "Patient", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "79191-3", Display: "Patient demographics panel"},
		Template: "Patient?identifier=" + nl.SystemBSN + "|" + bgz.BSNPlaceholder + "&_include=Patient:general-practitioner"},
	{Name: "Payer", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "48768-6", Display: "Payment sources Document"},
		Template: "Coverage?beneficiary.identifier=" + nl.SystemBSN + "|" + bgz.BSNPlaceholder + "&_include=Coverage:payor"},
	{Name: "TreatmentDirective", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "11291000146105", Display: "Treatment instructions"},
		Template: "Consent?" + patientBSN + "&category=" + bgz.SystemSNOMED + "|11291000146105"},
	{Name: "AdvanceDirective", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "11341000146107", Display: "Living will and advance directive record"},
		Template: "Consent?" + patientBSN + "&category=" + bgz.SystemSNOMED + "|11341000146107"},
	{Name: "FunctionalOrMentalStatus", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "47420-5", Display: "Functional status assessment note"},
		Template: "Observation?" + patientBSN + "&category=" + bgz.SystemSNOMED + "|118228005," + bgz.SystemSNOMED + "|384821006"},
	{Name: "Problem", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "11450-4", Display: "Problem list - Reported"},
		Template: "Condition?" + patientBSN},
	{Name: "LivingSituation", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "365508006", Display: "Residence and accommodation circumstances - finding"},
		Template: "Observation?" + patientBSN + "&code=" + bgz.SystemSNOMED + "|365508006"},
	{Name: "DrugUse", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "228366006", Display: "Finding relating to drug misuse behavior"},
		Template: "Observation?" + patientBSN + "&code=" + bgz.SystemSNOMED + "|228366006"},
	{Name: "AlcoholUse", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "228273003", Display: "Finding relating to alcohol drinking behavior"},
		Template: "Observation?" + patientBSN + "&code=" + bgz.SystemSNOMED + "|228273003"},
	{Name: "TobaccoUse", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "365980008", Display: "Tobacco use and exposure - finding"},
		Template: "Observation?" + patientBSN + "&code=" + bgz.SystemSNOMED + "|365980008"},
	{Name: "NutritionAdvice", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "11816003", Display: "Diet education"},
		Template: "NutritionOrder?" + patientBSN},
	{Name: "Alert", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "75310-3", Display: "Health concerns Document"},
		Template: "Flag?" + patientBSN},
	{Name: "AllergyIntolerance", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "48765-2", Display: "Allergies and adverse reactions Document"},
		Template: "AllergyIntolerance?" + patientBSN},
	{Name: "MedicationUse", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "422979000", Display: "Known medication use"},
		Template: "MedicationStatement?" + patientBSN + "&category=" + bgz.SystemMedicationCategory + "|6&_include=MedicationStatement:medication"},
	{Name: "MedicationAgreement", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "16076005", Display: "Prescription"},
		Template: "MedicationRequest?" + patientBSN + "&category=" + bgz.SystemSNOMED + "|16076005&_include=MedicationRequest:medication"},
	{Name: "AdministrationAgreement", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "422037009", Display: "Provider medication administration instructions"},
		Template: "MedicationDispense?" + patientBSN + "&category=" + bgz.SystemSNOMED + "|422037009&_include=MedicationDispense:medication"},
	{Name: "MedicalAid", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "46264-8", Display: "History of medical device use"},
		Template: "DeviceUseStatement?" + patientBSN + "&_include=DeviceUseStatement:device"},
	{Name: "Vaccination", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "11369-6", Display: "History of Immunization Narrative"},
		Template: "Immunization?" + patientBSN + "&status=completed"},
	{Name: "BloodPressure", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "85354-9", Display: "Blood pressure panel with all children optional"},
		Template: "Observation/$lastn?" + patientBSN + "&code=" + bgz.SystemLOINC + "|85354-9"},
	{Name: "BodyWeight", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "29463-7", Display: "Body weight"},
		Template: "Observation/$lastn?" + patientBSN + "&code=" + bgz.SystemLOINC + "|29463-7"},
	{Name: "BodyHeight", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "8302-2", Display: "Body height"},
		Template: "Observation/$lastn?" + patientBSN + "&code=" + bgz.SystemLOINC + "|8302-2," + bgz.SystemLOINC + "|8306-3," + bgz.SystemLOINC + "|8308-9"},
	{Name: "LaboratoryTestResult", Code: bgz.Coding{System: bgz.SystemSNOMED, Code: "15220000", Display: "Laboratory test"},
		Template: "Observation/$lastn?" + patientBSN + "&category=" + bgz.SystemSNOMED + "|49581000146104&_include=Observation:has-member"},
	{Name: "Encounter", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "46240-8", Display: "History of Hospitalizations+Outpatient visits Narrative"},
		Template: "Encounter?" + patientBSN},
	{Name: "Procedure", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "47519-4", Display: "History of Procedures Document"},
		Template: "Procedure?" + patientBSN + "&category=" + bgz.SystemSNOMED + "|387713003," + bgz.SystemSNOMED + "|258174001&_include=Procedure:based-on"},
	{Name: "PlannedCareActivity", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "18776-5", Display: "Plan of care note"},
		Template: "ServiceRequest?" + patientBSN + "&status=active"},
	{Name: "HealthProfessional/CareTeam", Code: bgz.Coding{System: bgz.SystemLOINC, Code: "85847-2", Display: "Patient Care team information"},
		Template: "CareTeam?" + patientBSN + "&status=active&_include=CareTeam:participant"},
}

// Blocks returns the R4 query set, one Block per search. The slice is a
// fresh copy.
func Blocks() []bgz.Block { return append([]bgz.Block(nil), blocks...) }

// App is BgZ on R4 as a care application (careapp.Workflow).
type App struct{}

// New returns the BgZ R4 care application.
func New() App { return App{} }

func (App) Name() string              { return Name }
func (App) FHIRVersion() fhir.Version { return fhir.R4 }

// Patterns: a referral (Notified Pull) first, then the consult (Direct
// Pull), as BgZ on STU3.
func (App) Patterns() []careapp.Pattern {
	return []careapp.Pattern{careapp.NotifiedPull, careapp.DirectPull}
}

// Queries are the 26 searches of a BgZ R4 retrieval for the patient.
func (App) Queries(bsn string) []careapp.Query {
	out := make([]careapp.Query, 0, len(blocks))
	for _, b := range blocks {
		out = append(out, query(b, bsn))
	}
	return out
}

func query(b bgz.Block, bsn string) careapp.Query {
	return careapp.Query{Name: b.Name, Code: careapp.Coding(b.Code), Search: b.Query(bsn)}
}

// Match returns the R4 query a received request is, in any spelling the
// STU3 BgZ treats as equal (parameter order, OR-alternatives, OID or URI
// systems, _revinclude=Provenance:target), its paging and shaping
// parameters left out.
func (App) Match(req careapp.Request, bsn string) (careapp.Query, error) {
	b, err := bgz.MatchIn(blocks, bgz.SearchOf(req.Type, req.Operation, req.Params), bsn)
	if err != nil {
		return careapp.Query{}, &notInSet{err}
	}
	return query(b, bsn), nil
}

// notInSet is a refusal of Match: both the bgz error and careapp.ErrNotInSet.
type notInSet struct{ err error }

func (e *notInSet) Error() string   { return "BgZ R4: " + e.err.Error() }
func (e *notInSet) Unwrap() []error { return []error{e.err, careapp.ErrNotInSet} }

func (App) PatientBSN(params url.Values) (string, bool) { return bgz.PatientBSN(params) }
func (App) Normalize(search string) (string, error)     { return bgz.Normalize(search) }
func (App) ServerPayloadType() string                   { return PayloadServer }

// WorkflowTasks: a BgZ R4 referral is one kind of Task.
func (App) WorkflowTasks() []careapp.TaskKind { return []careapp.TaskKind{ReferralTask} }
