package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir/rest"
)

// The embedded BgZ policy must cover every search of a BgZ retrieval, with
// the includes SPEC §5 lets it add, so a plateau-1 referral keeps working.
func TestEmbeddedBgZCoversEveryQuery(t *testing.T) {
	set, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	p := set["bgz"]
	if p == nil || p.Version < 1 || p.File != "embedded:bgz.yaml" {
		t.Fatalf("bgz policy: %+v", p)
	}
	for _, b := range bgz.Queries() {
		for _, q := range []string{b.Query("999999011"), b.Query("999999011") + "&" + bgz.ProvenanceRevinclude} {
			typ, op, params, err := bgz.ParseQuery(q)
			if err != nil {
				t.Fatal(err)
			}
			in := rest.InteractionSearchType
			if op != "" {
				in = rest.InteractionOperation
			}
			r := p.Match(typ, in, op, params)
			if r == nil {
				t.Errorf("%s (%s): no rule", b.Name, q)
				continue
			}
			for k, vs := range params {
				if !strings.HasPrefix(k, "_include") && !strings.HasPrefix(k, "_revinclude") {
					continue
				}
				for _, v := range vs {
					src, _, _ := strings.Cut(v, ":")
					if k == "_revinclude" && !r.Returns(src) {
						t.Errorf("%s: rule %s does not return %s", b.Name, r.ID, src)
					}
				}
			}
		}
	}
	if r := p.Match("Task", rest.InteractionUpdate, "", nil); r == nil || r.ID != "workflow-task" {
		t.Errorf("workflow Task update: %v", r)
	}
}

func TestMatchPrefersSpecificRule(t *testing.T) {
	p, err := Parse("t.yaml", []byte(`version: 1
application: t
fhirVersion: R4
rules:
  - id: any-observation
    type: Observation
    from: 1
    collaboration: ["01.015"]
    guideline: ["01.015"]
    protocol: ["01.015"]
  - id: vitals
    type: Observation
    params: {category: "b,a"}
    from: 3
    guideline: ["01.016"]
    protocol: ["01.016"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Match("Observation", "search-type", "", map[string][]string{"category": {"a,b"}}); r == nil || r.ID != "vitals" {
		t.Fatalf("got %v, want vitals (alternatives in any order)", r)
	}
	if r := p.Match("Observation", "search-type", "", map[string][]string{"code": {"x"}}); r == nil || r.ID != "any-observation" {
		t.Fatalf("got %v", r)
	}
	if r := p.Match("Observation", "read", "", nil); r != nil {
		t.Fatalf("read matched %s", r.ID)
	}
	r := p.Match("Observation", "search-type", "", map[string][]string{"category": {"a,b"}})
	if !r.Allows(4, "01.016") || r.Allows(4, "01.015") || r.Allows(1, "01.016") || r.Roles(2) != nil && len(r.Roles(2)) != 0 {
		t.Fatalf("roles of vitals: 3=%v 4=%v", r.Roles(3), r.Roles(4))
	}
}

func TestParseErrors(t *testing.T) {
	const head = "version: 2\napplication: bgz\nfhirVersion: STU3\n"
	const ok = "    from: 1\n    collaboration: [\"01.015\"]\n    guideline: [\"01.015\"]\n    protocol: [\"01.015\"]\n"
	cases := []struct {
		name, file string
		want       []string
	}{
		{"not yaml", "version: [", []string{"bgz.yaml"}},
		{"no version", "application: bgz\nfhirVersion: STU3\nrules:\n  - id: a\n    type: Condition\n" + ok, []string{"version is required"}},
		{"bad fhir version", "version: 1\napplication: bgz\nfhirVersion: DSTU2\nrules:\n  - id: a\n    type: Condition\n" + ok, []string{`bgz.yaml:3: fhirVersion "DSTU2"`}},
		{"unknown key", head + "colour: red\nrules:\n  - id: a\n    type: Condition\n" + ok, []string{`bgz.yaml:4: unknown key "colour"`}},
		{"unknown resource type", head + "rules:\n  - id: a\n    type: Conditoin\n" + ok, []string{`bgz.yaml:6: rule "a": "Conditoin" is not a FHIR stu3 resource type`}},
		{"R4-only type in STU3", head + "rules:\n  - id: a\n    type: Condition\n    include: [MedicationKnowledge]\n" + ok, []string{`bgz.yaml:7: rule "a": include "MedicationKnowledge"`}},
		{"bad role code", head + "rules:\n  - id: a\n    type: Condition\n    from: 2\n    collaboration: [\"1.15\"]\n    guideline: [\"01.015\"]\n    protocol: [\"01.015\"]\n",
			[]string{`bgz.yaml:8: rule "a": "1.15" is not an UZI role code`}},
		{"unknown role group", head + "rules:\n  - id: a\n    type: Condition\n    from: 3\n    guideline: [doctors]\n    protocol: [\"01.015\"]\n",
			[]string{`bgz.yaml:8: rule "a": "doctors" is neither`}},
		{"code not on the UZI list", head + "rules:\n  - id: a\n    type: Condition\n    from: 3\n    guideline: [\"01.015\", \"01.099\"]\n    protocol: [\"01.015\"]\n",
			[]string{`bgz.yaml:8: rule "a": "01.099" is not on the UZI role code list`}},
		{"withdrawn code", head + "roles:\n  nurses: [\"30.000\",\n    \"30.066\"]\nrules:\n  - id: a\n    type: Condition\n" + ok,
			[]string{`bgz.yaml:6: role group "nurses": 30.066 (Verpl. spec. acute zorg bij som. aandoeningen) was withdrawn by the UZI register on 2021-01-01`}},
		{"group names an undefined group", head + "roles:\n  care: [nurses]\nrules:\n  - id: a\n    type: Condition\n" + ok,
			[]string{`bgz.yaml:5: role group "care": "nurses" is neither an UZI role code nor a role group defined above it`}},
		{"bad code behind an alias", head + "rules:\n  - id: a\n    type: Condition\n    from: 3\n    guideline: &g [\"01.015\", \"01.099\"]\n    protocol: *g\n",
			[]string{`bgz.yaml:8: rule "a": "01.099" is not on the UZI role code list`}},
		{"group is not a list", head + "roles:\n  nurses: \"30.000\"\nrules:\n  - id: a\n    type: Condition\n" + ok, []string{`bgz.yaml:5: role group "nurses" must list role codes`}},
		{"bad code in group", head + "roles:\n  nurses: [\"30-000\"]\nrules:\n  - id: a\n    type: Condition\n" + ok, []string{`bgz.yaml:5: role group "nurses": "30-000"`}},
		{"duplicate rule id", head + "rules:\n  - id: a\n    type: Condition\n" + ok + "  - id: a\n    type: Flag\n" + ok, []string{`bgz.yaml:11: rule id "a" is already used on line 5`}},
		{"duplicate rule", head + "rules:\n  - id: a\n    type: Condition\n" + ok + "  - id: b\n    type: Condition\n" + ok, []string{`bgz.yaml:11: rule "b" duplicates the rule on line 5`}},
		{"missing plateau roles", head + "rules:\n  - id: a\n    type: Condition\n    from: 2\n    collaboration: [\"01.015\"]\n", []string{"needs guideline", "needs protocol"}},
		{"unused plateau roles", head + "rules:\n  - id: a\n    type: Condition\n    from: 3\n    collaboration: [\"01.015\"]\n    guideline: [\"01.015\"]\n    protocol: [\"01.015\"]\n",
			[]string{`bgz.yaml:8: rule "a" applies from plateau 3; collaboration (plateau 2) would never be used`}},
		{"from out of range", head + "rules:\n  - id: a\n    type: Condition\n    from: 5\n", []string{"from must be a plateau 1–4"}},
		{"operation without interaction", head + "rules:\n  - id: a\n    type: Observation\n    operation: $lastn\n" + ok, []string{"needs interaction"}},
		{"unknown interaction", head + "rules:\n  - id: a\n    type: Condition\n    interactions: [patch]\n" + ok, []string{`unknown interaction "patch"`}},
		{"no rules", head, []string{"rules must be a non-empty list"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bgz.yaml", []byte(tc.file))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// A role group may be built from groups above it, and a YAML alias stands
// for the list it names.
func TestRoleGroupsNestAndAliasesResolve(t *testing.T) {
	p, err := Parse("t.yaml", []byte(`version: 1
application: t
fhirVersion: STU3
roles:
  nurses: ["30.000"]
  pharmacists: ["17.000", "17.075"]
  care: [nurses, pharmacists, "01.015"]
rules:
  - id: a
    type: Condition
    from: 2
    collaboration: &all [care]
    guideline: *all
    protocol: [nurses]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules[0]
	if got := strings.Join(r.Roles(3), " "); got != "01.015 17.000 17.075 30.000" {
		t.Errorf("guideline roles %q", got)
	}
	if r.Allows(4, "17.075") || !r.Allows(4, "30.000") {
		t.Errorf("protocol roles %v", r.Roles(4))
	}
}

func TestLoadOverrideDirectory(t *testing.T) {
	dir := t.TempDir()
	custom := "version: 9\napplication: bgz\nfhirVersion: STU3\nrules:\n  - id: problems\n    type: Condition\n    from: 4\n    protocol: [\"01.015\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "bgz.yaml"), []byte(custom), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p := set["bgz"]; p.Version != 9 || !strings.HasPrefix(p.File, dir) {
		t.Fatalf("override not used: %s v%d", p.File, p.Version)
	}

	if err := os.WriteFile(filepath.Join(dir, "imaging.yaml"), []byte(strings.Replace(custom, "application: bgz", "application: bgz", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "must match the file name") {
		t.Fatalf("file name mismatch: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing directory accepted")
	}
}

// The embedded BgZ tables, block by block: who may see what at the
// collaboration's (2), the guideline's (3) and the protocol's (4) plateau.
func TestEmbeddedBgZRoleTables(t *testing.T) {
	set, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]*Rule{}
	for _, r := range set["bgz"].Rules {
		rules[r.ID] = r
	}
	cases := []struct {
		rule    string
		plateau int
		role    string
		allowed bool
	}{
		{"medication-use", 3, "17.075", true},  // openbaar apotheker: Medicatieveiligheid
		{"medication-use", 3, "04.000", false}, // fysiotherapeut
		{"medication-use", 4, "30.000", true},  // the nurse who administers (addendum)
		{"dispenses", 3, "30.000", true},
		{"dispenses", 4, "30.000", false}, // at 4: prescribers and pharmacists
		{"dispenses", 4, "17.060", true},
		{"alerts", 4, "91.000", true}, // every treating role, the speech therapist too
		{"allergies", 4, "80.000", true},
		{"drug-use", 3, "30.000", true},
		{"drug-use", 4, "30.000", false}, // sensitive: only who diagnoses and prescribes
		{"drug-use", 4, "30.076", true},
		{"laboratory-results", 4, "17.075", true}, // dosing on renal function
		{"laboratory-results", 4, "89.000", false},
		{"treatment-directive", 4, "80.000", true}, // the ambulance acts on it
		{"patient", 2, "01.008", false},            // bedrijfsarts: no access (Acute Zorg guideline)
		{"patient", 3, "01.048", false},            // verzekeringsarts
		{"patient", 2, "01.015", true},
		{"problems", 4, "01.055", false}, // public health does not treat
		{"vaccinations", 4, "01.070", true},
		{"nutrition-advice", 4, "89.000", true},
		{"workflow-task", 4, "83.000", false}, // apothekersassistent acts under the pharmacist's role
	}
	for _, tc := range cases {
		r := rules[tc.rule]
		if r == nil {
			t.Fatalf("no rule %s", tc.rule)
		}
		if got := r.Allows(tc.plateau, tc.role); got != tc.allowed {
			t.Errorf("%s at plateau %d for %s: allowed %t, want %t", tc.rule, tc.plateau, tc.role, got, tc.allowed)
		}
	}

	// Every physician the register knows is either in a group or left out
	// on purpose, so a new specialism cannot silently lose the BgZ.
	excluded := map[string]bool{"01.008": true, "01.048": true}
	for _, rc := range RoleCodes() {
		if rc.Parent != "01.000" && rc.Code != "01.000" || !rc.Active() {
			continue
		}
		if got := rules["patient"].Allows(3, rc.Code); got == excluded[rc.Code] {
			t.Errorf("physician role %s (%s): patient at plateau 3 allowed %t", rc.Code, rc.Display, got)
		}
	}
	// The protocol never allows more than the guideline.
	for _, r := range set["bgz"].Rules {
		for _, role := range r.Roles(4) {
			if !r.Allows(3, role) {
				t.Errorf("%s: role %s allowed by the protocol but not by the guideline", r.ID, role)
			}
		}
	}
}
