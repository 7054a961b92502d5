package bgz

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
)

const (
	testBSN  = "999990019"
	testBase = "https://holder.test/fhir/stu3/90000001"
)

func block(t *testing.T, name string) bgz.Block {
	t.Helper()
	for _, b := range bgz.Queries() {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no block %s", name)
	return bgz.Block{}
}

func searchset(links []map[string]string, entries ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})
	return b
}

func entry(mode string, res map[string]any) map[string]any {
	return map[string]any{"fullUrl": testBase + "/" + res["resourceType"].(string) + "/" + res["id"].(string),
		"resource": res, "search": map[string]any{"mode": mode}}
}

func cc(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

func subject(ref string) map[string]any { return map[string]any{"reference": ref} }

// TestJudgeBlockTellsConformantFromWrong feeds the per-block judgement the
// answers a wrong holder gives: each must fail the block's case, and the
// conformant answer must pass it.
func TestJudgeBlockTellsConformantFromWrong(t *testing.T) {
	self := []map[string]string{{"relation": "self", "url": testBase + "/Condition?x=1"}}
	condition := func(id, patient string) map[string]any {
		return map[string]any{"resourceType": "Condition", "id": id, "subject": subject(patient),
			"code": cc(bgz.SystemSNOMED, "38341003")}
	}
	labObs := func(id, category string) map[string]any {
		return map[string]any{"resourceType": "Observation", "id": id, "status": "final", "subject": subject("Patient/p1"),
			"category": []any{cc(bgz.SystemSNOMED, category)}, "code": cc(bgz.SystemLOINC, "2345-7")}
	}
	medStatement := func() map[string]any {
		return map[string]any{"resourceType": "MedicationStatement", "id": "ms1", "status": "active", "taken": "y",
			"subject": subject("Patient/p1"), "category": cc(bgz.SystemMedicationCategory, "6"),
			"medicationReference": map[string]any{"reference": "Medication/m1"}}
	}
	medication := map[string]any{"resourceType": "Medication", "id": "m1"}
	practitioner := map[string]any{"resourceType": "Practitioner", "id": "pr1"}
	immunization := func(status string) map[string]any {
		return map[string]any{"resourceType": "Immunization", "id": "i1", "status": status, "notGiven": false, "primarySource": true,
			"patient": subject("Patient/p1"), "vaccineCode": cc("urn:oid:2.16.840.1.113883.2.4.4.7", "1")}
	}
	for _, tc := range []struct {
		name   string
		block  string
		status int
		body   []byte
		want   string // "" = conformant; otherwise a fragment of the problem
	}{
		{"conformant Problem", "Problem", 200, searchset(self, entry("match", condition("c1", "Patient/p1"))), ""},
		{"another patient's Condition", "Problem", 200, searchset(self, entry("match", condition("c1", "Patient/p2"))), "another patient"},
		{"another patient by BSN", "Problem", 200, searchset(self, entry("match", map[string]any{"resourceType": "Condition", "id": "c2",
			"code": cc(bgz.SystemSNOMED, "1"), "subject": map[string]any{"identifier": map[string]any{"system": nl.SystemBSN, "value": "999990020"}}})), "another patient"},
		{"refused", "Problem", 403, []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden"}]}`), "HTTP 403"},
		{"not a searchset", "Problem", 200, []byte(`{"resourceType":"Bundle","type":"collection"}`), "not a searchset"},
		{"a next link off the endpoint", "Problem", 200, searchset([]map[string]string{{"relation": "next", "url": "https://elsewhere.test/fhir/Condition?page=2"}},
			entry("match", condition("c1", "Patient/p1"))), "leaves the holder's FHIR endpoint"},
		{"a match of the wrong type", "Problem", 200, searchset(self, entry("match", labObs("o1", "49581000146104"))), "want Condition"},
		{"conformant lab result", "LaboratoryTestResult", 200, searchset(self, entry("match", labObs("o1", "49581000146104"))), ""},
		{"category not honoured", "LaboratoryTestResult", 200, searchset(self, entry("match", labObs("o1", "118228005"))), "category"},
		{"conformant medication use with its Medication", "MedicationUse", 200, searchset(self, entry("match", medStatement()), entry("include", medication)), ""},
		{"an include the query does not ask for", "MedicationUse", 200, searchset(self, entry("match", medStatement()), entry("include", practitioner)), "does not ask for"},
		{"an include without any _include", "Problem", 200, searchset(self, entry("match", condition("c1", "Patient/p1")), entry("include", practitioner)), "does not ask for"},
		{"status not honoured", "Vaccination", 200, searchset(self, entry("match", immunization("entered-in-error"))), "status"},
		{"conformant vaccination", "Vaccination", 200, searchset(self, entry("match", immunization("completed"))), ""},
		{"an unknown search mode", "Problem", 200, searchset(self, map[string]any{"resource": condition("c1", "Patient/p1"), "search": map[string]any{"mode": "other"}}), "search.mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := stu3.judgeBlock(block(t, tc.block), testBSN, []string{"Patient/p1", testBase + "/Patient/p1"}, testBase, &validation.Response{Status: tc.status, Body: tc.body})
			v := ps.Verdict("ok")
			switch {
			case tc.want == "" && len(ps) > 0:
				t.Fatalf("a conformant answer failed: %s", v.Detail)
			case tc.want != "" && len(ps) == 0:
				t.Fatalf("a wrong answer passed; want a problem with %q", tc.want)
			case tc.want != "" && !strings.Contains(v.Detail, tc.want):
				t.Fatalf("problem %q, want one with %q", v.Detail, tc.want)
			}
		})
	}
}

func TestBlockCasesOnePerBlock(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range stu3.blockCases() {
		if seen[c.ID] {
			t.Errorf("%s twice", c.ID)
		}
		seen[c.ID] = true
	}
	if len(seen) != len(bgz.Queries()) {
		t.Errorf("%d block cases for %d blocks", len(seen), len(bgz.Queries()))
	}
	if got := blockSlug("HealthProfessional/CareTeam"); got != "health-professional-care-team" {
		t.Errorf("slug %q", got)
	}
}
