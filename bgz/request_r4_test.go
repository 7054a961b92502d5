package bgz

import (
	"net/url"
	"testing"
)

// A search with _summary, _elements or _pretty is the search it shapes.
func TestSearchOfDropsShapingParams(t *testing.T) {
	plain := SearchOf("Condition", "", url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|999911120"}})
	shaped := SearchOf("Condition", "", url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|999911120"},
		"_summary": {"true"}, "_elements": {"code"}, "_pretty": {"true"}, "_count": {"5"}})
	if plain != shaped {
		t.Errorf("SearchOf with shaping parameters = %q, want %q", shaped, plain)
	}
	// A parameter that filters stays.
	if f := SearchOf("Condition", "", url.Values{"code": {"x"}}); f != "Condition?code=x" {
		t.Errorf("SearchOf = %q", f)
	}
}
