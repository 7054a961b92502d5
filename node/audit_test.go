package node

import (
	"encoding/json"
	"testing"

	"github.com/schakel-nl/schakel/fhir/store"
)

func TestSensitivityIsTheMostRestrictedLabel(t *testing.T) {
	res := func(labels ...string) store.Resource {
		var sec []map[string]string
		for _, l := range labels {
			sec = append(sec, map[string]string{"system": "http://hl7.org/fhir/v3/Confidentiality", "code": l})
		}
		body, _ := json.Marshal(map[string]any{"resourceType": "Condition", "meta": map[string]any{"security": sec}})
		return store.Resource{Type: "Condition", Body: body}
	}
	other, _ := json.Marshal(map[string]any{"resourceType": "Condition", "meta": map[string]any{
		"security": []map[string]string{{"system": "http://example.org/labels", "code": "V"}}}})
	for _, tc := range []struct {
		name      string
		resources []store.Resource
		want      string
	}{
		{"nothing returned", nil, "N"},
		{"unlabelled", []store.Resource{res()}, "N"},
		{"restricted", []store.Resource{res(), res("R")}, "R"},
		{"very restricted wins", []store.Resource{res("R"), res("V", "N")}, "V"},
		{"lower labels do not lower it", []store.Resource{res("L")}, "N"},
		{"another system's code is not a confidentiality", []store.Resource{{Body: other}}, "N"},
	} {
		if got := sensitivity(tc.resources); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
