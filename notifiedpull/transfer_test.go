package notifiedpull

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
)

// transferApp is a hand-written careapp.Transfer: documents are
// Compositions read with $document, the "first" input is read before
// acceptance.
type transferApp struct{}

func (transferApp) Name() string                   { return "transfer" }
func (transferApp) FHIRVersion() fhir.Version      { return fhir.STU3 }
func (transferApp) Patterns() []careapp.Pattern    { return []careapp.Pattern{careapp.NotifiedPull} }
func (transferApp) Queries(string) []careapp.Query { return nil }
func (transferApp) Match(careapp.Request, string) (careapp.Query, error) {
	return careapp.Query{}, careapp.ErrNotInSet
}
func (transferApp) PatientBSN(url.Values) (string, bool) { return "", false }
func (transferApp) Normalize(string) (string, error)     { return "", careapp.ErrNotInSet }
func (transferApp) ServerPayloadType() string            { return "urn:test:transfer" }
func (transferApp) WorkflowTasks() []careapp.TaskKind {
	return []careapp.TaskKind{{Code: careapp.Coding{System: "urn:test", Code: "transfer"}}}
}
func (transferApp) DocumentOperation(typ string) string {
	if typ == "Composition" {
		return "$document"
	}
	return ""
}
func (transferApp) BeforeAcceptance(c careapp.Coding) bool { return c.Code == "first" }
func (transferApp) ReceiverTransitions() map[string][]string {
	return map[string][]string{"requested": {"accepted", "rejected"}, "accepted": {"in-progress"}, "in-progress": {"completed"}}
}
func (transferApp) Decide(json.RawMessage, string) error { return nil }
func (transferApp) ReadInput(json.RawMessage) (careapp.Coding, error) {
	return careapp.Coding{System: "urn:test", Code: "first"}, nil
}

func TestTransferTransition(t *testing.T) {
	app := transferApp{}
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"requested", "accepted", true},
		{"requested", "rejected", true},
		{"requested", "completed", false},
		{"requested", "in-progress", false},
		{"accepted", "in-progress", true},
		{"accepted", "requested", false},
		{"in-progress", "completed", true},
		{"completed", "in-progress", false},
		{"rejected", "accepted", false},
	} {
		err := transferTransition(app, c.from, c.to)
		if (err == nil) != c.ok {
			t.Errorf("%s → %s: %v, want allowed %v", c.from, c.to, err, c.ok)
		}
		if err != nil {
			fe := fhir.AsError(err)
			if fe == nil || fe.Status != http.StatusConflict || !errors.Is(err, ErrForbidden) {
				t.Errorf("%s → %s: %v, want a 409 OperationOutcome", c.from, c.to, err)
			}
		}
	}
}

func TestIsInput(t *testing.T) {
	inputs := []WorkflowInput{{Reference: "Composition/a"}, {Query: "Condition?x=y"}}
	for ref, want := range map[string]bool{"Composition/a": true, "Composition/b": false, "Condition?x=y": false, "": false} {
		if isInput(inputs, ref) != want {
			t.Errorf("isInput(%q) = %v", ref, !want)
		}
	}
}

func TestReferencesIn(t *testing.T) {
	var v any
	_ = json.Unmarshal([]byte(`{"subject":{"reference":"Patient/p"},"section":[{"entry":[{"reference":"Condition/c"}],"section":[{"entry":[{"reference":"Flag/f","display":"x"}]}]}]}`), &v)
	got := referencesIn(v, nil)
	want := map[string]bool{"Patient/p": true, "Condition/c": true, "Flag/f": true}
	if len(got) != 3 {
		t.Fatalf("%v", got)
	}
	for _, r := range got {
		if !want[r] {
			t.Errorf("unexpected %s", r)
		}
	}
}
