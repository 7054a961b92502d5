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
