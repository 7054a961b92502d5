package notifiedpull

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

const testTaskID = "urn:uuid:0b8a6f0e-1111-4222-8333-944455556666"

func validSpec(now time.Time) NotificationSpec {
	return NotificationSpec{Identifier: testTaskID, GroupIdentifier: testTaskID, PatientBSN: "999911259",
		SenderURA: "90000001", SenderSystem: "900000011", ReceiverURA: "90000002",
		WorkflowTask: "https://sender.example/fhir/stu3/90000001/Task/abc", AuthBase: "s3cret-Zx9_q7Lm-4Kp",
		Expires: now.Add(time.Hour), Authored: now}
}

// mutate decodes a valid notification, applies fn to it and encodes it again.
func mutate(t *testing.T, now time.Time, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(BuildNotification(validSpec(now)), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, _ := json.Marshal(m)
	return b
}

func TestParseNotification(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	n, err := ParseNotification(BuildNotification(validSpec(now)), now)
	if err != nil {
		t.Fatalf("valid notification refused: %v", err)
	}
	want := Notification{Identifier: testTaskID, GroupIdentifier: testTaskID, PatientBSN: "999911259", SenderURA: "90000001",
		SenderSystem: "900000011", OwnerURA: "90000002", WorkflowTask: "https://sender.example/fhir/stu3/90000001/Task/abc",
		AuthorizationBase: "s3cret-Zx9_q7Lm-4Kp", GetWorkflowTask: true, Expires: now.Add(time.Hour), Status: StatusRequested}
	if n != want {
		t.Errorf("parsed %+v\nwant   %+v", n, want)
	}

	tests := []struct {
		name     string
		body     []byte
		location string
	}{
		{"malformed JSON", []byte(`{"resourceType":"Task",`), ""},
		{"not a Task", mutate(t, now, func(m map[string]any) { m["resourceType"] = "Patient" }), "resourceType"},
		{"invalid BSN", mutate(t, now, func(m map[string]any) {
			m["for"] = map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "123456789"}}
		}), "Task.for.identifier.value"},
		{"BSN in OID form is accepted as BSN system but still checked", mutate(t, now, func(m map[string]any) {
			m["for"] = map[string]any{"identifier": map[string]any{"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": "999911250"}}
		}), "Task.for.identifier.value"},
		{"no patient", mutate(t, now, func(m map[string]any) { delete(m, "for") }), "Task.for.identifier"},
		{"wrong intent", mutate(t, now, func(m map[string]any) { m["intent"] = "order" }), "Task.intent"},
		{"wrong code", mutate(t, now, func(m map[string]any) { m["code"] = map[string]any{"text": "x"} }), "Task.code"},
		{"no owner", mutate(t, now, func(m map[string]any) { delete(m, "owner") }), "Task.owner.identifier"},
		{"no sender", mutate(t, now, func(m map[string]any) { delete(m, "requester") }), "Task.requester.onBehalfOf.identifier"},
		{"relative basedOn", mutate(t, now, func(m map[string]any) { m["basedOn"] = []any{map[string]any{"reference": "Task/abc"}} }), "Task.basedOn.reference"},
		{"no basedOn", mutate(t, now, func(m map[string]any) { delete(m, "basedOn") }), "Task.basedOn"},
		{"no period end", mutate(t, now, func(m map[string]any) { delete(m, "restriction") }), "Task.restriction.period.end"},
		{"expired", mutate(t, now, func(m map[string]any) {
			m["restriction"] = map[string]any{"period": map[string]any{"end": now.Add(-time.Second).Format(time.RFC3339)}}
		}), "Task.restriction.period.end"},
		{"no inputs", mutate(t, now, func(m map[string]any) { delete(m, "input") }), "Task.input"},
		{"empty authorization base", mutate(t, now, func(m map[string]any) {
			in := m["input"].([]any)
			in[0].(map[string]any)["valueString"] = ""
		}), "Task.input[0].valueString"},
		{"no identifier", mutate(t, now, func(m map[string]any) { delete(m, "identifier") }), "Task.identifier"},
		{"identifier urn:uuid is no UUID", withIdentifier(t, now, "urn:uuid:not-a-uuid"), "Task.identifier[0].value"},
		{"identifier UUID in upper case", withIdentifier(t, now, "urn:uuid:0B8A6F0E-1111-4222-8333-944455556666"), "Task.identifier[0].value"},
		{"identifier UUID without dashes", withIdentifier(t, now, "urn:uuid:0b8a6f0e111142228333944455556666"), "Task.identifier[0].value"},
		{"identifier urn:oid is no OID", withIdentifier(t, now, "urn:oid:2.16.abc"), "Task.identifier[0].value"},
		{"identifier OID with a leading zero", withIdentifier(t, now, "urn:oid:2.16.0528.1"), "Task.identifier[0].value"},
		{"identifier neither urn:uuid nor urn:oid", withIdentifier(t, now, "task-1"), "Task.identifier[0].value"},
		{"an extra BSN identifier failing the 11-proef", mutate(t, now, func(m map[string]any) {
			m["identifier"] = append(m["identifier"].([]any), map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "123456789"})
		}), "Task.identifier[1].value"},
		{"groupIdentifier is no UUID", mutate(t, now, func(m map[string]any) {
			m["groupIdentifier"] = map[string]any{"system": SystemRFC3986, "value": "urn:uuid:g"}
		}), "Task.groupIdentifier.value"},
		{"sender URA not 8 digits", mutate(t, now, func(m map[string]any) {
			m["requester"].(map[string]any)["onBehalfOf"] = map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": "9000001x"}}
		}), "Task.requester.onBehalfOf.identifier.value"},
		{"owner URA not 8 digits", mutate(t, now, func(m map[string]any) {
			m["owner"] = map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": "900000021"}}
		}), "Task.owner.identifier.value"},
		{"agent UZI number not digits", mutate(t, now, func(m map[string]any) {
			m["requester"].(map[string]any)["agent"] = map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/uzi-nr-sys", "value": "UZI-1"}}
		}), "Task.requester.agent.identifier.value"},
		{"agent AGB code not 8 digits", mutate(t, now, func(m map[string]any) {
			m["requester"].(map[string]any)["agent"] = map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/agb-z", "value": "1234"}}
		}), "Task.requester.agent.identifier.value"},
		{"authorization base with a space", mutate(t, now, func(m map[string]any) {
			m["input"].([]any)[0].(map[string]any)["valueString"] = "two words"
		}), "Task.input[0].valueString"},
		{"authorization base with a control character", mutate(t, now, func(m map[string]any) {
			m["input"].([]any)[0].(map[string]any)["valueString"] = "base\n"
		}), "Task.input[0].valueString"},
		{"authorization base too long", mutate(t, now, func(m map[string]any) {
			m["input"].([]any)[0].(map[string]any)["valueString"] = strings.Repeat("a", maxAuthBaseLength+1)
		}), "Task.input[0].valueString"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNotification(tc.body, now)
			fe := fhir.AsError(err)
			if fe == nil {
				t.Fatalf("accepted, want a 400 OperationOutcome")
			}
			if fe.Status != http.StatusBadRequest || !errors.Is(err, ErrInvalidNotification) {
				t.Errorf("status %d (%v), want 400 wrapping ErrInvalidNotification", fe.Status, err)
			}
			if tc.location == "" {
				return
			}
			found := false
			for _, is := range fe.Issues {
				for _, l := range is.Location {
					found = found || l == tc.location
				}
			}
			if !found {
				t.Errorf("no issue at %s: %+v", tc.location, fe.Issues)
			}
		})
	}
}

// withIdentifier is a valid notification whose Task.identifier is value.
func withIdentifier(t *testing.T, now time.Time, value string) []byte {
	return mutate(t, now, func(m map[string]any) {
		m["identifier"] = []any{map[string]any{"system": SystemRFC3986, "value": value}}
	})
}

// TestParseNotificationAcceptsEveryIdentifierForm: the identifier forms the
// agreement allows are all accepted, in URI and OID system form.
func TestParseNotificationAcceptsEveryIdentifierForm(t *testing.T) {
	now := time.Now()
	for name, body := range map[string][]byte{
		"urn:oid identifier": withIdentifier(t, now, "urn:oid:2.16.528.1.1007.3.3.1234"),
		"URA in OID system form": mutate(t, now, func(m map[string]any) {
			m["owner"] = map[string]any{"identifier": map[string]any{"system": "urn:oid:2.16.528.1.1007.3.3", "value": "90000002"}}
		}),
		"agent by AGB code": mutate(t, now, func(m map[string]any) {
			m["requester"].(map[string]any)["agent"] = map[string]any{"identifier": map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/agb-z", "value": "01234567"}}
		}),
		"an identifier of a system the agreement does not define": mutate(t, now, func(m map[string]any) {
			m["identifier"] = append(m["identifier"].([]any), map[string]any{"system": "https://ehr.example/task-id", "value": "T 42"})
		}),
	} {
		if _, err := ParseNotification(body, now); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
}

func TestParseNotificationReportsEveryProblem(t *testing.T) {
	now := time.Now()
	body := mutate(t, now, func(m map[string]any) {
		delete(m, "owner")
		delete(m, "basedOn")
		m["intent"] = "plan"
	})
	_, err := ParseNotification(body, now)
	if fe := fhir.AsError(err); fe == nil || len(fe.Issues) != 3 {
		t.Fatalf("want 3 issues, got %v", err)
	}
}

func TestWorkflowTaskRoundTrip(t *testing.T) {
	now := time.Now()
	body := BuildWorkflowTask(WorkflowSpec{Identifier: "urn:uuid:2", PatientID: "p1", PatientBSN: "999911259",
		SenderURA: "90000001", ReceiverURA: "90000002", Code: coding{System: "http://snomed.info/sct", Code: "3457005"},
		Expires: now.Add(time.Hour), Authored: now, Inputs: []WorkflowInput{
			{System: "http://loinc.org", Code: "11450-4", Display: "Problem", Query: "Condition?patient.identifier=x|1"},
			{System: "http://loinc.org", Code: "1", Display: "Doc", Reference: "DocumentReference/9"},
		}})
	status, inputs, err := ParseWorkflowInputs(body)
	if err != nil || status != StatusRequested || len(inputs) != 2 {
		t.Fatalf("status %q, %d inputs, err %v", status, len(inputs), err)
	}
	if inputs[0].Query != "Condition?patient.identifier=x|1" || inputs[1].Reference != "DocumentReference/9" {
		t.Errorf("inputs %+v", inputs)
	}
}

func TestOnlyStatusChanged(t *testing.T) {
	cur := []byte(`{"resourceType":"Task","id":"1","meta":{"versionId":"2"},"status":"in-progress","intent":"order","input":[{"valueString":"a"}]}`)
	for _, tc := range []struct {
		next string
		ok   bool
	}{
		{`{"resourceType":"Task","id":"1","status":"completed","intent":"order","input":[{"valueString":"a"}]}`, true},
		{`{"resourceType":"Task","id":"1","meta":{"versionId":"9"},"status":"failed","input":[{"valueString":"a"}],"intent":"order"}`, true},
		{`{"resourceType":"Task","id":"1","status":"completed","intent":"order","input":[{"valueString":"b"}]}`, false},
		{`{"resourceType":"Task","id":"1","status":"completed","intent":"order"}`, false},
		{`{"resourceType":"Task","id":"1","status":"completed","intent":"order","input":[{"valueString":"a"}],"owner":{}}`, false},
		{`not json`, false},
	} {
		if _, ok := OnlyStatusChanged(cur, []byte(tc.next)); ok != tc.ok {
			t.Errorf("OnlyStatusChanged(%s) = %v, want %v", tc.next, ok, tc.ok)
		}
	}
}

func TestRedactAuthBase(t *testing.T) {
	raw := BuildNotification(validSpec(time.Now()))
	out, err := redactAuthBase(raw)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret-Zx9_q7Lm-4Kp") {
		t.Error("the stored notification still holds the authorization base")
	}
	if !strings.Contains(string(out), ProfileNotification) {
		t.Error("the profile was dropped")
	}
}

func TestBuildNotificationIsValidFHIR(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for name, edit := range map[string]func(*NotificationSpec){
		"complete":          func(s *NotificationSpec) { s.Description, s.SenderName, s.ReceiverName = "Verwijzing", "A", "B" },
		"no description":    func(s *NotificationSpec) { s.Description = "" },
		"no group or names": func(s *NotificationSpec) { s.GroupIdentifier, s.SenderName, s.ReceiverName = "", "", "" },
	} {
		t.Run(name, func(t *testing.T) {
			spec := validSpec(now)
			edit(&spec)
			if issues := validate.Resource(fhir.STU3, BuildNotification(spec)); len(issues) > 0 {
				t.Errorf("the built Task is not valid FHIR: %+v", issues)
			}
		})
	}
}

// TestSetStatusKeepsTheRest checks that SetStatus changes the status and
// nothing else, and decodes and writes again only what it must.
func TestSetStatusKeepsTheRest(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"resourceType":"Task","status":"requested","note":[{"text":"<b> & \"c\""}],"z":1}`,
			`{"resourceType":"Task","status":"completed","note":[{"text":"<b> & \"c\""}],"z":1}`},
		{`{ "status" : "requested" , "id": "x" }`, `{ "status" : "completed" , "id": "x" }`},
		{`{"st\u0061tus":"requested","id":"x"}`, `{"st\u0061tus":"completed","id":"x"}`},
		// No status, or two: decoded and written again.
		{`{"resourceType":"Task","id":"x"}`, `{"id":"x","resourceType":"Task","status":"completed"}`},
		{`{"status":"requested","st\u0061tus":"accepted"}`, `{"status":"completed"}`},
	} {
		got, err := SetStatus([]byte(c.in), StatusCompleted)
		if err != nil || string(got) != c.want {
			t.Errorf("SetStatus(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	if _, err := SetStatus([]byte(`{"status":"requested"`), StatusCompleted); err == nil {
		t.Error("SetStatus took invalid JSON")
	}
}

// TestOnlyStatusChangedSpliced checks that a body sent back with only its
// status replaced is taken without decoding, and that anything else is
// still judged member by member.
func TestOnlyStatusChangedSpliced(t *testing.T) {
	cur := []byte(`{"resourceType":"Task","id":"1","meta":{"versionId":"2"},"status":"in-progress","input":[{"valueString":"a"}]}`)
	for _, c := range []struct {
		next   string
		status string
		ok     bool
	}{
		{`{"resourceType":"Task","id":"1","meta":{"versionId":"2"},"status":"completed","input":[{"valueString":"a"}]}`, StatusCompleted, true},
		{`{"input":[{"valueString":"a"}],"resourceType":"Task","status":"completed"}`, StatusCompleted, true},
		{`{"resourceType":"Task","id":"1","meta":{"versionId":"2"},"status":"completed","input":[{"valueString":"b"}]}`, "", false},
		{`{"resourceType":"Task","id":"1","meta":{"versionId":"2"},"status":7,"input":[{"valueString":"a"}]}`, "", false},
		{`{"resourceType":"Task","id":"1","meta":{"versionId":"2"},"status":"completed","input":[{"valueString":"a"}]}x`, "", false},
	} {
		status, ok := OnlyStatusChanged(cur, []byte(c.next))
		if status != c.status || ok != c.ok {
			t.Errorf("OnlyStatusChanged(%s) = %q, %v; want %q, %v", c.next, status, ok, c.status, c.ok)
		}
	}
}
