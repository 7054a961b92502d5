package validate_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
	fhirxml "github.com/schakel-nl/schakel/fhir/xml"
)

// FuzzResource feeds arbitrary JSON to the validator every stored resource
// passes. The seed corpus is in testdata/fuzz/FuzzResource; run with
// go test -fuzz=FuzzResource ./fhir/validate.
func FuzzResource(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911259"}],"name":[{"family":"Jansen","given":["Jan"]}],"birthDate":"1970-01-01"}`))
	f.Add([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"bloeddruk"},"valueQuantity":{"value":120.5,"unit":"mm[Hg]"},"_status":{"extension":[{"url":"http://x","valueString":"y"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		issues := validate.Resource(fhir.STU3, body)
		if len(issues) > 101 {
			t.Fatalf("%d issues", len(issues))
		}
		if len(issues) > 0 {
			return
		}
		// A resource the validator accepts can be served as XML too, and
		// reads back as the same resource.
		x, err := fhirxml.Encode(fhir.STU3, body)
		if err != nil {
			t.Fatalf("valid resource not encodable as XML: %v\n%s", err, body)
		}
		js, err := fhirxml.Decode(fhir.STU3, x)
		if err != nil {
			t.Fatalf("XML of a valid resource does not decode: %v\n%s\n%s", err, body, x)
		}
		// Narratives come back in the encoder's canonical XHTML (">" as
		// "&gt;"), equal as XHTML but not as text: compare them as XML.
		var a, b any
		if decode(body, &a) != nil || decode(js, &b) != nil || !reflect.DeepEqual(blankDivs(a), blankDivs(b)) {
			t.Fatalf("JSON -> XML -> JSON changed the resource:\n%s\n%s", body, js)
		}
		if x2, err := fhirxml.Encode(fhir.STU3, js); err != nil || !bytes.Equal(x, x2) {
			t.Fatalf("XML not stable over a round trip (%v):\n%s\n%s", err, x, x2)
		}
	})
}

// decode keeps numbers as written, as the validator reads them.
func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// blankDivs replaces every narrative div in a decoded resource by "".
func blankDivs(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if _, ok := e.(string); ok && k == "div" {
				v[k] = ""
			} else {
				v[k] = blankDivs(e)
			}
		}
	case []any:
		for i, e := range v {
			v[i] = blankDivs(e)
		}
	}
	return v
}
