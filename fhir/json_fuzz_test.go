package fhir

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzMembers feeds arbitrary bytes to Members, which the store and the
// importer use to edit a resource without re-encoding it. The seed corpus is
// in testdata/fuzz/FuzzMembers; run with go test -fuzz=FuzzMembers ./fhir.
func FuzzMembers(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},"birthDate":"1970-01-01","deceasedBoolean":false,"multipleBirthInteger":2.50}`))
	f.Add([]byte(`{"a":1,"a":[{}]}`))
	f.Fuzz(func(t *testing.T, obj []byte) {
		ms, err := Members(obj)
		var want map[string]any
		if !json.Valid(obj) || decode(obj, &want) != nil || want == nil {
			if err == nil {
				t.Fatalf("split %q, which is not one JSON object, into %d members", obj, len(ms))
			}
			return
		}
		if err != nil {
			t.Fatalf("refused a JSON object: %v", err)
		}
		// The members are those encoding/json sees, values byte-for-byte.
		got := map[string]any{}
		for _, m := range ms {
			var v any
			if err := decode(m.Value, &v); err != nil {
				t.Fatalf("member %q: invalid value %q", m.Key, m.Value)
			}
			got[m.Key] = v
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("members %v, encoding/json %v", got, want)
		}
	})
}

// decode keeps numbers as written: valid JSON may hold numbers no float64
// can (1e400).
func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// FuzzSplit feeds arbitrary bytes to SplitMembers and SplitElements, which
// trust their input to be valid JSON: on any other input they may return
// nonsense but must not panic or reach outside it; on valid JSON they agree
// with encoding/json. Run with go test -fuzz=FuzzSplit ./fhir.
func FuzzSplit(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"de \"Vries\""}],"active":true}`))
	f.Add([]byte(`[1, {"a":[2]}, "x\\"]", null]`))
	f.Add([]byte(`{"a":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, merr := SplitMembers(b)
		es, eerr := SplitElements(b)
		if !json.Valid(b) {
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) == nil && obj != nil {
			if merr != nil {
				t.Fatalf("refused a JSON object: %v", merr)
			}
			for _, m := range ms {
				if !json.Valid(m.Value) {
					t.Fatalf("member %q: invalid value %q", m.Key, m.Value)
				}
			}
		}
		var arr []json.RawMessage
		if json.Unmarshal(b, &arr) == nil && arr != nil {
			if eerr != nil || len(es) != len(arr) {
				t.Fatalf("split %q into %d elements (%v), want %d", b, len(es), eerr, len(arr))
			}
			for i := range es {
				if !bytes.Equal(bytes.TrimSpace(arr[i]), es[i]) {
					t.Fatalf("element %d: %q, want %q", i, es[i], arr[i])
				}
			}
		}
	})
}
