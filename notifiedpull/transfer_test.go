package notifiedpull

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
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

func TestAuthorizeTransferOperation(t *testing.T) {
	g := Grant{Queries: []string{"Composition/a"}}
	for _, c := range []struct {
		name string
		req  rest.Request
		ok   bool
	}{
		{"$document of an input", rest.Request{Type: "Composition", ID: "a", Operation: "$document"}, true},
		{"$document of another Composition", rest.Request{Type: "Composition", ID: "b", Operation: "$document"}, false},
		{"another operation", rest.Request{Type: "Composition", ID: "a", Operation: "$everything"}, false},
		{"an operation on another type", rest.Request{Type: "Patient", ID: "a", Operation: "$document"}, false},
	} {
		err := authorizeTransferOperation(transferApp{}, g, &c.req)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want allowed %v", c.name, err, c.ok)
		}
		if err != nil && fhir.AsError(err).Status != http.StatusForbidden {
			t.Errorf("%s: %v, want 403", c.name, err)
		}
	}
}
