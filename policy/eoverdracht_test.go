package policy

import (
	"testing"

	"github.com/schakel-nl/schakel/fhir/rest"
)

// The embedded eOverdracht policy covers what a transfer's receiver does —
// the workflow Task read and updated, Composition/{id}/$document — for the
// nursing roles at every plateau, allied health up to plateau 3, and no one
// for a search.
func TestEmbeddedEOverdracht(t *testing.T) {
	set, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	p := set["eoverdracht"]
	if p == nil {
		t.Fatal("no embedded eoverdracht policy")
	}
	cases := []struct {
		typ, interaction, op string
		plateau              int
		role                 string
		want                 bool
	}{
		{"Task", rest.InteractionRead, "", 4, "30.000", true},
		{"Task", rest.InteractionUpdate, "", 3, "01.047", true},
		{"Composition", rest.InteractionOperation, "$document", 4, "30.076", true},
		{"Composition", rest.InteractionOperation, "$document", 3, "04.000", true},
		{"Composition", rest.InteractionOperation, "$document", 4, "04.000", false},
		{"Composition", rest.InteractionOperation, "$document", 3, "17.000", false},
		{"Composition", rest.InteractionSearchType, "", 2, "30.000", false},
		{"Condition", rest.InteractionRead, "", 4, "30.000", true},
		{"AllergyIntolerance", rest.InteractionRead, "", 4, "04.000", false},
		{"Condition", rest.InteractionSearchType, "", 2, "30.000", false},
	}
	for _, c := range cases {
		r := p.Match(c.typ, c.interaction, c.op, nil)
		got := r != nil && r.Allows(c.plateau, c.role)
		if got != c.want {
			t.Errorf("%s %s %s at plateau %d for %s: %v, want %v", c.interaction, c.typ, c.op, c.plateau, c.role, got, c.want)
		}
	}
}
