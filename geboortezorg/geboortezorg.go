// Package geboortezorg is the care application Geboortezorg (maternity) as
// it runs on Push: the perinatal transfer (overdracht) a midwife practice
// sends to the GP practice and the hospital after a birth — a FHIR STU3
// document Bundle on the Nictiz Geboortezorg STU3 profiles — the receiver's
// validation of it, the consent rule of a directed send, what a receiving
// system reads from it, and the demo network's transfer.
package geboortezorg

import (
	"net/http"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/push"
)

// The event and the document type.
const (
	Name = "geboortezorg"
	// DocumentType is the Composition.type: LOINC "Labor and delivery
	// summary", the document code IHE PCC's Labor and Delivery Summary uses.
	DocumentType = "57057-2"
	Title        = "Overdracht geboortezorg"
)

// Code systems.
const (
	SystemLOINC    = "http://loinc.org"
	SystemSNOMED   = "http://snomed.info/sct"
	SystemRoleCode = "http://hl7.org/fhir/v3/RoleCode"
)

// Profiles of the Nictiz Geboortezorg STU3 package (nictiz.fhir.nl.stu3.geboortezorg)
// and the zibs 2017 it builds on.
const (
	ProfileWoman                = "http://nictiz.nl/fhir/StructureDefinition/bc-Woman"
	ProfileChild                = "http://nictiz.nl/fhir/StructureDefinition/bc-Child"
	ProfileMotherOf             = "http://nictiz.nl/fhir/StructureDefinition/bc-MotherOf"
	ProfileMaternalRecord       = "http://nictiz.nl/fhir/StructureDefinition/bc-MaternalRecord"
	ProfilePregnancy            = "http://nictiz.nl/fhir/StructureDefinition/zib-Pregnancy"
	ProfileDelivery             = "http://nictiz.nl/fhir/StructureDefinition/bc-DeliveryProcedure"
	ProfileBirth                = "http://nictiz.nl/fhir/StructureDefinition/bc-Birth"
	ProfilePregnancyObservation = "http://nictiz.nl/fhir/StructureDefinition/bc-PregnancyObservation"
	ProfileDeliveryObservation  = "http://nictiz.nl/fhir/StructureDefinition/bc-DeliveryObservation"
	ProfileBirthObservation     = "http://nictiz.nl/fhir/StructureDefinition/bc-BirthObservation"
	ProfileChildObservation     = "http://nictiz.nl/fhir/StructureDefinition/bc-ChildObservation"
	ProfileMaternalObservation  = "http://nictiz.nl/fhir/StructureDefinition/bc-MaternalObservation"
	ProfileNLCorePatient        = "http://fhir.nl/fhir/StructureDefinition/nl-core-patient"
	ProfileNLCoreObservation    = "http://fhir.nl/fhir/StructureDefinition/nl-core-observation"
	// ExtensionFocus points a pregnancy, delivery or birth observation at
	// what it is about (STU3 has no Observation.focus).
	ExtensionFocus = "http://nictiz.nl/fhir/StructureDefinition/observation-focusSTU3"
)

// Codes of the resources and of the key observations.
const (
	CodePregnancy       = "118185001" // SNOMED: finding related to pregnancy (zib-Pregnancy)
	CodeMaternalRecord  = "364320009" // SNOMED: pregnancy observable (bc-MaternalRecord type)
	CodeDelivery        = "236973005" // SNOMED: delivery procedure
	CodeBirth           = "3950001"   // SNOMED: birth
	RoleMother          = "MTH"       // v3 RoleCode: mother
	CodeGravidity       = "11996-6"   // LOINC
	CodeParity          = "11977-6"   // LOINC
	CodeDueDate         = "11778-8"   // LOINC: delivery date, clinical estimate
	CodeGestation       = "57036006"  // SNOMED: length of gestation
	CodeParturitionType = "364336006" // SNOMED: pattern of delivery
	CodeBloodLoss       = "64332008"  // SNOMED: blood loss in labour
	CodeBirthPlace      = "169812000" // SNOMED: place of birth
	CodeBirthWeight     = "8339-4"    // LOINC: birth weight measured
	CodeApgar5          = "9274-2"    // LOINC: 5 minute Apgar score
)

// observationProfiles are the profiles an observation of the transfer
// may claim; one of them is required.
var observationProfiles = []string{ProfilePregnancyObservation, ProfileDeliveryObservation, ProfileBirthObservation,
	ProfileChildObservation, ProfileMaternalObservation}

// Application is Geboortezorg for the push pattern.
type Application struct{}

// New returns the application, for registration at the composition root.
func New() Application { return Application{} }

// Name implements push.Application.
func (Application) Name() string { return Name }

// FHIRVersion: the Nictiz Geboortezorg profiles are STU3 (careapp.Application).
func (Application) FHIRVersion() fhir.Version { return fhir.STU3 }

// Patterns: the transfer is sent (careapp.Application).
func (Application) Patterns() []careapp.Pattern { return []careapp.Pattern{careapp.Push} }

// Event implements push.Application: the MessageHeader.event of a transfer.
func (Application) Event() (string, string) { return push.SystemEvent, Name }

// Consent implements push.Application. The transfer goes to the named
// GP practice and hospital that take over the care of mother and child
// (a directed send within the treatment relationship, as a referral);
// the mother's consent is presumed and no consent service is asked.
func (Application) Consent() string { return "presumed-directed-send" }

// Validate implements push.Application: the receiver's check of a
// transfer. The patient it names is the mother.
func (Application) Validate(payload []byte) (push.Payload, error) {
	s, err := Read(payload)
	p := push.Payload{PatientBSN: s.Mother.BSN}
	if err != nil {
		return p, err
	}
	p.Type = "Composition"
	p.Description = "perinatal transfer: mother " + s.Mother.BSN + ", child " + s.Child.BSN + " born " + s.Child.BirthDate
	return p, nil
}

func refuse(code, format string, args ...any) error {
	return fhir.Errorf(http.StatusUnprocessableEntity, code, "geboortezorg: "+format, args...)
}
