// Package bgz holds the BgZ (Basisgegevensset Zorg, patient summary) care
// application as the node needs it: the set of FHIR STU3 searches that make up
// a BgZ retrieval (SPEC §5, Nictiz BgZ MSZ 2.0 on zib2017), the codes that
// type each search as a workflow Task input, and a canonical form of a search
// so that a request can be checked against the queries a Task allows.
package bgz

import (
	"strings"

	"github.com/schakel-nl/schakel/nl"
)

// Code systems used by the BgZ queries and the Task input codes.
const (
	SystemSNOMED = "http://snomed.info/sct"
	SystemLOINC  = "http://loinc.org"
	// SystemMedicationCategory is the zib2017 medication-process category
	// code system ("6" = Medicatiegebruik, MedicationStatement).
	SystemMedicationCategory = "urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3"
)

// BSNPlaceholder is where a Template takes the patient's BSN.
const BSNPlaceholder = "{bsn}"

// ProvenanceRevinclude is the parameter SPEC §5 lets any BgZ search add to
// fetch the BgZ-Metadata Provenance of each result; Match accepts it.
const ProvenanceRevinclude = "_revinclude=Provenance:target"

// Coding is a FHIR Coding reduced to what identifies a concept.
type Coding struct {
	System  string
	Code    string
	Display string
}

// Block is one BgZ data block and the search that retrieves it.
type Block struct {
	// Name is the zib2017 name of the block, e.g. "Problem" or "BloodPressure".
	Name string
	// Code types the workflow Task input that carries this block's search.
	Code Coding
	// Template is the search relative to the FHIR base, exactly as SPEC §5
	// spells it, with BSNPlaceholder where the BSN goes. Its parameter values
	// hold no characters that need escaping; Query escapes the BSN.
	Template string
}

// patientBSN is the "P" of SPEC §5: the patient chained by BSN.
const patientBSN = "patient.identifier=" + nl.SystemBSN + "|" + BSNPlaceholder

// The Task input codes follow the Nictiz BgZ referral workflow Task
// (http://nictiz.nl/fhir/StructureDefinition/BgZ-verwijzing-Task, as used in
// Notified Pull BgZ referrals): LOINC document/section codes where the block
// is a section, the zib's own SNOMED concept where the block is one finding.
// Encounter, PlannedCareActivity and HealthProfessional/CareTeam are not in
// that Task; for them we chose the LOINC section codes of the same family
// (46240-8, 18776-5, 85847-2).
var blocks = []Block{
	{"Patient", Coding{SystemLOINC, "79191-3", "Patient demographics panel"},
		"Patient?identifier=" + nl.SystemBSN + "|" + BSNPlaceholder + "&_include=Patient:general-practitioner"},
	{"Payer", Coding{SystemLOINC, "48768-6", "Payment sources Document"},
		"Coverage?beneficiary.identifier=" + nl.SystemBSN + "|" + BSNPlaceholder + "&_include=Coverage:payor"},
	{"TreatmentDirective", Coding{SystemSNOMED, "11291000146105", "Treatment instructions"},
		"Consent?" + patientBSN + "&category=" + SystemSNOMED + "|11291000146105"},
	{"AdvanceDirective", Coding{SystemSNOMED, "11341000146107", "Living will and advance directive record"},
		"Consent?" + patientBSN + "&category=" + SystemSNOMED + "|11341000146107"},
	{"FunctionalOrMentalStatus", Coding{SystemLOINC, "47420-5", "Functional status assessment note"},
		"Observation?" + patientBSN + "&category=" + SystemSNOMED + "|118228005," + SystemSNOMED + "|384821006"},
	{"Problem", Coding{SystemLOINC, "11450-4", "Problem list - Reported"},
		"Condition?" + patientBSN},
	{"LivingSituation", Coding{SystemSNOMED, "365508006", "Residence and accommodation circumstances - finding"},
		"Observation?" + patientBSN + "&code=" + SystemSNOMED + "|365508006"},
	{"DrugUse", Coding{SystemSNOMED, "228366006", "Finding relating to drug misuse behavior"},
		"Observation?" + patientBSN + "&code=" + SystemSNOMED + "|228366006"},
	{"AlcoholUse", Coding{SystemSNOMED, "228273003", "Finding relating to alcohol drinking behavior"},
		"Observation?" + patientBSN + "&code=" + SystemSNOMED + "|228273003"},
	{"TobaccoUse", Coding{SystemSNOMED, "365980008", "Tobacco use and exposure - finding"},
		"Observation?" + patientBSN + "&code=" + SystemSNOMED + "|365980008"},
	{"NutritionAdvice", Coding{SystemSNOMED, "11816003", "Diet education"},
		"NutritionOrder?" + patientBSN},
	{"Alert", Coding{SystemLOINC, "75310-3", "Health concerns Document"},
		"Flag?" + patientBSN},
	{"AllergyIntolerance", Coding{SystemLOINC, "48765-2", "Allergies and adverse reactions Document"},
		"AllergyIntolerance?" + patientBSN},
	{"MedicationUse", Coding{SystemSNOMED, "422979000", "Known medication use"},
		"MedicationStatement?" + patientBSN + "&category=" + SystemMedicationCategory + "|6&_include=MedicationStatement:medication"},
	{"MedicationAgreement", Coding{SystemSNOMED, "16076005", "Prescription"},
		"MedicationRequest?" + patientBSN + "&category=" + SystemSNOMED + "|16076005&_include=MedicationRequest:medication"},
	{"AdministrationAgreement", Coding{SystemSNOMED, "422037009", "Provider medication administration instructions"},
		"MedicationDispense?" + patientBSN + "&category=" + SystemSNOMED + "|422037009&_include=MedicationDispense:medication"},
	{"MedicalAid", Coding{SystemLOINC, "46264-8", "History of medical device use"},
		"DeviceUseStatement?" + patientBSN + "&_include=DeviceUseStatement:device"},
	{"Vaccination", Coding{SystemLOINC, "11369-6", "History of Immunization Narrative"},
		"Immunization?" + patientBSN + "&status=completed"},
	{"BloodPressure", Coding{SystemLOINC, "85354-9", "Blood pressure panel with all children optional"},
		"Observation/$lastn?" + patientBSN + "&code=" + SystemLOINC + "|85354-9"},
	{"BodyWeight", Coding{SystemLOINC, "29463-7", "Body weight"},
		"Observation/$lastn?" + patientBSN + "&code=" + SystemLOINC + "|29463-7"},
	{"BodyHeight", Coding{SystemLOINC, "8302-2", "Body height"},
		"Observation/$lastn?" + patientBSN + "&code=" + SystemLOINC + "|8302-2," + SystemLOINC + "|8306-3," + SystemLOINC + "|8308-9"},
	{"LaboratoryTestResult", Coding{SystemSNOMED, "15220000", "Laboratory test"},
		"Observation/$lastn?" + patientBSN + "&category=" + SystemSNOMED + "|49581000146104&_include=Observation:related-target"},
	{"Encounter", Coding{SystemLOINC, "46240-8", "History of Hospitalizations+Outpatient visits Narrative"},
		"Encounter?" + patientBSN},
	{"Procedure", Coding{SystemLOINC, "47519-4", "History of Procedures Document"},
		"Procedure?" + patientBSN + "&category=" + SystemSNOMED + "|387713003," + SystemSNOMED + "|258174001&_include=Procedure:based-on"},
	{"PlannedCareActivity", Coding{SystemLOINC, "18776-5", "Plan of care note"},
		"ProcedureRequest?" + patientBSN + "&status=active"},
	{"HealthProfessional/CareTeam", Coding{SystemLOINC, "85847-2", "Patient Care team information"},
		"CareTeam?" + patientBSN + "&status=active&_include=CareTeam:participant"},
}

// Queries returns the complete BgZ retrieval of SPEC §5, one Block per
// search, in the order SPEC lists them. The slice is a fresh copy.
func Queries() []Block {
	return append([]Block(nil), blocks...)
}

// Query returns the block's search for the patient with the given BSN,
// relative to the FHIR base. Parameter values are percent-encoded where
// needed; ':', '/', ',', '|' and '$' stay literal as FHIR servers expect, so
// url.ParseQuery of the part after '?' yields exactly the intended values.
func (b Block) Query(bsn string) string {
	path, rawQuery, _ := strings.Cut(b.Template, "?")
	if rawQuery == "" {
		return path
	}
	var sb strings.Builder
	sb.WriteString(path)
	sb.WriteByte('?')
	for i, pair := range strings.Split(rawQuery, "&") {
		key, value, _ := strings.Cut(pair, "=")
		if i > 0 {
			sb.WriteByte('&')
		}
		sb.WriteString(escape(key))
		sb.WriteByte('=')
		sb.WriteString(escape(strings.ReplaceAll(value, BSNPlaceholder, bsn)))
	}
	return sb.String()
}

// escape percent-encodes s for a query key or value. It keeps RFC 3986
// unreserved characters and the ones FHIR search values are written with,
// and encodes everything url.ParseQuery would read differently ('&', '=',
// '+', ';', '%', '#', space) or that does not belong in a URL.
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

func keep(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~:/|,$@!'()*", c) >= 0
}
