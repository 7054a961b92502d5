package plateau

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/policy"
)

// The embedded BgZ policy at authorization plateaus 2, 3 and 4: a role the
// table allows for a block is let through, one it does not is refused with
// a 403 that names the function and the plateau.
func TestBgZRoleTablesPerPlateau(t *testing.T) {
	set, err := policy.Load("")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Agreements: []PartnerConfig{
		{URA: uraP2, Plateaus: Uniform(2)},
		{URA: uraP3, Plateaus: Uniform(3)},
		{URA: uraP4, Plateaus: Uniform(4), Applications: []string{"bgz"}},
	}, IdentityIssuers: []string{dezi}}, set)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]bgz.Block{}
	for _, b := range bgz.Queries() {
		blocks[b.Name] = b
	}
	cases := []struct {
		ura     string
		plateau int
		block   string
		role    string
		allowed bool
		basis   string
	}{
		{uraP2, 2, "Problem", "01.015", true, ""},
		{uraP2, 2, "Problem", "01.048", false, "collaboration's rules"}, // verzekeringsarts
		{uraP3, 3, "MedicationUse", "17.075", true, ""},
		{uraP3, 3, "MedicationUse", "04.000", false, "national authorization guideline"},
		{uraP3, 3, "LaboratoryTestResult", "30.000", true, ""},
		{uraP4, 4, "LaboratoryTestResult", "30.000", false, "medical authorization protocol"},
		{uraP4, 4, "LaboratoryTestResult", "17.075", true, ""},
		{uraP4, 4, "AlcoholUse", "01.016", true, ""},
		{uraP4, 4, "AlcoholUse", "30.000", false, "medical authorization protocol"},
		{uraP4, 4, "Alert", "91.000", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.block+"/"+tc.role, func(t *testing.T) {
			b, ok := blocks[tc.block]
			if !ok {
				t.Fatalf("no BgZ block %s", tc.block)
			}
			typ, op, params, err := bgz.ParseQuery(b.Query("999999011"))
			if err != nil {
				t.Fatal(err)
			}
			in := rest.InteractionSearchType
			if op != "" {
				in = rest.InteractionOperation
			}
			err = e.CheckAccess(context.Background(), AccessContext{PartnerURA: tc.ura, Authenticated: tc.plateau,
				UserRole: tc.role, Application: "bgz", Interaction: in, ResourceType: typ, Operation: op, Params: params})
			if tc.allowed {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			r := AsRefusal(err)
			if r == nil {
				t.Fatalf("want a refusal, got %v", err)
			}
			fe := r.FHIRError()
			d := fe.Issues[0].Diagnostics
			if r.Function != Authorization || r.Required != tc.plateau || fe.Status != 403 ||
				!strings.Contains(d, tc.basis) || !strings.Contains(d, "role "+tc.role) ||
				!strings.Contains(d, fmt.Sprintf("authorization: plateau %d required", tc.plateau)) {
				t.Fatalf("refusal %+v\ndiagnostics %q", r, d)
			}
		})
	}
}
