package spec

import (
	"testing"

	"github.com/schakel-nl/schakel/fhir"
)

// The Nictiz search parameters of definitions/stu3/extra-search-parameters.json
// are in the generated tables.
func TestExtraSearchParameters(t *testing.T) {
	d := For(fhir.STU3)
	for _, typ := range []string{"MedicationDispense", "MedicationAdministration"} {
		p := d.SearchParam(typ, "category")
		if p == nil || p.Type != Token || len(p.Paths) != 1 || len(p.Paths[0]) != 1 ||
			p.Paths[0][0].Name != "category" || p.Paths[0][0].Types[0] != "CodeableConcept" {
			t.Errorf("%s.category: %+v", typ, p)
		}
	}
	// Procedure.category is core STU3 (the other BgZ category search).
	if p := d.SearchParam("Procedure", "category"); p == nil || p.Type != Token {
		t.Errorf("Procedure.category: %+v", p)
	}
}

func TestSummaryElements(t *testing.T) {
	for _, tc := range []struct {
		v       fhir.Version
		path    string
		summary bool
	}{
		{fhir.R4, "Patient.name", true},
		{fhir.R4, "Patient.contact", false},
		{fhir.R4, "Observation.value[x]", true},
		{fhir.R4, "Observation.component.code", true},
		{fhir.STU3, "Patient.birthDate", true},
		{fhir.STU3, "Patient.photo", false},
	} {
		if got := For(tc.v).InSummary(tc.path); got != tc.summary {
			t.Errorf("%s InSummary(%s) = %v, want %v", tc.v, tc.path, got, tc.summary)
		}
	}
	if !For(fhir.R4).Mandatory("Observation.status") || For(fhir.R4).Mandatory("Observation.subject") {
		t.Error("R4 Observation: status is mandatory, subject is not")
	}
	if !For(fhir.STU3).Mandatory("Composition.title") {
		t.Error("STU3 Composition.title is mandatory")
	}
}
