package xml_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	fhirxml "github.com/schakel-nl/schakel/fhir/xml"
)

// FuzzDecode: any input either fails with an *Error or yields valid JSON
// that Encode accepts. Seeds: testdata/fuzz/FuzzDecode and the fixtures.
func FuzzDecode(f *testing.F) {
	for _, data := range fixtures(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		js, err := fhirxml.Decode(fhir.STU3, data)
		if err != nil {
			if _, ok := err.(*fhirxml.Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if !json.Valid(js) {
			t.Fatalf("invalid JSON from %q: %s", data, js)
		}
		if _, err := fhirxml.Encode(fhir.STU3, js); err != nil {
			t.Fatalf("Encode of decoded %q: %v\n%s", data, err, js)
		}
	})
}

// FuzzRoundTrip: whatever Decode accepts survives XML → JSON → XML → JSON
// unchanged.
func FuzzRoundTrip(f *testing.F) {
	for _, data := range fixtures(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		js, err := fhirxml.Decode(fhir.R4, data)
		if err != nil {
			return
		}
		x, err := fhirxml.Encode(fhir.R4, js)
		if err != nil {
			t.Fatalf("Encode: %v\n%s", err, js)
		}
		js2, err := fhirxml.Decode(fhir.R4, x)
		if err != nil {
			t.Fatalf("Decode of Encode: %v\n%s", err, x)
		}
		if !bytes.Equal(js, js2) {
			t.Fatalf("round trip changed the JSON:\n%s\n%s", js, js2)
		}
	})
}
