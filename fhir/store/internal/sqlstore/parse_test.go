package sqlstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
)

func TestParse(t *testing.T) {
	e := &Engine{Defs: spec.For(fhir.STU3)}
	for _, tc := range []struct {
		name, body string
		typ, id    string
		err        string
	}{
		{name: "resource", body: `{"resourceType":"Patient","id":"p1","active":true}`, typ: "Patient", id: "p1"},
		{name: "without id", body: ` {"resourceType":"Task","status":"requested"} `, typ: "Task"},
		{name: "the last of a repeated name", body: `{"resourceType":"Nope","resourceType":"Patient","id":"x","id":"p2"}`, typ: "Patient", id: "p2"},
		{name: "not JSON", body: `{"resourceType":"Patient",`, err: "not a JSON object"},
		{name: "empty", body: ``, err: "not a JSON object"},
		{name: "an array", body: `[{"resourceType":"Patient"}]`, err: "not a JSON object"},
		{name: "null", body: `null`, err: "not a JSON object"},
		{name: "trailing data", body: `{"resourceType":"Patient"} {}`, err: "trailing data"},
		// The entries of a Bundle are not decoded, but still checked.
		{name: "broken member no parameter reads", body: `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient",}}]}`, err: "not a JSON object"},
		{name: "no resourceType", body: `{"id":"p1"}`, err: "missing resourceType"},
		{name: "resourceType not a string", body: `{"resourceType":["Patient"]}`, err: "missing resourceType"},
		{name: "unknown resourceType", body: `{"resourceType":"Spaceship"}`, err: "unknown resourceType"},
		{name: "invalid id", body: `{"resourceType":"Patient","id":"a b"}`, err: "invalid id"},
		{name: "id not a string", body: `{"resourceType":"Patient","id":7}`, err: "invalid id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.Parse([]byte(tc.body))
			if tc.err != "" {
				if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse = %v, want ErrInvalid with %q", err, tc.err)
				}
				return
			}
			if err != nil || p.Type != tc.typ || p.ID != tc.id {
				t.Fatalf("Parse = %+v, %v; want %s/%s", p, err, tc.typ, tc.id)
			}
		})
	}
}

// TestParseIndexesAsFullDecode: decoding only the members a search
// parameter starts from gives the index a full decode gives.
func TestParseIndexesAsFullDecode(t *testing.T) {
	for _, tc := range []struct {
		v    fhir.Version
		body string
	}{
		{fhir.STU3, `{"resourceType":"Observation","id":"o1","meta":{"profile":["http://nictiz.nl/fhir/StructureDefinition/zib-LaboratoryTestResult"],"tag":[{"system":"s","code":"t"}]},
			"status":"final","category":[{"coding":[{"system":"http://snomed.info/sct","code":"275711006"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},
			"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-05-06T07:08:09Z","valueQuantity":{"value":5.4,"unit":"mmol/l","system":"http://unitsofmeasure.org","code":"mmol/L"},
			"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}`},
		{fhir.STU3, `{"resourceType":"Bundle","id":"b1","identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:1"},"type":"collection",
			"entry":[{"fullUrl":"urn:uuid:2","resource":{"resourceType":"Patient","id":"p1","active":true}}]}`},
		{fhir.R4, `{"resourceType":"Task","id":"t1","status":"requested","intent":"order","for":{"reference":"Patient/p1"},"authoredOn":"2024-05-06",
			"requester":{"reference":"Organization/o1"},"owner":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"1"}},
			"input":[{"type":{"text":"x"},"valueString":"y"}]}`},
	} {
		e := &Engine{Defs: spec.For(tc.v)}
		p, err := e.Parse([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		full := decodeAll(t, tc.body)
		if got, want := search.Extract(e.Defs, p.Type, p.doc), search.Extract(e.Defs, p.Type, full); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: index from the parsed members\n%+v\nfrom the whole document\n%+v", p.Type, got, want)
		}
		if p.Type == "Bundle" && p.doc["entry"] != nil {
			t.Error("a Bundle's entries were decoded; no search parameter reads them")
		}
	}
}

func decodeAll(t *testing.T, body string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// BenchmarkParseBundle parses a stored pull's shape: a Bundle of 40
// resources, none of which a Bundle search parameter reads.
func BenchmarkParseBundle(b *testing.B) {
	e := &Engine{Defs: spec.For(fhir.STU3)}
	var entries []string
	for i := range 40 {
		entries = append(entries, fmt.Sprintf(`{"fullUrl":"https://gp.example/fhir/Observation/o%d","resource":{"resourceType":"Observation","id":"o%d",`+
			`"meta":{"profile":["http://nictiz.nl/fhir/StructureDefinition/zib-LaboratoryTestResult"]},"status":"final",`+
			`"category":[{"coding":[{"system":"http://snomed.info/sct","code":"275711006","display":"Chemistry"}]}],`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}]},"subject":{"reference":"Patient/p1"},`+
			`"effectiveDateTime":"2024-05-06T07:08:09Z","valueQuantity":{"value":5.%d,"unit":"mmol/l","system":"http://unitsofmeasure.org","code":"mmol/L"}}}`, i, i, i))
	}
	body := []byte(`{"resourceType":"Bundle","type":"collection","identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:1"},"entry":[` +
		strings.Join(entries, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseTask parses a workflow Task, most of whose members a
// search parameter reads.
func BenchmarkParseTask(b *testing.B) {
	e := &Engine{Defs: spec.For(fhir.STU3)}
	body := []byte(`{"resourceType":"Task","id":"t1","identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:t1"}],` +
		`"groupIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:g1"},"status":"in-progress","intent":"order",` +
		`"code":{"coding":[{"system":"http://fhir.nl/fhir/NamingSystem/TaskCode","code":"pull-notification"}]},` +
		`"for":{"reference":"Patient/p1","display":"Patient"},"authoredOn":"2026-01-02T10:00:00Z","lastModified":"2026-01-02T10:00:01Z",` +
		`"requester":{"agent":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"00000001"}}},` +
		`"owner":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"00000002"}},` +
		`"restriction":{"period":{"end":"2026-12-31T00:00:00Z"}},` +
		`"input":[{"type":{"coding":[{"system":"http://fhir.nl/fhir/NamingSystem/TaskParameter","code":"authorization-base"}]},"valueString":"token"}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}
