package validate_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

func TestResource(t *testing.T) {
	cases := []struct {
		name    string
		version fhir.Version
		body    string
		want    []string // expressions of the issues, in order; none = valid
	}{
		{name: "valid patient", body: `{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2025-01-01T10:00:00.123+01:00"},"active":true,"name":[{"family":"Jansen","given":["Jan",null],"_given":[null,{"extension":[{"url":"http://x","valueCode":"IN"}]}]}],"birthDate":"1970-02-28","multipleBirthInteger":2,"managingOrganization":{"reference":"Organization/o1"},"generalPractitioner":[{"reference":"https://example.org/fhir/Practitioner/1"},{"reference":"urn:uuid:0d2a3e4c-1f45-4b8e-9a3c-6f1d2e3a4b5c"},{"reference":"#c1"}]}`},
		{name: "valid observation with decimals", body: `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50e2},"component":[{"code":{"text":"y"},"valueSampledData":{"origin":{"value":0},"period":0.1,"dimensions":1,"data":"1 2"}}]}`},
		{name: "unknown type", body: `{"resourceType":"Patiënt"}`, want: []string{"resourceType"}},
		{name: "R4-only type in STU3", body: `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}}`, want: []string{"resourceType"}},
		{name: "R4 type in R4", version: fhir.R4, body: `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}}`},
		{name: "no resourceType", body: `{"id":"x"}`, want: []string{""}},
		{name: "unknown element", body: `{"resourceType":"Patient","nickname":"J"}`, want: []string{"Patient.nickname"}},
		{name: "array for a single element", body: `{"resourceType":"Patient","gender":["male"]}`, want: []string{"Patient.gender"}},
		{name: "single for a repeating element", body: `{"resourceType":"Patient","name":{"family":"x"}}`, want: []string{"Patient.name"}},
		{name: "empty array", body: `{"resourceType":"Patient","name":[]}`, want: []string{"Patient.name"}},
		{name: "empty array of a primitive's extensions", body: `{"resourceType":"Organization","address":[{"city":"X","_line":[]}]}`, want: []string{"Organization.address[0]._line"}},
		{name: "empty extensions object", body: `{"resourceType":"Organization","address":[{"city":"X","_line":[{}]}]}`, want: []string{"Organization.address[0]._line[0]"}},
		{name: "null extensions without values", body: `{"resourceType":"Organization","address":[{"city":"X","_line":[null]}]}`, want: []string{"Organization.address[0]._line[0]"}},
		{name: "null", body: `{"resourceType":"Patient","gender":null}`, want: []string{"Patient.gender"}},
		{name: "empty object", body: `{"resourceType":"Patient","maritalStatus":{}}`, want: []string{"Patient.maritalStatus"}},
		{name: "required", body: `{"resourceType":"Observation","extension":[{"valueString":"x"}]}`, want: []string{"Observation.extension[0].url", "Observation.status", "Observation.code"}},
		{name: "required met by extensions only", body: `{"resourceType":"Observation","_status":{"extension":[{"url":"http://x","valueString":"y"}]},"code":{"text":"x"}}`},
		{name: "two choice types", body: `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true}`, want: []string{"Observation.valueString"}},
		{name: "choice type not allowed", body: `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":1}`, want: []string{"Observation.valueInteger"}},
		{name: "extensions on a complex element", body: `{"resourceType":"Patient","_name":[{}]}`, want: []string{"Patient._name"}},
		{name: "misaligned primitive extensions", body: `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[null]}]}`, want: []string{"Patient.name[0]._given"}},
		{name: "contained in contained", body: `{"resourceType":"Patient","contained":[{"resourceType":"Patient","contained":[{"resourceType":"Patient"}]}]}`, want: []string{"Patient.contained[0].contained"}},
		{name: "bundle entries are checked", body: `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","gender":1}}]}`, want: []string{"Bundle.entry[0].resource.gender"}},
		{name: "nesting too deep", body: `{"resourceType":"Patient","extension":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, want: []string{""}},
		{name: "not JSON", body: `{"resourceType":`, want: []string{""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.version
			if v == "" {
				v = fhir.STU3
			}
			issues := validate.Resource(v, json.RawMessage(tc.body))
			var got []string
			for _, is := range issues {
				e := ""
				if len(is.Expression) > 0 {
					e = is.Expression[0]
				}
				got = append(got, e)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("issues at %q, want %q: %+v", got, tc.want, issues)
			}
		})
	}
}

func TestPrimitive(t *testing.T) {
	cases := []struct {
		typ   string
		value any
		ok    bool
	}{
		{"date", "1970", true}, {"date", "1970-02", true}, {"date", "1970-02-28", true},
		{"date", "1970-02-30", false}, {"date", "70-02-28", false}, {"date", "1970-2-28", false},
		{"dateTime", "2025-01-01T10:00:00Z", true}, {"dateTime", "2025-01-01T10:00:00.5+14:00", true},
		{"dateTime", "2025-01-01T10:00:00", false}, {"dateTime", "2025-01-01T10:00Z", false},
		{"instant", "2025-01-01T10:00:00.123Z", true}, {"instant", "2025-01-01", false},
		{"time", "23:59:60", true}, {"time", "24:00:00", false},
		{"integer", json.Number("-12"), true}, {"integer", json.Number("1.0"), false}, {"integer", json.Number("2147483648"), false},
		{"integer", "1", false}, {"positiveInt", json.Number("0"), false}, {"unsignedInt", json.Number("0"), true},
		{"decimal", json.Number("0.10"), true}, {"decimal", json.Number("1e-3"), true}, {"decimal", "1.0", false},
		{"boolean", true, true}, {"boolean", "true", false},
		{"code", "final", true}, {"code", "a b", true}, {"code", " a", false}, {"code", "a  b", false}, {"code", "", false},
		{"id", "abc-1.2", true}, {"id", "a_b", false}, {"id", strings.Repeat("a", 65), false},
		{"uri", "http://x/y", true}, {"uri", "a b", false},
		{"oid", "urn:oid:2.16.840.1", true}, {"oid", "2.16.840", false},
		{"base64Binary", "aGVsbG8=", true}, {"base64Binary", "!!", false},
		{"string", "tab\tand newline\n", true}, {"string", "bell\a", false}, {"string", "", false},
		{"string", "non\uFFFEchar", false}, {"markdown", "\uFFFF", false}, {"string", "U+FFFD \uFFFD and \U0001F600", true},
		{"code", "ma\x01le", false}, {"uri", "http://x/\uFFFE", false},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml">x</div>`, true}, {"xhtml", "x", false},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml"><p class="a" xml:lang="nl">x<br/></p><!-- c --></div>` + "\n", true},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml"><tr.22></tr></div>`, false},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml"><p>x</div>`, false},
		{"xhtml", `<div>x</div>`, false},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml"><svg xmlns="http://www.w3.org/2000/svg"/></div>`, false},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml" xmlns:x="urn:x" x:a="1">x</div>`, false},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml">x</div><div xmlns="http://www.w3.org/1999/xhtml"/>`, false},
		{"xhtml", `<div xmlns="http://www.w3.org/1999/xhtml">&#xFFFE;</div>`, false},
		{"xhtml", "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>\u00a0", false},
	}
	for _, tc := range cases {
		msg := validate.Primitive(tc.typ, tc.value)
		if (msg == "") != tc.ok {
			t.Errorf("%s %#v: %q, want ok=%v", tc.typ, tc.value, msg, tc.ok)
		}
	}
}

func TestSchema(t *testing.T) {
	s := validate.SchemaFor(fhir.R4)
	n := s.Resource("Observation")
	f, typ, ok := n.Lookup("valueQuantity")
	if !ok || typ != "Quantity" || !f.Choice || f.Path != "Observation.value[x]" {
		t.Fatalf("valueQuantity: %+v %s %v", f, typ, ok)
	}
	rr, _, _ := n.Lookup("referenceRange")
	if !rr.Repeats || s.Child(rr, "BackboneElement") == nil {
		t.Fatal("referenceRange is a repeating backbone element")
	}
	q, _, _ := s.Resource("Questionnaire").Lookup("item")
	inner, _, _ := s.Child(q, "BackboneElement").Lookup("item")
	if s.Child(inner, "BackboneElement") != s.Child(q, "BackboneElement") {
		t.Fatal("Questionnaire.item.item does not reuse Questionnaire.item")
	}
	if s.Resource("Quantity") != nil || s.Type("Patient") != nil || validate.SchemaFor("dstu2") != nil {
		t.Fatal("types and resources mixed up")
	}
}

func BenchmarkResource(b *testing.B) {
	body := json.RawMessage(`{"resourceType":"Observation","id":"o1","meta":{"profile":["http://nictiz.nl/fhir/StructureDefinition/zib-BloodPressure"]},"status":"final","category":[{"coding":[{"system":"http://hl7.org/fhir/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2000-01-02","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":119,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":89,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if issues := validate.Resource(fhir.STU3, body); len(issues) > 0 {
			b.Fatal(issues)
		}
	}
}
