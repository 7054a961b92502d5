package eoverdracht

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

var now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func fixture(t *testing.T, id string) json.RawMessage {
	t.Helper()
	fx, err := Fixtures(now, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fx {
		if f.Type+"/"+f.ID == id || f.File == id {
			return f.Body
		}
	}
	t.Fatalf("no fixture %s", id)
	return nil
}

// The Nictiz fixtures of scenario 1.1b load, every variable filled in, and
// are valid FHIR STU3.
func TestFixturesLoad(t *testing.T) {
	fx, err := Fixtures(now, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(fx) < 40 {
		t.Fatalf("%d fixtures, want the scenario's 45", len(fx))
	}
	for _, f := range fx {
		if strings.Contains(string(f.Body), "${") {
			t.Errorf("%s: a variable is left: %s", f.File, f.Body)
		}
		if issues := validate.Resource(fhir.STU3, f.Body); len(issues) > 0 {
			t.Errorf("%s: not valid STU3: %+v", f.File, issues)
		}
	}
	an := fixture(t, DemoAdvanceNotice)
	if !strings.Contains(string(an), `"date":"2026-12-07"`) {
		t.Errorf("${CURRENTDATE} not today: %s", an)
	}
	rec, err := DemoRecord(now)
	if err != nil || !strings.Contains(string(rec), `"url":"Composition/eOverdracht-NursingHandoff-Adults-eov-test-1-1b-01"`) {
		t.Fatalf("demo record: %v", err)
	}
	if strings.Contains(string(rec), `"resourceType":"Task"`) {
		t.Error("the demo record holds the scenario's Tasks; the node builds the workflow Task")
	}
}

// The scenario's Task fixtures are what this application builds and
// checks: the profile and code of WorkflowTasks, the input types
// ReadInput gives their Compositions, and only transitions the flow
// allows between the steps of the scenario.
func TestNictizScenario1_1b(t *testing.T) {
	app := New()
	type task struct {
		Status string
		Meta   struct{ Profile []string }
		Code   struct{ Coding []careapp.Coding }
		Input  []struct {
			Type struct {
				Coding []struct{ System, Code string }
			}
			ValueReference struct{ Reference string }
		}
	}
	steps := []string{"eOverdracht-Task-eov-test-1_1b-REQUESTED.xml", "eOverdracht-Task-eov-test-1_1b-ACCEPTED.xml",
		"eOverdracht-Task-eov-test-1_1b-IN-PROGRESS2.xml", "eOverdracht-Task-eov-test-1_1b-01-COMPLETED.xml"}
	// (eOverdracht-Task-eov-test-1_1b-COMPLETED.xml is left out: it references
	// the overdrachtbericht of scenario 1.10b, which the scenario does not hold.)
	kind := app.WorkflowTasks()[0]
	prev := ""
	for _, s := range steps {
		var tk task
		if err := json.Unmarshal(fixture(t, s), &tk); err != nil {
			t.Fatal(err)
		}
		if len(tk.Meta.Profile) != 1 || tk.Meta.Profile[0] != kind.Profile {
			t.Errorf("%s: profile %v, app builds %s", s, tk.Meta.Profile, kind.Profile)
		}
		if c := tk.Code.Coding[0]; c.System != kind.Code.System || c.Code != kind.Code.Code {
			t.Errorf("%s: code %v, app builds %v", s, c, kind.Code)
		}
		for _, in := range tk.Input {
			ref := in.ValueReference.Reference
			c, err := app.ReadInput(fixture(t, ref))
			if err != nil {
				t.Errorf("%s: %s: %v", s, ref, err)
				continue
			}
			if in.Type.Coding[0].Code != c.Code || in.Type.Coding[0].System != c.System {
				t.Errorf("%s: input %s typed %v, app types it %v", s, ref, in.Type.Coding[0], c)
			}
			wantFirst := strings.Contains(ref, "AdvanceNotice")
			if app.BeforeAcceptance(c) != wantFirst {
				t.Errorf("%s: %s read before acceptance = %v", s, ref, !wantFirst)
			}
		}
		if prev != "" {
			ok := false
			for _, n := range app.ReceiverTransitions()[prev] {
				ok = ok || n == tk.Status
			}
			if !ok && !(prev == "accepted" && tk.Status == "in-progress") {
				t.Errorf("%s: %s → %s is not allowed", s, prev, tk.Status)
			}
		}
		prev = tk.Status
	}
	if !slicesEqual(app.ReceiverTransitions()["requested"], []string{"accepted", "rejected"}) || len(app.ReceiverTransitions()["completed"]) != 0 {
		t.Errorf("transitions %v", app.ReceiverTransitions())
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// A document of the wrong care application, profile or FHIR version is
// refused with 422 naming what is wrong.
func TestReadInputRefuses(t *testing.T) {
	handoff := string(fixture(t, DemoNursingHandoff))
	cases := []struct {
		name, body, want string
	}{
		{"not a Composition", `{"resourceType":"Patient","id":"p"}`, "not Patient"},
		{"BgZ or letter profile", strings.Replace(handoff, ProfileHandoffAdults, "http://nictiz.nl/fhir/StructureDefinition/nl-core-episodeofcare", 1), "not an eOverdracht 4.0 document"},
		{"R4 Composition", strings.Replace(handoff, `"resourceType":"Composition",`, `"resourceType":"Composition","category":[{"text":"x"}],`, 1), "FHIR R4"},
		{"type of the other document", strings.Replace(handoff, InputNursingHandoff.Code, InputAdvanceNotice.Code, 1), "Composition.type must be"},
		{"not JSON", `<Composition/>`, "not a FHIR JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New().ReadInput(json.RawMessage(c.body))
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want 422 naming %q", err, c.want)
			}
		})
	}
}

// The registry takes eOverdracht as a Notified Pull Transfer.
func TestRegistry(t *testing.T) {
	r, err := careapp.NewRegistry(New())
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.Workflow(Name)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := w.(careapp.Decision); !ok || !d.AwaitsDecision() {
		t.Error("the receiving organisation does not decide on a transfer request (careapp.Decision)")
	}
	if _, ok := w.(careapp.Transfer); !ok {
		t.Fatal("not a careapp.Transfer")
	}
	if _, err := New().Normalize("Condition?patient.identifier=x"); !errors.Is(err, careapp.ErrNotInSet) {
		t.Errorf("a search is not in a transfer: %v", err)
	}
}

// The receiving node accepts the scenario's aanmeldbericht for its patient
// and rejects it for another patient, or when it is no document.
func TestDecide(t *testing.T) {
	an := fixture(t, DemoAdvanceNotice)
	patient := fixture(t, "Patient/nl-core-patient-eov-test-1-1b-01")
	doc := func(entries ...json.RawMessage) json.RawMessage {
		var es []map[string]json.RawMessage
		for _, e := range entries {
			es = append(es, map[string]json.RawMessage{"resource": e})
		}
		b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "document", "entry": es})
		return b
	}
	if err := New().Decide(doc(an, patient), DemoPatientBSN); err != nil {
		t.Errorf("the scenario's aanmeldbericht: %v", err)
	}
	for name, c := range map[string]struct {
		doc  json.RawMessage
		bsn  string
		want string
	}{
		"another patient":    {doc(an, patient), "123456782", "another patient"},
		"no subject Patient": {doc(an), DemoPatientBSN, "does not hold its subject"},
		"not a document":     {an, DemoPatientBSN, "not a document Bundle"},
		"wrong profile":      {doc(json.RawMessage(strings.Replace(string(an), ProfileAdvanceNotice, "urn:other", 1)), patient), DemoPatientBSN, "not an eOverdracht"},
	} {
		if err := New().Decide(c.doc, c.bsn); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a rejection naming %q", name, err, c.want)
		}
	}
}
