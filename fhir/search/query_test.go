package search

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
)

var stu3 = spec.For(fhir.STU3)

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func TestParseClauses(t *testing.T) {
	for _, tc := range []struct {
		typ, query string
		want       Clause // Param and Name are not compared
	}{
		{"Patient", "identifier=http://fhir.nl/fhir/NamingSystem/bsn|999909587",
			Clause{Code: "identifier", Type: spec.Token, Values: []Value{{System: "http://fhir.nl/fhir/NamingSystem/bsn", HasSystem: true, Code: "999909587"}}}},
		// The BSN OID is canonicalised to its URI.
		{"Patient", "identifier=urn:oid:2.16.840.1.113883.2.4.6.3|1",
			Clause{Code: "identifier", Type: spec.Token, Values: []Value{{System: "http://fhir.nl/fhir/NamingSystem/bsn", HasSystem: true, Code: "1"}}}},
		{"Patient", "identifier=|1", Clause{Code: "identifier", Type: spec.Token, Values: []Value{{HasSystem: true, Code: "1"}}}},
		{"Patient", "identifier=s|", Clause{Code: "identifier", Type: spec.Token, Values: []Value{{HasSystem: true, System: "s"}}}},
		{"Patient", `identifier=a\|b|c\,d,e`, Clause{Code: "identifier", Type: spec.Token, Values: []Value{
			{HasSystem: true, System: "a|b", Code: "c,d"}, {Code: "e"}}}},
		{"Immunization", "status:not=completed", Clause{Code: "status", Type: spec.Token, Modifier: "not", Values: []Value{{Code: "completed"}}}},
		{"Observation", "code:text=Bloed Drúk", Clause{Code: "code", Type: spec.Token, Modifier: "text", Values: []Value{{Str: "bloed druk"}}}},
		{"Observation", "subject=Patient/p1", Clause{Code: "subject", Type: spec.Reference, Values: []Value{{RefType: "Patient", RefID: "p1"}}}},
		{"Observation", "subject:Patient=p1", Clause{Code: "subject", Type: spec.Reference, Modifier: "Patient", Values: []Value{{RefType: "Patient", RefID: "p1"}}}},
		{"Observation", "subject=https://x.example/fhir/Patient/p1/_history/2", Clause{Code: "subject", Type: spec.Reference, Values: []Value{{RefType: "Patient", RefID: "p1"}}}},
		{"Observation", "patient=p1", Clause{Code: "patient", Type: spec.Reference, Values: []Value{{RefID: "p1"}}}},
		{"Observation", "date=2020", Clause{Code: "date", Type: spec.Date, Values: []Value{{Prefix: Eq, Low: ms("2020-01-01T00:00:00Z"), High: ms("2021-01-01T00:00:00Z") - 1}}}},
		{"Observation", "date=ge2020-02-03T10:00:00+01:00", Clause{Code: "date", Type: spec.Date, Values: []Value{{Prefix: Ge, Low: ms("2020-02-03T09:00:00Z"), High: ms("2020-02-03T09:00:01Z") - 1}}}},
		{"Observation", "date=lt2020-02-03T10:00", Clause{Code: "date", Type: spec.Date, Values: []Value{{Prefix: Lt, Low: ms("2020-02-03T10:00:00Z"), High: ms("2020-02-03T10:01:00Z") - 1}}}},
		{"Patient", "family=  De  Vries ", Clause{Code: "family", Type: spec.String, Values: []Value{{Str: "de vries"}}}},
		{"Patient", "family:exact=De Vries", Clause{Code: "family", Type: spec.String, Modifier: "exact", Values: []Value{{Str: "De Vries"}}}},
		{"Patient", "name:contains=ÉMI", Clause{Code: "name", Type: spec.String, Modifier: "contains", Values: []Value{{Str: "emi"}}}},
		{"Observation", "value-quantity=gt5.4|http://unitsofmeasure.org|mg", Clause{Code: "value-quantity", Type: spec.Quantity, Values: []Value{
			{Prefix: Gt, Num: 5.4, NumLow: 5.35, NumHigh: 5.45, System: "http://unitsofmeasure.org", Code: "mg"}}}},
		{"Observation", "value-quantity=100||kg", Clause{Code: "value-quantity", Type: spec.Quantity, Values: []Value{{Prefix: Eq, Num: 100, NumLow: 99.5, NumHigh: 100.5, Code: "kg"}}}},
		{"Observation", "value-quantity=ap100", Clause{Code: "value-quantity", Type: spec.Quantity, Values: []Value{{Prefix: Ap, Num: 100, NumLow: 90, NumHigh: 110}}}},
		{"Observation", "value-quantity=1e2", Clause{Code: "value-quantity", Type: spec.Quantity, Values: []Value{{Prefix: Eq, Num: 100, NumLow: 100, NumHigh: 100}}}},
		{"Patient", "_id=a,b", Clause{Code: ParamID, Type: spec.Token, Values: []Value{{Code: "a"}, {Code: "b"}}}},
		{"Patient", "_lastUpdated=le2020", Clause{Code: ParamLastUpdated, Type: spec.Date, Values: []Value{{Prefix: Le, Low: ms("2020-01-01T00:00:00Z"), High: ms("2021-01-01T00:00:00Z") - 1}}}},
		{"Patient", "gender:missing=true", Clause{Code: "gender", Type: spec.Token, Modifier: "missing", Missing: true}},
		{"Patient", "_profile:below=http://nictiz.nl/", Clause{Code: "_profile", Type: spec.URI, Modifier: "below", Values: []Value{{Str: "http://nictiz.nl/"}}}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			params, err := url.ParseQuery(strings.ReplaceAll(tc.query, "+", "%2B"))
			if err != nil {
				t.Fatal(err)
			}
			q, err := Parse(stu3, tc.typ, params, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(q.Clauses) != 1 {
				t.Fatalf("%d clauses", len(q.Clauses))
			}
			got := q.Clauses[0]
			if got.Code != ParamID && got.Code != ParamLastUpdated && (got.Param == nil || got.Param.Code != got.Code) {
				t.Errorf("param %+v for code %s", got.Param, got.Code)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Clause{}, "Param", "Name"), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
				t.Errorf("clause (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseChain(t *testing.T) {
	params := url.Values{"patient.identifier": {"http://fhir.nl/fhir/NamingSystem/bsn|1"}, "subject:Patient.name": {"x"}}
	q, err := Parse(stu3, "Observation", params, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Clauses) != 2 {
		t.Fatalf("clauses %+v", q.Clauses)
	}
	// Sorted by key: patient.identifier, subject:Patient.name.
	// Observation.patient may point to a Patient or a Group (STU3).
	c := q.Clauses[0]
	if c.Code != "patient" || len(c.Chain) != 2 || c.Chain[0].Type != "Patient" || c.Chain[0].Clause.Code != "identifier" ||
		c.Chain[0].Clause.Values[0].Code != "1" || c.Chain[1].Type != "Group" {
		t.Errorf("patient.identifier: %+v", c)
	}
	c = q.Clauses[1]
	if c.Code != "subject" || c.Modifier != "" || len(c.Chain) != 1 || c.Chain[0].Type != "Patient" || c.Chain[0].Clause.Values[0].Str != "x" {
		t.Errorf("subject:Patient.name: %+v", c)
	}
	// subject.identifier chains to every target type that has identifier.
	q, err = Parse(stu3, "Observation", url.Values{"subject.identifier": {"1"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ch := range q.Clauses[0].Chain {
		types = append(types, ch.Type)
	}
	if !slices.Contains(types, "Patient") || !slices.Contains(types, "Group") || len(types) < 3 {
		t.Errorf("subject.identifier targets %v", types)
	}
	// Depth is bounded.
	_, err = Parse(stu3, "Observation", url.Values{"subject:Patient.general-practitioner:Organization.partof.partof.name": {"x"}}, true)
	if !errors.Is(err, store.ErrInvalidSearch) || !strings.Contains(err.Error(), "chain too long") {
		t.Errorf("deep chain: %v", err)
	}
}

func TestParseResultParameters(t *testing.T) {
	params, _ := url.ParseQuery("_count=2000&_offset=10&_sort=-date,_id&_include=Observation:subject:Patient&_revinclude=Provenance:target&_summary=count&_format=json")
	q, err := Parse(stu3, "Observation", params, true)
	if err != nil {
		t.Fatal(err)
	}
	if q.Count != MaxCount || q.Offset != 10 || !q.SummaryCount || len(q.Clauses) != 0 {
		t.Errorf("query %+v", q)
	}
	if len(q.Sort) != 2 || q.Sort[0].Code != "date" || !q.Sort[0].Desc || q.Sort[0].Type != spec.Date || q.Sort[1].Code != ParamID || q.Sort[1].Desc {
		t.Errorf("sort %+v", q.Sort)
	}
	if len(q.Includes) != 1 || q.Includes[0].Source != "Observation" || q.Includes[0].Param.Code != "subject" || q.Includes[0].Target != "Patient" {
		t.Errorf("includes %+v", q.Includes)
	}
	if len(q.RevIncludes) != 1 || q.RevIncludes[0].Source != "Provenance" || q.RevIncludes[0].Param.Code != "target" {
		t.Errorf("revincludes %+v", q.RevIncludes)
	}
	q, err = Parse(stu3, "Patient", nil, true)
	if err != nil || q.Count != DefaultCount || q.Offset != 0 {
		t.Errorf("defaults: %v %+v", err, q)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		typ, query string
		unknown    bool
	}{
		{"Patient", "foo=bar", true},
		{"Patient", "birthdate=2020-13", false},
		{"Patient", "birthdate=2020-01-01T25:00", false},
		{"Patient", "birthdate=", false},
		{"Patient", "identifier=", false},
		{"Patient", "identifier=|", false},
		{"Patient", "identifier:exact=1", false},
		{"Patient", "family:below=x", false},
		{"Patient", "gender:missing=maybe", false},
		{"Patient", "family.identifier=1", false},
		{"Patient", "general-practitioner.missing:missing=true", false},
		{"Patient", "general-practitioner:Nope.name=x", false},
		{"Patient", "general-practitioner.nope=x", false},
		{"Observation", "subject=Patient/", false},
		{"Observation", "subject:Patient=Group/g", false},
		{"Observation", "value-quantity=abc", false},
		{"Observation", "value-quantity=NaN", false},
		{"Observation", "value-quantity=lt", false},
		{"RiskAssessment", "probability=0.5|x", false},
		{"Patient", "_count=-1", false},
		{"Patient", "_offset=x", false},
		{"Patient", "_sort=nope", false},
		{"Patient", "_sort=general-practitioner", false},
		{"Patient", "_include=Patient", false},
		{"Patient", "_include=Patient:name", false},
		{"Patient", "_include=Observation:subject", false},
		{"Patient", "_include=Patient:general-practitioner:Nope", false},
		{"Patient", "_revinclude=Nope:subject", false},
		{"Patient", "birthdate=notadate", false},
		{"Patient", "birthdate=1970-13-45", false},
		{"Patient", "birthdate=xx1970", false},
		{"Patient", "identifier:foo=1", false},
		{"Patient", "_count=abc", false},
		{"Patient", "_count:x=1", false},
		{"Patient", "_count=1&_count=2", false},
		{"Patient", "_sort=nonsense", false},
		{"Patient", "_sort=-", false},
		{"Patient", "_include:iterate=Patient:general-practitioner", false},
		{"Patient", "_summary=everything", false},
		{"Patient", "_total=lots", false},
		{"Patient", "_contained=true", false},
		{"Patient", "_containedType=contained", false},
		{"Patient", "_pretty=yes", false},
		{"Patient", "_id=a|b", false},
		{"Patient", "_id=not an id", false},
		{"Patient", "_id:missing=true", false},
		{"Patient", "_lastUpdated=yesterday", false},
		{"Patient", "_lastUpdated:missing=false", false},
		{"Observation", "value-quantity=xx5", false},
		{"Observation", "code-value-quantity=x", true},
		{"Patient", "_has:Observation:patient:code=1", true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			params, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(stu3, tc.typ, params, true)
			var pe *ParamError
			if !errors.As(err, &pe) || !errors.Is(err, store.ErrInvalidSearch) {
				t.Fatalf("strict: got %v, want a ParamError", err)
			}
			key, _, _ := strings.Cut(tc.query, "=")
			if pe.Param != key || pe.Unknown != tc.unknown {
				t.Errorf("error %+v, want param %q unknown %v", pe, key, tc.unknown)
			}
			// Lenient mode skips unknown parameters only: skipping a
			// malformed value of a known one would widen the result.
			q, err := Parse(stu3, tc.typ, params, false)
			if tc.unknown {
				if err != nil || !slices.Equal(q.Ignored, []string{key}) || len(q.Clauses) != 0 {
					t.Fatalf("lenient: %v %+v", err, q)
				}
				return
			}
			if !errors.As(err, &pe) || pe.Param != key {
				t.Fatalf("lenient: got %v, want a ParamError naming %s", err, key)
			}
		})
	}
	if _, err := Parse(stu3, "ServiceRequest", nil, false); !errors.Is(err, store.ErrInvalidSearch) {
		t.Errorf("R4-only type on STU3: %v", err)
	}
}

func TestParseDateRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi string // RFC 3339; hi exclusive
		bad    bool
	}{
		{in: "2020", lo: "2020-01-01T00:00:00Z", hi: "2021-01-01T00:00:00Z"},
		{in: "2020-02", lo: "2020-02-01T00:00:00Z", hi: "2020-03-01T00:00:00Z"},
		{in: "2020-02-29", lo: "2020-02-29T00:00:00Z", hi: "2020-03-01T00:00:00Z"},
		{in: "2020-02-29T10:11", lo: "2020-02-29T10:11:00Z", hi: "2020-02-29T10:12:00Z"},
		{in: "2020-02-29T10:11:12+02:00", lo: "2020-02-29T08:11:12Z", hi: "2020-02-29T08:11:13Z"},
		{in: "2020-02-29T10:11:12.5Z", lo: "2020-02-29T10:11:12.5Z", hi: "2020-02-29T10:11:12.501Z"},
		{in: "2020-02-29T10:11:12.123456-01:00", lo: "2020-02-29T11:11:12.123Z", hi: "2020-02-29T11:11:12.124Z"},
		{in: "2021-02-29", bad: true},
		{in: "20", bad: true},
		{in: "2020-1-1", bad: true},
		{in: "2020-01-01T10", bad: true},
		{in: "2020-01-01T10:00:00+25:00", bad: true},
		{in: "yesterday", bad: true},
	} {
		lo, hi, err := ParseDateRange(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: accepted", tc.in)
			}
			continue
		}
		if err != nil || lo != ms(tc.lo) || hi != ms(tc.hi)-1 {
			t.Errorf("%s: [%d, %d] %v, want [%d, %d]", tc.in, lo, hi, err, ms(tc.lo), ms(tc.hi)-1)
		}
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"Émile":            "emile",
		"  De   VRIES\t":   "de vries",
		"Ångström Ñoño":    "angstrom nono",
		"":                 "",
		"straße":           "straße",
		"Zoë-Saldaña O'Ré": "zoe-saldana o're",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in, typ, id string
		ok          bool
	}{
		{"Patient/p1", "Patient", "p1", true},
		{"https://x.example/fhir/Patient/p1", "Patient", "p1", true},
		{"Patient/p1/_history/3", "Patient", "p1", true},
		{"Patient/p1/", "Patient", "p1", true},
		{"#contained", "", "", false},
		{"urn:uuid:1234", "", "", false},
		{"p1", "", "", false},
		{"patient/p1", "", "", false},
		{"Patient/", "", "", false},
		{"", "", "", false},
	} {
		typ, id, ok := ParseReference(tc.in)
		if typ != tc.typ || id != tc.id || ok != tc.ok {
			t.Errorf("ParseReference(%q) = %q, %q, %v", tc.in, typ, id, ok)
		}
	}
}

// TestNormalizeASCII checks the ASCII shortcut of Normalize against the
// full transformation for every ASCII character.
func TestNormalizeASCII(t *testing.T) {
	full := func(s string) string {
		tr := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
		out, _, _ := transform.String(tr, s)
		return strings.Join(strings.Fields(strings.ToLower(out)), " ")
	}
	var all strings.Builder
	for c := range 128 {
		all.WriteByte(byte(c))
		all.WriteString(" x")
	}
	for _, in := range []string{all.String(), "ABC def\t\nGHI", "  a  "} {
		if got, want := Normalize(in), full(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
