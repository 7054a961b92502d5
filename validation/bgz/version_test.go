package bgz

import (
	"net/http"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/validation"
)

const testBaseR4 = "https://holder.test/fhir/r4/90000001"

// TestJudgeBlockR4TellsConformantFromWrong feeds the R4 kit's per-block
// judgement what a holder that serves STU3 where R4 is agreed answers: an
// STU3 resource, a zib2017 profile, no nl-core profile, the STU3 media
// type. Each fails the block's case; the conformant R4 answer passes it.
func TestJudgeBlockR4TellsConformantFromWrong(t *testing.T) {
	problem, ok := r4.block("Problem")
	if !ok {
		t.Fatal("the R4 kit has no Problem block")
	}
	const r4Type = "application/fhir+json; fhirVersion=4.0; charset=utf-8"
	self := []map[string]string{{"relation": "self", "url": testBaseR4 + "/Condition?x=1"}}
	condition := func(change func(map[string]any)) map[string]any {
		c := map[string]any{"resourceType": "Condition", "id": "c1", "subject": subject("Patient/p1"),
			"meta":           map[string]any{"profile": []any{"http://nictiz.nl/fhir/StructureDefinition/nl-core-Problem"}},
			"clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
			"code":           cc(bgz.SystemSNOMED, "38341003")}
		if change != nil {
			change(c)
		}
		return c
	}
	for _, tc := range []struct {
		name        string
		contentType string
		body        []byte
		want        string
	}{
		{"conformant", r4Type, searchset(self, entry("match", condition(nil))), ""},
		{"STU3 media type", "application/fhir+json; fhirVersion=3.0", searchset(self, entry("match", condition(nil))), "fhirVersion=4.0"},
		{"no fhirVersion", "application/fhir+json", searchset(self, entry("match", condition(nil))), "fhirVersion=4.0"},
		{"an STU3 Condition (clinicalStatus a code)", r4Type, searchset(self, entry("match", condition(func(c map[string]any) {
			c["clinicalStatus"] = "active"
		}))), "not valid R4"},
		{"a zib2017 profile", r4Type, searchset(self, entry("match", condition(func(c map[string]any) {
			c["meta"] = map[string]any{"profile": []any{"http://nictiz.nl/fhir/StructureDefinition/zib-Problem",
				"http://nictiz.nl/fhir/StructureDefinition/nl-core-Problem"}}
		}))), "another FHIR version"},
		{"no nl-core profile", r4Type, searchset(self, entry("match", condition(func(c map[string]any) { delete(c, "meta") }))), "claims no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &validation.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {tc.contentType}}, Body: tc.body}
			ps := r4.judgeBlock(problem, testBSN, []string{"Patient/p1"}, testBaseR4, resp)
			detail := strings.Join(ps, "; ")
			switch {
			case tc.want == "" && len(ps) > 0:
				t.Fatalf("the conformant answer failed: %s", detail)
			case tc.want != "" && !strings.Contains(detail, tc.want):
				t.Fatalf("problems %q, want one with %q", detail, tc.want)
			}
		})
	}
}

// TestKitsShareCasesAcrossVersions: the R4 kit has every case of the STU3
// kit under its own id, the version's cases besides, and one block case
// per block of the R4 query set; the STU3 kit has no version cases.
func TestKitsShareCasesAcrossVersions(t *testing.T) {
	ids := func(cs []validation.Case, prefix string) map[string]bool {
		out := map[string]bool{}
		for _, c := range cs {
			if !strings.HasPrefix(c.ID, prefix) {
				t.Errorf("case %s lacks the prefix %s", c.ID, prefix)
			}
			out[strings.TrimPrefix(c.ID, prefix)] = true
		}
		return out
	}
	stu3IDs, r4IDs := ids(Cases(), "bgz."), ids(CasesR4(), "bgz-r4.")
	for id := range stu3IDs {
		if !r4IDs[id] {
			t.Errorf("bgz.%s has no bgz-r4 counterpart", id)
		}
	}
	for _, id := range []string{"holder.stu3-media-type", "holder.stu3-search", "holder.data-endpoint",
		"sender.stu3-media-type", "sender.data-not-on-task-base", "sender.data-endpoint"} {
		if !r4IDs[id] || stu3IDs[id] {
			t.Errorf("%s: in R4 %v, in STU3 %v; want only in R4", id, r4IDs[id], stu3IDs[id])
		}
	}
	if n := len(r4.blockCases()); n != len(r4.blocks) || n != 26 {
		t.Errorf("%d R4 block cases for %d blocks", n, len(r4.blocks))
	}
	if q, err := r4.stu3Only(testBSN); err != nil || !strings.HasPrefix(q, "ProcedureRequest?") {
		t.Errorf("the STU3-only search: %q, %v", q, err)
	}
}
