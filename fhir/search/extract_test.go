package search

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func tokensOf(ix Index, param string) []TokenValue {
	var out []TokenValue
	for _, v := range ix.Tokens {
		if v.Param == param {
			out = append(out, v)
		}
	}
	return out
}

func TestExtractTokens(t *testing.T) {
	ix := Extract(stu3, "Patient", decode(t, `{"resourceType":"Patient",
		"identifier":[{"system":"urn:oid:2.16.840.1.113883.2.4.6.3","value":"999909587","type":{"text":"BSN"}},{"system":"x"}],
		"active":true,"gender":"female",
		"telecom":[{"system":"email","value":"a@b.nl"},{"system":"phone","value":"0612345678"}]}`))
	if got := tokensOf(ix, "identifier"); !slices.Equal(got, []TokenValue{{Param: "identifier", System: "http://fhir.nl/fhir/NamingSystem/bsn", Code: "999909587", Text: "bsn"}}) {
		t.Errorf("identifier %+v", got)
	}
	if got := tokensOf(ix, "active"); !slices.Equal(got, []TokenValue{{Param: "active", Code: "true"}}) {
		t.Errorf("active %+v", got)
	}
	if got := tokensOf(ix, "gender"); !slices.Equal(got, []TokenValue{{Param: "gender", Code: "female"}}) {
		t.Errorf("gender %+v", got)
	}
	// email is telecom.where(system='email').
	if got := tokensOf(ix, "email"); !slices.Equal(got, []TokenValue{{Param: "email", Code: "a@b.nl"}}) {
		t.Errorf("email %+v", got)
	}
	if got := tokensOf(ix, "phone"); !slices.Equal(got, []TokenValue{{Param: "phone", Code: "0612345678"}}) {
		t.Errorf("phone %+v", got)
	}

	ix = Extract(stu3, "Observation", decode(t, `{"resourceType":"Observation",
		"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure"},{"code":"bp"}],"text":"Bloeddruk"},
		"category":[{"text":"only text"}]}`))
	want := []TokenValue{
		{Param: "code", System: "http://loinc.org", Code: "85354-9", Text: "bloeddruk blood pressure"},
		{Param: "code", Code: "bp", Text: "bloeddruk"},
	}
	if got := tokensOf(ix, "code"); !slices.Equal(got, want) {
		t.Errorf("code %+v", got)
	}
	if got := tokensOf(ix, "category"); !slices.Equal(got, []TokenValue{{Param: "category", Text: "only text"}}) {
		t.Errorf("category %+v", got)
	}
}

func TestExtractMedicationDispenseCategory(t *testing.T) {
	// category on MedicationDispense comes from the Nictiz extra definitions.
	ix := Extract(stu3, "MedicationDispense", decode(t, `{"resourceType":"MedicationDispense",
		"category":{"coding":[{"system":"http://snomed.info/sct","code":"422037009"}]}}`))
	if got := tokensOf(ix, "category"); len(got) != 1 || got[0].Code != "422037009" {
		t.Errorf("category %+v", got)
	}
}

func TestExtractReferences(t *testing.T) {
	ix := Extract(stu3, "Observation", decode(t, `{"resourceType":"Observation",
		"subject":{"reference":"https://x.example/fhir/Patient/p1"},
		"performer":[{"reference":"Practitioner/pr1/_history/2"},{"reference":"#c"},{"display":"no reference"},{"reference":"Nope/1"}],
		"related":[{"target":{"reference":"Observation/o2"}}]}`))
	var got []RefValue
	for _, r := range ix.Refs {
		got = append(got, r)
	}
	want := []RefValue{
		{Param: "patient", Type: "Patient", ID: "p1", URL: "https://x.example/fhir/Patient/p1"},
		{Param: "performer", Type: "Practitioner", ID: "pr1"},
		{Param: "related-target", Type: "Observation", ID: "o2"},
		{Param: "subject", Type: "Patient", ID: "p1", URL: "https://x.example/fhir/Patient/p1"},
	}
	slices.SortFunc(got, func(a, b RefValue) int {
		if a.Param < b.Param {
			return -1
		}
		if a.Param > b.Param {
			return 1
		}
		return 0
	})
	if !slices.Equal(got, want) {
		t.Errorf("refs\n got %+v\nwant %+v", got, want)
	}
	// R4 writes patient as subject.where(resolve() is Patient): a Group
	// subject is no patient there (STU3 indexes any subject).
	ix = Extract(spec.For(fhir.R4), "Observation", decode(t, `{"resourceType":"Observation","subject":{"reference":"Group/g"}}`))
	for _, r := range ix.Refs {
		if r.Param == "patient" {
			t.Errorf("group indexed as patient: %+v", r)
		}
	}
}

func TestExtractDates(t *testing.T) {
	for _, tc := range []struct {
		typ, body string
		param     string
		want      []DateValue
	}{
		{"Observation", `{"effectiveDateTime":"2021-06-01"}`, "date",
			[]DateValue{{"date", ms("2021-06-01T00:00:00Z"), ms("2021-06-02T00:00:00Z") - 1}}},
		{"Observation", `{"effectivePeriod":{"start":"2019-05-01","end":"2019-05-02"}}`, "date",
			[]DateValue{{"date", ms("2019-05-01T00:00:00Z"), ms("2019-05-03T00:00:00Z") - 1}}},
		{"Procedure", `{"performedPeriod":{"start":"2018-02-01"}}`, "date",
			[]DateValue{{"date", ms("2018-02-01T00:00:00Z"), math.MaxInt64}}},
		{"Procedure", `{"performedPeriod":{"end":"2018"}}`, "date",
			[]DateValue{{"date", math.MinInt64, ms("2019-01-01T00:00:00Z") - 1}}},
		{"Patient", `{"birthDate":"1970-03-15"}`, "birthdate",
			[]DateValue{{"birthdate", ms("1970-03-15T00:00:00Z"), ms("1970-03-16T00:00:00Z") - 1}}},
		{"Patient", `{"birthDate":"not a date"}`, "birthdate", nil},
		{"Observation", `{"effectivePeriod":{}}`, "date", nil},
		{"MedicationRequest", `{"dosageInstruction":[{"timing":{"event":["2020-01-01"],"repeat":{"boundsPeriod":{"start":"2020-02-01","end":"2020-02-01"}}}}]}`, "",
			nil},
	} {
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader([]byte(tc.body)))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		ix := Extract(stu3, tc.typ, doc)
		var got []DateValue
		for _, d := range ix.Dates {
			if d.Param == tc.param {
				got = append(got, d)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %+v, want %+v", tc.typ, tc.body, got, tc.want)
		}
	}
}

func TestExtractStringsQuantitiesURIs(t *testing.T) {
	ix := Extract(stu3, "Patient", decode(t, `{"resourceType":"Patient","meta":{"profile":["http://fhir.nl/fhir/StructureDefinition/nl-core-patient"]},
		"name":[{"family":"Jansen","given":["Émile","Jan"],"prefix":["dr."]}],
		"address":[{"line":["Straat 1"],"city":"Utrecht","postalCode":"3511 AB"}]}`))
	var names, families, cities []string
	for _, s := range ix.Strings {
		switch s.Param {
		case "name":
			names = append(names, s.Norm)
		case "family":
			families = append(families, s.Raw)
		case "address-city":
			cities = append(cities, s.Norm)
		}
	}
	if !slices.Equal(names, []string{"jansen", "emile", "jan", "dr."}) || !slices.Equal(families, []string{"Jansen"}) || !slices.Equal(cities, []string{"utrecht"}) {
		t.Errorf("names %v families %v cities %v", names, families, cities)
	}
	if len(ix.URIs) != 1 || ix.URIs[0] != (URIValue{Param: "_profile", URI: "http://fhir.nl/fhir/StructureDefinition/nl-core-patient"}) {
		t.Errorf("uris %+v", ix.URIs)
	}

	ix = Extract(stu3, "Observation", decode(t, `{"resourceType":"Observation","valueQuantity":{"value":72.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"},
		"component":[{"valueQuantity":{"value":"not a number"}}]}`))
	var qs []QuantityValue
	for _, q := range ix.Quantities {
		if q.Param == "value-quantity" {
			qs = append(qs, q)
		}
	}
	if !slices.Equal(qs, []QuantityValue{{Param: "value-quantity", Value: 72.5, System: "http://unitsofmeasure.org", Code: "kg", Unit: "kg"}}) {
		t.Errorf("quantities %+v", qs)
	}

	ix = Extract(stu3, "RiskAssessment", decode(t, `{"resourceType":"RiskAssessment","prediction":[{"probabilityDecimal":0.25}]}`))
	if !slices.Equal(ix.Numbers, []NumberValue{{Param: "probability", Value: 0.25}}) {
		t.Errorf("numbers %+v", ix.Numbers)
	}
}

// Every search parameter of every type extracts without panicking from a
// resource where every element holds a value of the wrong shape.
func TestExtractWrongShapes(t *testing.T) {
	for _, v := range []fhir.Version{fhir.STU3, fhir.R4} {
		d := spec.For(v)
		for _, typ := range d.ResourceTypes() {
			for _, junk := range []any{"x", json.Number("1"), true, []any{nil, "x", map[string]any{}}, map[string]any{"coding": "x", "reference": 3, "start": 4}} {
				doc := map[string]any{"resourceType": typ}
				for _, e := range d.Elements(typ)[1:] {
					name := e.Path[len(typ)+1:]
					if strings.Contains(name, ".") {
						continue
					}
					if len(name) > 3 && name[len(name)-3:] == "[x]" {
						for _, t := range e.Types {
							doc[name[:len(name)-3]+upperFirst(t)] = junk
						}
						continue
					}
					doc[name] = junk
				}
				Extract(d, typ, doc)
			}
		}
	}
}
