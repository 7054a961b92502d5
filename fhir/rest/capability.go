package rest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir"
)

// capabilities answers GET metadata with a CapabilityStatement that says
// what this server does: every resource type of its FHIR version with the
// interactions above, JSON only, and Observation/$lastn. Search parameters
// are not listed yet; they will be generated from the store's tables.
func (s *Server) capabilities(w http.ResponseWriter, req *Request) Result {
	doc, err := json.Marshal(s.capabilityStatement(req.Base))
	if err != nil {
		return Result{Err: err}
	}
	return s.write(w, req, http.StatusOK, doc, nil)
}

type (
	capabilityStatement struct {
		ResourceType   string         `json:"resourceType"`
		Status         string         `json:"status"`
		Date           string         `json:"date"`
		Publisher      string         `json:"publisher"`
		Kind           string         `json:"kind"`
		Software       software       `json:"software"`
		Implementation implementation `json:"implementation"`
		FHIRVersion    string         `json:"fhirVersion"`
		AcceptUnknown  string         `json:"acceptUnknown,omitempty"` // STU3 only, where it is required
		Format         []string       `json:"format"`
		Rest           []capRest      `json:"rest"`
	}
	software struct {
		Name string `json:"name"`
	}
	implementation struct {
		Description string `json:"description"`
		URL         string `json:"url"`
	}
	capRest struct {
		Mode      string        `json:"mode"`
		Resource  []capResource `json:"resource"`
		Operation []capOp       `json:"operation,omitempty"` // STU3: operations live here
	}
	capResource struct {
		Type         string           `json:"type"`
		Interaction  []capInteraction `json:"interaction"`
		Versioning   string           `json:"versioning"`
		ReadHistory  bool             `json:"readHistory"`
		UpdateCreate bool             `json:"updateCreate"`
		Operation    []capOp          `json:"operation,omitempty"` // R4: operations live here
	}
	capInteraction struct {
		Code string `json:"code"`
	}
	capOp struct {
		Name       string `json:"name"`
		Definition any    `json:"definition"` // STU3: Reference; R4: canonical
	}
)

// typeInteractions are the interactions served on every resource type.
var typeInteractions = []capInteraction{
	{"read"}, {"vread"}, {"update"}, {"delete"}, {"create"}, {"search-type"},
}

const lastNDefinition = "http://hl7.org/fhir/OperationDefinition/Observation-lastn"

func (s *Server) capabilityStatement(base string) capabilityStatement {
	cs := capabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           s.started.Format(time.RFC3339),
		Publisher:      "Schakel",
		Kind:           "instance",
		Software:       software{Name: "Schakel"},
		Implementation: implementation{Description: "Schakel FHIR endpoint", URL: base},
		FHIRVersion:    "3.0.2",
		AcceptUnknown:  "no",
		Format:         []string{"json"},
	}
	if s.version == fhir.R4 {
		cs.FHIRVersion, cs.AcceptUnknown = "4.0.1", ""
	}
	rest := capRest{Mode: "server"}
	types := make([]string, 0, len(s.types))
	for t := range s.types {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		r := capResource{Type: t, Interaction: typeInteractions, Versioning: "versioned", ReadHistory: true, UpdateCreate: true}
		if t == "Observation" && s.version == fhir.R4 {
			r.Operation = []capOp{{Name: "lastn", Definition: lastNDefinition}}
		}
		rest.Resource = append(rest.Resource, r)
	}
	if s.version == fhir.STU3 {
		rest.Operation = []capOp{{Name: "lastn", Definition: map[string]string{"reference": lastNDefinition}}}
	}
	cs.Rest = []capRest{rest}
	return cs
}

// resourceTypes are the resource types of FHIR version v; the URL's type
// must be one of them.
func resourceTypes(v fhir.Version) map[string]bool {
	list := stu3Types
	if v == fhir.R4 {
		list = r4Types
	}
	m := make(map[string]bool)
	for _, t := range strings.Fields(list) {
		m[t] = true
	}
	return m
}

// The resource types of FHIR 3.0.2 and 4.0.1 (from the specifications'
// resource lists).
const (
	stu3Types = `Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment
AppointmentResponse AuditEvent Basic Binary BodySite Bundle CapabilityStatement CarePlan
CareTeam ChargeItem Claim ClaimResponse ClinicalImpression CodeSystem Communication
CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract
Coverage DataElement DetectedIssue Device DeviceComponent DeviceMetric DeviceRequest
DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EligibilityRequest
EligibilityResponse Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare
ExpansionProfile ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group
GuidanceResponse HealthcareService ImagingManifest ImagingStudy Immunization
ImmunizationRecommendation ImplementationGuide Library Linkage List Location Measure
MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationRequest
MedicationStatement MessageDefinition MessageHeader NamingSystem NutritionOrder Observation
OperationDefinition OperationOutcome Organization Parameters Patient PaymentNotice
PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole Procedure
ProcedureRequest ProcessRequest ProcessResponse Provenance Questionnaire QuestionnaireResponse
ReferralRequest RelatedPerson RequestGroup ResearchStudy ResearchSubject RiskAssessment
Schedule SearchParameter Sequence ServiceDefinition Slot Specimen StructureDefinition
StructureMap Subscription Substance SupplyDelivery SupplyRequest Task TestReport TestScript
ValueSet VisionPrescription`

	r4Types = `Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment
AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle
CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim
ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage
CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition
DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest
DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario
ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse
HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation
ImplementationGuide InsurancePlan Invoice Library Linkage List Location Measure MeasureReport
Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization
MedicinalProductContraindication MedicinalProductIndication MedicinalProductIngredient
MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged
MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition
MessageHeader MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition
OperationDefinition OperationOutcome Organization OrganizationAffiliation Parameters Patient
PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole
Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup
ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen
SpecimenDefinition StructureDefinition StructureMap Subscription Substance
SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription`
)
