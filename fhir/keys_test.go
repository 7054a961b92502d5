package fhir

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestCheckKeys(t *testing.T) {
	many := func(dup bool) string {
		var sb strings.Builder
		sb.WriteString(`{"resourceType":"Patient","extension":[{`)
		for i := range 40 {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`"k` + strconv.Itoa(i) + `":1`)
		}
		if dup {
			sb.WriteString(`,"k17":2`)
		}
		sb.WriteString(`}]}`)
		return sb.String()
	}
	for _, tc := range []struct {
		name, doc  string
		key, where string // want a duplicate key at Expression("Patient") where; "" = none
	}{
		{name: "none", doc: `{"resourceType":"Patient","name":[{"family":"a","given":["b"]},{"family":"c"}],"meta":{"tag":[{"code":"x"},{"code":"y"}]}}`},
		{name: "same key in sibling objects", doc: `{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]}`},
		{name: "same key as the parent's", doc: `{"x":{"x":{"x":1}},"y":1}`},
		{name: "keys in string values are not keys", doc: `{"a":"\"a\":1","b":"{\"a\":1,\"a\":2}"}`},
		{name: "scalar document", doc: `"a"`},
		{name: "top level", doc: `{"resourceType":"Patient","gender":"male","active":true,"gender":"female"}`, key: "gender", where: "Patient.gender"},
		{name: "resourceType twice", doc: `{"resourceType":"Patient","resourceType":"Observation"}`, key: "resourceType", where: "Patient.resourceType"},
		{name: "nested in an array", doc: `{"resourceType":"Patient","name":[{"family":"a"},{"family":"b","given":["c"],"family":"d"}]}`, key: "family", where: "Patient.name[1].family"},
		{name: "deep", doc: `{"resourceType":"Patient","contact":[{"name":{"text":"x"}}],"meta":{"tag":[{"code":"a"},{"system":"s","code":"b","system":"t"}]}}`, key: "system", where: "Patient.meta.tag[1].system"},
		{name: "escaped spelling of the same key", doc: `{"resourceType":"Patient","active":true,"\u0061ctive":false}`, key: "active", where: "Patient.active"},
		{name: "many keys", doc: many(false)},
		{name: "many keys, one twice", doc: many(true), key: "k17", where: "Patient.extension[0].k17"},
		{name: "array of arrays", doc: `{"resourceType":"Patient","x":[[1,2],[{"a":1,"a":2}]]}`, key: "a", where: "Patient.x[1][0].a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !json.Valid([]byte(tc.doc)) {
				t.Fatalf("test document is not JSON: %s", tc.doc)
			}
			err := CheckKeys([]byte(tc.doc))
			if tc.key == "" {
				if err != nil {
					t.Fatalf("got %v, want none", err)
				}
				return
			}
			var de *DuplicateKeyError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DuplicateKeyError", err)
			}
			if de.Key != tc.key || de.Expression("Patient") != tc.where {
				t.Errorf("got key %q at %q, want %q at %q", de.Key, de.Expression("Patient"), tc.key, tc.where)
			}
		})
	}
}

// FuzzCheckKeys: never a panic, and no duplicate reported in a document
// that encoding/json writes (it writes each map key once).
func FuzzCheckKeys(f *testing.F) {
	f.Add([]byte(`{"a":[{"b":1,"b":2}]}`))
	f.Add([]byte(`{"a":"\"}","b":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = CheckKeys(b)
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			return
		}
		if err := CheckKeys(out); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
	})
}

// BenchmarkCheckKeys measures the duplicate key check on a transaction
// Bundle of 100 Observations, next to json.Valid, which every body gets
// already.
func BenchmarkCheckKeys(b *testing.B) {
	entry := `{"fullUrl":"urn:uuid:0d2a3e4c-1f45-4b8e-9a3c-6f1d2e3a4b5c","resource":{"resourceType":"Observation","meta":{"profile":["http://nictiz.nl/fhir/StructureDefinition/zib-BloodPressure"]},"status":"final","category":[{"coding":[{"system":"http://hl7.org/fhir/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-03-01T10:00:00+01:00","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]},"request":{"method":"POST","url":"Observation"}}`
	doc := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.TrimSuffix(strings.Repeat(entry+",", 100), ",") + `]}`)
	b.Run("CheckKeys", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			if err := CheckKeys(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
}
