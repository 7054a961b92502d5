package rest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
)

// FuzzResourceJSON feeds arbitrary request bodies to the checks and the
// member scanner every FHIR JSON body goes through. The seed corpus is in
// testdata/fuzz/FuzzResourceJSON; run with go test -fuzz=FuzzResourceJSON ./fhir/rest.
func FuzzResourceJSON(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","tag":[{"code":"x"}]},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">}</div>"},"name":[{"family":"Jansen"}]}`))
	f.Add([]byte(`{"resourceType":"Observation","resourceType":"Patient"}`))
	f.Add([]byte(`{"resourcetype":"Patient","id":1}`))
	tag := []byte(`{"system":"http://hl7.org/fhir/v3/ObservationValue","code":"SUBSETTED"}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := checkJSON(body); err != nil {
			if fe := fhir.AsError(err); fe == nil || fe.Status != http.StatusBadRequest {
				t.Fatalf("refusal %v is no 400 OperationOutcome", err)
			}
			return
		}
		var doc any
		if err := decode(body, &doc); err != nil {
			t.Fatalf("checkJSON passed what encoding/json refuses: %v", err)
		}
		obj, isObj := doc.(map[string]any)
		ms, err := members(body)
		if !isObj {
			if err == nil {
				t.Fatalf("members of a non-object: %q", ms)
			}
			if _, _, err := identity(body); err == nil {
				t.Fatal("identity of a non-object")
			}
			return
		}
		// The scanner sees the members encoding/json sees (the last of a
		// duplicate wins there), in the order fhir.Members reads them.
		if err != nil {
			t.Fatalf("members of a valid object: %v", err)
		}
		ref, err := fhir.Members(body)
		if err != nil || len(ref) != len(ms) {
			t.Fatalf("fhir.Members: %d members, %v; members: %d", len(ref), err, len(ms))
		}
		seen := map[string]any{}
		for i, m := range ms {
			if m.key != ref[i].Key || !bytes.Equal(m.val, bytes.TrimSpace(ref[i].Value)) {
				t.Fatalf("member %d: %q=%s, fhir.Members: %q=%s", i, m.key, m.val, ref[i].Key, ref[i].Value)
			}
			var v any
			if err := decode(m.val, &v); err != nil {
				t.Fatalf("member %q has invalid value %q: %v", m.key, m.val, err)
			}
			seen[m.key] = v
		}
		if !reflect.DeepEqual(seen, obj) {
			t.Fatalf("members read %v, encoding/json %v", seen, obj)
		}
		// identity reads exactly the keys "resourceType" and "id".
		if typ, id, err := identity(body); err == nil {
			wantID, _ := obj["id"].(string)
			if obj["resourceType"] != typ || id != wantID {
				t.Fatalf("identity %q/%q of %s", typ, id, body)
			}
		}
		sub, err := subset(body, func(k string) bool { return k != "text" }, tag)
		if err != nil {
			return
		}
		var got map[string]any
		if err := decode(sub, &got); !json.Valid(sub) || err != nil {
			t.Fatalf("subset is not JSON: %v\n%s", err, sub)
		}
		if _, ok := got["text"]; ok {
			t.Fatalf("subset kept text: %s", sub)
		}
		for k, v := range obj {
			if k != "text" && k != "meta" && !reflect.DeepEqual(got[k], v) {
				t.Fatalf("subset changed %q: %s", k, sub)
			}
		}
		meta, _ := got["meta"].(map[string]any)
		tags, _ := meta["tag"].([]any)
		var want any
		_ = decode(tag, &want)
		if len(tags) == 0 || !reflect.DeepEqual(tags[len(tags)-1], want) {
			t.Fatalf("subset has no SUBSETTED tag: %s", sub)
		}
	})
}

// decode keeps numbers as written: a valid body may hold numbers no float64
// can (1e400), which is not the scanner's business.
func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}
