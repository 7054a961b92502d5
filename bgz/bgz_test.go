package bgz

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/nl"
)

const testBSN = "999909587" // Nictiz BgZ MSZ test patient A

// SPEC §5 lists 26 searches (one per BgZ block): Patient, Coverage, 2×Consent,
// functional status, Condition, 4 lifestyle Observations, NutritionOrder,
// Flag, AllergyIntolerance, 3 medication resources, DeviceUseStatement,
// Immunization, 4×$lastn, Encounter, Procedure, ProcedureRequest, CareTeam.
const specSearchCount = 26

func TestQueriesCount(t *testing.T) {
	qs := Queries()
	if len(qs) != specSearchCount {
		t.Fatalf("Queries() has %d blocks, SPEC §5 lists %d", len(qs), specSearchCount)
	}
	names := map[string]bool{}
	templates := map[string]bool{}
	codes := map[string]bool{}
	for _, b := range qs {
		if names[b.Name] || templates[b.Template] {
			t.Errorf("duplicate block %q / %q", b.Name, b.Template)
		}
		names[b.Name], templates[b.Template] = true, true
		if b.Code.System != SystemLOINC && b.Code.System != SystemSNOMED || b.Code.Code == "" || b.Code.Display == "" {
			t.Errorf("%s: Task input code %+v is not a complete LOINC/SNOMED coding", b.Name, b.Code)
		}
		codes[b.Code.System+"|"+b.Code.Code] = true
		if !strings.Contains(b.Template, BSNPlaceholder) {
			t.Errorf("%s: template %q has no BSN placeholder", b.Name, b.Template)
		}
	}
	if len(codes) != len(qs) {
		t.Errorf("Task input codes are not unique: %d codes for %d blocks", len(codes), len(qs))
	}
}

// The searches exactly as SPEC §5 writes them, with P and sct expanded.
func TestQueriesMatchSpec(t *testing.T) {
	const p = "patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + testBSN
	const sct = "http://snomed.info/sct|"
	want := []string{
		"Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + testBSN + "&_include=Patient:general-practitioner",
		"Coverage?beneficiary.identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + testBSN + "&_include=Coverage:payor",
		"Consent?" + p + "&category=" + sct + "11291000146105",
		"Consent?" + p + "&category=" + sct + "11341000146107",
		"Observation?" + p + "&category=" + sct + "118228005," + sct + "384821006",
		"Condition?" + p,
		"Observation?" + p + "&code=" + sct + "365508006",
		"Observation?" + p + "&code=" + sct + "228366006",
		"Observation?" + p + "&code=" + sct + "228273003",
		"Observation?" + p + "&code=" + sct + "365980008",
		"NutritionOrder?" + p,
		"Flag?" + p,
		"AllergyIntolerance?" + p,
		"MedicationStatement?" + p + "&category=urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3|6&_include=MedicationStatement:medication",
		"MedicationRequest?" + p + "&category=" + sct + "16076005&_include=MedicationRequest:medication",
		"MedicationDispense?" + p + "&category=" + sct + "422037009&_include=MedicationDispense:medication",
		"DeviceUseStatement?" + p + "&_include=DeviceUseStatement:device",
		"Immunization?" + p + "&status=completed",
		"Observation/$lastn?" + p + "&code=http://loinc.org|85354-9",
		"Observation/$lastn?" + p + "&code=http://loinc.org|29463-7",
		"Observation/$lastn?" + p + "&code=http://loinc.org|8302-2,http://loinc.org|8306-3,http://loinc.org|8308-9",
		"Observation/$lastn?" + p + "&category=" + sct + "49581000146104&_include=Observation:related-target",
		"Encounter?" + p,
		"Procedure?" + p + "&category=" + sct + "387713003," + sct + "258174001&_include=Procedure:based-on",
		"ProcedureRequest?" + p + "&status=active",
		"CareTeam?" + p + "&status=active&_include=CareTeam:participant",
	}
	qs := Queries()
	if len(qs) != len(want) {
		t.Fatalf("got %d queries, want %d", len(qs), len(want))
	}
	for i, b := range qs {
		if got := b.Query(testBSN); got != want[i] {
			t.Errorf("%s:\n got %s\nwant %s", b.Name, got, want[i])
		}
	}
}

func TestQueryRoundTrip(t *testing.T) {
	for _, b := range Queries() {
		t.Run(b.Name, func(t *testing.T) {
			q := b.Query(testBSN)
			typ, op, params, err := ParseQuery(q)
			if err != nil {
				t.Fatalf("ParseQuery(%q): %v", q, err)
			}
			path, raw, _ := strings.Cut(b.Template, "?")
			wantType, wantOp, _ := strings.Cut(path, "/")
			if typ != wantType || op != wantOp {
				t.Errorf("type, op = %q, %q; want %q, %q", typ, op, wantType, wantOp)
			}
			// Every template parameter comes back decoded, BSN filled in.
			n := 0
			for _, pair := range strings.Split(raw, "&") {
				k, v, _ := strings.Cut(pair, "=")
				v = strings.ReplaceAll(v, BSNPlaceholder, testBSN)
				if !contains(params[k], v) {
					t.Errorf("param %s = %q, want it to hold %q", k, params[k], v)
				}
				n++
			}
			if got := countValues(params); got != n {
				t.Errorf("%d parameter values, want %d", got, n)
			}
			if _, ok := params["patient.identifier"]; !ok && typ != "Patient" && typ != "Coverage" {
				t.Errorf("no patient.identifier parameter")
			}
		})
	}
}

// A hostile "BSN" must stay one value and never add parameters.
func TestQueryEscapes(t *testing.T) {
	b := Queries()[5] // Condition
	bsn := "1&_include=*;x=y #+%zz"
	_, _, params, err := ParseQuery(b.Query(bsn))
	if err != nil {
		t.Fatalf("ParseQuery: %v", err)
	}
	if len(params) != 1 {
		t.Fatalf("params = %v, want only patient.identifier", params)
	}
	if got, want := params.Get("patient.identifier"), nl.SystemBSN+"|"+bsn; got != want {
		t.Errorf("patient.identifier = %q, want %q", got, want)
	}
	if _, err := url.ParseQuery(strings.SplitN(b.Query(bsn), "?", 2)[1]); err != nil {
		t.Errorf("url.ParseQuery: %v", err)
	}
}

func TestParseQueryRejects(t *testing.T) {
	for _, q := range []string{
		"",
		"Patient/123",
		"Observation/$everything?code=x",
		"Observation/$lastn/extra?code=x",
		"observation?code=x",
		"http://example.org/fhir/Condition?x=1",
		"Condition?patient.identifier=a;b",
		"Condition?patient.identifier=%zz",
		"Condition?=x",
		"Condition?x=1#frag",
	} {
		if _, _, _, err := ParseQuery(q); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("ParseQuery(%q) error = %v, want ErrInvalidQuery", q, err)
		}
	}
}

func TestParseQueryAccepts(t *testing.T) {
	for _, tt := range []struct{ q, typ, op string }{
		{"Condition", "Condition", ""},
		{"/Condition?patient=1", "Condition", ""},
		{"Observation/%24lastn?code=x", "Observation", "$lastn"},
	} {
		typ, op, _, err := ParseQuery(tt.q)
		if err != nil || typ != tt.typ || op != tt.op {
			t.Errorf("ParseQuery(%q) = %q, %q, %v; want %q, %q", tt.q, typ, op, err, tt.typ, tt.op)
		}
	}
}

func TestNormalize(t *testing.T) {
	const sys = "http://fhir.nl/fhir/NamingSystem/bsn|" + testBSN
	tests := []struct {
		name  string
		a, b  string
		equal bool
	}{
		{"reordered params",
			"MedicationRequest?patient.identifier=" + sys + "&category=http://snomed.info/sct|16076005&_include=MedicationRequest:medication",
			"MedicationRequest?_include=MedicationRequest:medication&category=http://snomed.info/sct|16076005&patient.identifier=" + sys, true},
		{"percent-encoded spelling",
			"Consent?patient.identifier=" + sys + "&category=http://snomed.info/sct|11291000146105",
			"/Consent?category=http%3A%2F%2Fsnomed.info%2Fsct%7C11291000146105&patient.identifier=http%3A%2F%2Ffhir.nl%2Ffhir%2FNamingSystem%2Fbsn%7C" + testBSN, true},
		{"reordered OR alternatives",
			"Observation/$lastn?code=http://loinc.org|8302-2,http://loinc.org|8306-3&patient.identifier=" + sys,
			"Observation/%24lastn?patient.identifier=" + sys + "&code=http://loinc.org|8306-3,http://loinc.org|8302-2", true},
		{"BSN as OID",
			"Condition?patient.identifier=" + sys,
			"Condition?patient.identifier=urn:oid:2.16.840.1.113883.2.4.6.3|" + testBSN, true},
		{"repeated param reordered",
			"Procedure?_include=Procedure:based-on&_include=Procedure:performer",
			"Procedure?_include=Procedure:performer&_include=Procedure:based-on", true},
		{"other patient", "Condition?patient.identifier=" + sys, "Condition?patient.identifier=" + sys + "0", false},
		{"extra param", "Condition?patient.identifier=" + sys, "Condition?patient.identifier=" + sys + "&clinical-status=active", false},
		{"lastn vs search", "Observation?code=http://loinc.org|29463-7", "Observation/$lastn?code=http://loinc.org|29463-7", false},
		{"_sort order matters", "Observation?_sort=date,code", "Observation?_sort=code,date", false},
		{"OR is not AND",
			"Observation?code=http://loinc.org|1,http://loinc.org|2",
			"Observation?code=http://loinc.org|1&code=http://loinc.org|2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			na, err := Normalize(tt.a)
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tt.a, err)
			}
			nb, err := Normalize(tt.b)
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tt.b, err)
			}
			if (na == nb) != tt.equal {
				t.Errorf("equal = %v, want %v\n a: %s\n b: %s", na == nb, tt.equal, na, nb)
			}
		})
	}
}

// Normalize is idempotent and its output parses back to the same values.
func TestNormalizeStable(t *testing.T) {
	for _, b := range Queries() {
		n, err := Normalize(b.Query(testBSN))
		if err != nil {
			t.Fatalf("%s: %v", b.Name, err)
		}
		n2, err := Normalize(n)
		if err != nil || n2 != n {
			t.Errorf("%s: Normalize not idempotent: %q -> %q (%v)", b.Name, n, n2, err)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, b := range Queries() {
		q := b.Query(testBSN)
		got, err := Match(q+"&"+ProvenanceRevinclude, testBSN)
		if err != nil || got.Name != b.Name {
			t.Errorf("Match(%s + revinclude) = %q, %v; want %q", b.Name, got.Name, err, b.Name)
		}
		if _, err := Match(q, "999911259"); !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Match(%s) for another BSN: err = %v, want ErrNotAllowed", b.Name, err)
		}
	}
	if _, err := Match("Condition?patient.identifier="+nl.SystemBSN+"|"+testBSN+"&_revinclude=Provenance:agent", testBSN); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("other _revinclude: err = %v, want ErrNotAllowed", err)
	}
}

func BenchmarkMatch(b *testing.B) {
	q := Queries()[len(blocks)-1].Query(testBSN) // worst case: the last block
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Match(q, testBSN); err != nil {
			b.Fatal(err)
		}
	}
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func countValues(v url.Values) int {
	n := 0
	for _, vs := range v {
		n += len(vs)
	}
	return n
}

func TestPatientBSNAndSearchOf(t *testing.T) {
	for _, tc := range []struct {
		params url.Values
		bsn    string
		ok     bool
	}{
		{url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|999911259"}}, "999911259", true},
		{url.Values{"identifier": {"urn:oid:2.16.840.1.113883.2.4.6.3|999911259"}}, "999911259", true},
		{url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|999911259", "http://fhir.nl/fhir/NamingSystem/bsn|999909587"}}, "", false},
		{url.Values{"patient.identifier": {"http://example.org/mrn|999911259"}}, "", false},
		{url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|123456789"}}, "", false},
		{url.Values{"code": {"x"}}, "", false},
	} {
		if bsn, ok := PatientBSN(tc.params); bsn != tc.bsn || ok != tc.ok {
			t.Errorf("PatientBSN(%v) = %q %v, want %q %v", tc.params, bsn, ok, tc.bsn, tc.ok)
		}
	}
	got := SearchOf("Observation", "$lastn", url.Values{"code": {"a"}, "_count": {"10"}, "_offset": {"20"}})
	if got != "Observation/$lastn?code=a" {
		t.Errorf("SearchOf = %q", got)
	}
}
