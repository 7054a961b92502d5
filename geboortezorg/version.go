package geboortezorg

import (
	"bytes"
	"strings"
)

// version refuses a resource in the shape of FHIR R4: the transfer is
// exchanged in STU3 (3.0.x), as the Nictiz Geboortezorg package defines
// it. The elements checked are those R4 renamed or retyped in the
// resources of a transfer, and the R4 (zib2020) nl-core profiles.
func version(r *resource) error {
	const stu3 = "the perinatal transfer is exchanged in FHIR STU3 (3.0.x)"
	switch r.ResourceType {
	case "Observation", "Procedure", "Condition":
		if len(r.Encounter) > 0 {
			return refuse("not-supported", "FHIR version: %s.encounter is FHIR R4 (STU3 has %s.context); %s", r.ResourceType, r.ResourceType, stu3)
		}
	}
	if r.ResourceType == "Observation" && len(r.ValueInteger) > 0 {
		return refuse("not-supported", "FHIR version: Observation.valueInteger is FHIR R4 (STU3 has valueQuantity); %s", stu3)
	}
	if r.ResourceType == "Condition" && len(r.ClinicalStatus) > 0 && r.ClinicalStatus[0] == '{' {
		return refuse("not-supported", "FHIR version: Condition.clinicalStatus is a CodeableConcept, as in FHIR R4 (a code in STU3); %s", stu3)
	}
	if r.ResourceType == "RelatedPerson" && len(bytes.TrimSpace(r.Relationship)) > 0 && bytes.TrimSpace(r.Relationship)[0] == '[' {
		return refuse("not-supported", "FHIR version: RelatedPerson.relationship is a list, as in FHIR R4 (one CodeableConcept in STU3); %s", stu3)
	}
	for _, p := range r.Meta.Profile {
		if strings.HasPrefix(p, "http://nictiz.nl/fhir/StructureDefinition/nl-core-") {
			return refuse("not-supported", "FHIR version: %s claims %s, a zib2020 profile for FHIR R4; %s (nl-core profiles under http://fhir.nl/fhir/StructureDefinition/)",
				r.ResourceType, p, stu3)
		}
	}
	return nil
}
