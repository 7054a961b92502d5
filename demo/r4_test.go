package demo

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// Every R4 resource validates against the R4 definitions, claims only
// zib2020 nl-core profiles, and no STU3-only resource type is left.
func TestR4Validates(t *testing.T) {
	ps, err := GenerateR4(Options{Count: 20, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, p := range ps {
		for _, raw := range p.Resources {
			if issues := validate.Resource(fhir.R4, raw); len(issues) > 0 {
				t.Errorf("%.120s: %v", raw, issues)
			}
			var r struct {
				ResourceType string
				Meta         struct{ Profile []string }
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			types[r.ResourceType]++
			for _, pr := range r.Meta.Profile {
				if !strings.HasPrefix(pr, nlCoreR4) {
					t.Errorf("%s: profile %s", r.ResourceType, pr)
				}
			}
		}
	}
	if types["ProcedureRequest"] > 0 || types["ServiceRequest"] == 0 {
		t.Errorf("types %v: want ServiceRequest for ProcedureRequest", types)
	}
	if t.Failed() {
		return
	}
	// The same patients as STU3.
	stu3, _ := Generate(Options{Count: 20, Seed: 3})
	for i := range ps {
		if ps[i].BSN != stu3[i].BSN || len(ps[i].Resources) != len(stu3[i].Resources) {
			t.Errorf("patient %d: %s/%d, STU3 %s/%d", i, ps[i].BSN, len(ps[i].Resources), stu3[i].BSN, len(stu3[i].Resources))
		}
	}
}
