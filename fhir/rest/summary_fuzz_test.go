package rest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

// FuzzSummary: _summary=true and =text turn any JSON object into valid
// JSON that keeps resourceType and id, holds no member the original did
// not, and is tagged SUBSETTED; never a panic.
func FuzzSummary(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Observation","id":"o1","text":{"div":"x"},"status":"final","code":{"text":"x"},"component":[{"code":{"text":"a"},"valueQuantity":{"value":1},"dataAbsentReason":{}}],"_status":{"id":"s"}}`,
		`{"resourceType":"Patient","contact":[{"name":{}},{"telecom":[]}],"photo":[],"meta":{"tag":[]}}`,
		`{"resourceType":"Questionnaire","item":[{"linkId":"1","item":[{"linkId":"1.1","item":[{"linkId":"x"}]}]}]}`,
		`{"resourceType":"Observation","component":{"code":1},"meta":{}}`,
		`{"resourceType":"Patient","contact":[1,"x",null,[]]}`,
	} {
		f.Add([]byte(seed))
	}
	servers := []*Server{New(Config{Store: nilStore{}, Version: fhir.STU3}), New(Config{Store: nilStore{}, Version: fhir.R4})}
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkJSON(body) != nil {
			return
		}
		var orig map[string]any
		if json.Unmarshal(body, &orig) != nil {
			return
		}
		typ, _ := orig["resourceType"].(string)
		for _, s := range servers {
			for _, mode := range []string{summaryTrue, summaryText} {
				out, err := s.shape(typ, body, view{summary: mode})
				if err != nil {
					continue
				}
				var got map[string]any
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("%s _summary=%s is not JSON: %v\n%s", s.version, mode, err, out)
				}
				for k := range got {
					if _, ok := orig[k]; !ok && k != "meta" {
						t.Fatalf("%s _summary=%s added %q: %s", s.version, mode, k, out)
					}
				}
				if !reflect.DeepEqual(orig["resourceType"], got["resourceType"]) || !reflect.DeepEqual(orig["id"], got["id"]) || !strings.Contains(string(out), "SUBSETTED") {
					t.Fatalf("%s _summary=%s lost its identity or tag: %s", s.version, mode, out)
				}
			}
		}
	})
}

// nilStore is a store.Store that holds nothing; shape never asks it.
type nilStore struct{ store.Store }
