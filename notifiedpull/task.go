package notifiedpull

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/nl"
)

// Wire constants of the TA Notified Pull (SPEC §4).
const (
	ProfileNotification = "http://fhir.nl/fhir/StructureDefinition/nl-vzvz-TaskNotifiedPull"
	SystemTaskCode      = "http://fhir.nl/fhir/NamingSystem/TaskCode"
	CodePullNotify      = "pull-notification"
	SystemTaskParameter = "http://fhir.nl/fhir/NamingSystem/TaskParameter"
	ParamAuthBase       = "authorization-base"
	ParamGetWorkflow    = "get-workflow-task"
	SystemRFC3986       = "urn:ietf:rfc:3986"
	// SystemResourceTypes types a workflow input that reads one resource
	// the participant named (ReferRequest.Reads): its code is the type.
	SystemResourceTypes = "http://hl7.org/fhir/resource-types"
)

// Task statuses used on both sides (FHIR TaskStatus).
const (
	StatusRequested  = "requested"
	StatusAccepted   = "accepted"
	StatusInProgress = "in-progress"
	StatusCompleted  = "completed"
	StatusRejected   = "rejected"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
)

// Final reports whether a Task status ends the exchange.
func Final(status string) bool {
	switch status {
	case StatusCompleted, StatusRejected, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// Minimal typed views of the Task elements the agreement needs. The stored
// Task keeps every element the peer sent; these are for checking only.
type (
	coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code,omitempty"`
		Display string `json:"display,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value,omitempty"`
	}
	reference struct {
		Reference  string      `json:"reference,omitempty"`
		Identifier *identifier `json:"identifier,omitempty"`
		Display    string      `json:"display,omitempty"`
	}
	taskInput struct {
		Type           codeableConcept `json:"type"`
		ValueString    *string         `json:"valueString,omitempty"`
		ValueBoolean   *bool           `json:"valueBoolean,omitempty"`
		ValueReference *reference      `json:"valueReference,omitempty"`
	}
	task struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id,omitempty"`
		Meta         *struct {
			Profile []string `json:"profile,omitempty"`
		} `json:"meta,omitempty"`
		Identifier      []identifier     `json:"identifier,omitempty"`
		BasedOn         []reference      `json:"basedOn,omitempty"`
		GroupIdentifier *identifier      `json:"groupIdentifier,omitempty"`
		Status          string           `json:"status"`
		Intent          string           `json:"intent"`
		Code            *codeableConcept `json:"code,omitempty"`
		For             *reference       `json:"for,omitempty"`
		AuthoredOn      string           `json:"authoredOn,omitempty"`
		Requester       *struct {
			Agent      *reference `json:"agent,omitempty"`
			OnBehalfOf *reference `json:"onBehalfOf,omitempty"`
		} `json:"requester,omitempty"`
		Owner       *reference `json:"owner,omitempty"`
		Restriction *struct {
			Period *struct {
				End string `json:"end,omitempty"`
			} `json:"period,omitempty"`
		} `json:"restriction,omitempty"`
		Input []taskInput `json:"input,omitempty"`
	}
)

// Notification is the content of a notification Task that the receiver acts on.
type Notification struct {
	Identifier        string // urn:uuid:…, system urn:ietf:rfc:3986
	GroupIdentifier   string
	PatientBSN        string
	SenderURA         string // requester.onBehalfOf
	SenderSystem      string // requester.agent (UZI system number)
	OwnerURA          string
	WorkflowTask      string // absolute URL of the workflow Task (basedOn)
	AuthorizationBase string
	GetWorkflowTask   bool
	Expires           time.Time
	Status            string
}

// NotificationSpec is what the sender puts into a new notification Task.
type NotificationSpec struct {
	Identifier      string
	GroupIdentifier string
	PatientBSN      string
	SenderURA       string
	SenderName      string
	SenderSystem    string
	ReceiverURA     string
	ReceiverName    string
	WorkflowTask    string
	AuthBase        string
	Expires         time.Time
	Authored        time.Time
	Description     string
}

// BuildNotification renders the STU3 notification Task of SPEC §4.
func BuildNotification(s NotificationSpec) json.RawMessage {
	t := true
	base := s.AuthBase
	doc := map[string]any{
		"resourceType":    "Task",
		"meta":            map[string]any{"profile": []string{ProfileNotification}},
		"identifier":      []identifier{{System: SystemRFC3986, Value: s.Identifier}},
		"basedOn":         []reference{{Reference: s.WorkflowTask}},
		"groupIdentifier": identifier{System: SystemRFC3986, Value: s.GroupIdentifier},
		"status":          StatusRequested,
		"intent":          "proposal",
		"code":            codeableConcept{Coding: []coding{{System: SystemTaskCode, Code: CodePullNotify}}},
		"for":             reference{Identifier: &identifier{System: nl.SystemBSN, Value: s.PatientBSN}},
		"authoredOn":      s.Authored.UTC().Format(time.RFC3339),
		"requester": map[string]any{
			"agent":      reference{Identifier: &identifier{System: nl.SystemUZISys, Value: s.SenderSystem}},
			"onBehalfOf": reference{Identifier: &identifier{System: nl.SystemURA, Value: s.SenderURA}, Display: s.SenderName},
		},
		"owner":       reference{Identifier: &identifier{System: nl.SystemURA, Value: s.ReceiverURA}, Display: s.ReceiverName},
		"restriction": map[string]any{"period": map[string]string{"end": s.Expires.UTC().Format(time.RFC3339)}},
		"input": []taskInput{
			{Type: codeableConcept{Coding: []coding{{System: SystemTaskParameter, Code: ParamAuthBase}}}, ValueString: &base},
			{Type: codeableConcept{Coding: []coding{{System: SystemTaskParameter, Code: ParamGetWorkflow}}}, ValueBoolean: &t},
		},
	}
	if s.Description != "" { // FHIR has no empty strings: leave it out
		doc["description"] = s.Description
	}
	b, _ := json.Marshal(doc)
	return b
}

// ErrInvalidNotification marks a notification Task that breaks the agreement.
var ErrInvalidNotification = errors.New("invalid notification Task")

// ParseNotification decodes and checks a notification Task. Every problem is
// reported as an issue with its location; the returned error is a *fhir.Error
// with status 400 (422 for business rule breaches) wrapping ErrInvalidNotification.
func ParseNotification(body []byte, now time.Time) (Notification, error) {
	return parseNotification(body, now, true)
}

// parseNotification is ParseNotification; checkBSN false is a test's fault
// (faults.NotificationBSNUnchecked), never a production path.
func parseNotification(body []byte, now time.Time, checkBSN bool) (Notification, error) {
	var t task
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&t); err != nil {
		return Notification{}, &fhir.Error{Status: http.StatusBadRequest, Cause: ErrInvalidNotification,
			Issues: []fhir.Issue{{Severity: "error", Code: "structure", Diagnostics: "body is not a valid FHIR JSON Task: " + jsonProblem(err)}}}
	}
	var issues []fhir.Issue
	bad := func(code, loc, format string, args ...any) {
		issues = append(issues, fhir.Issue{Severity: "error", Code: code, Location: []string{loc}, Diagnostics: fmt.Sprintf(format, args...)})
	}
	n := Notification{Status: t.Status}
	if t.ResourceType != "Task" {
		bad("invalid", "resourceType", "resourceType must be Task, got %q", t.ResourceType)
	}
	if t.Status != StatusRequested && t.Status != StatusCancelled {
		bad("invalid", "Task.status", "status must be requested (or cancelled to withdraw), got %q", t.Status)
	}
	if t.Intent != "proposal" {
		bad("invalid", "Task.intent", "intent must be proposal, got %q", t.Intent)
	}
	if t.Code == nil || !hasCoding(t.Code.Coding, SystemTaskCode, CodePullNotify) {
		bad("required", "Task.code", "code must be %s|%s", SystemTaskCode, CodePullNotify)
	}
	// Every identifier is checked by the syntax of its system; one that is
	// not well-formed is never taken, so no malformed id reaches the state.
	valid := func(id *identifier, loc string) bool {
		if err := checkIdentifier(id.System, id.Value); err != nil {
			bad("value", loc, "%s", err)
			return false
		}
		return true
	}
	haveID := false
	for i, id := range t.Identifier {
		if !valid(&id, fmt.Sprintf("Task.identifier[%d].value", i)) {
			haveID = haveID || id.System == SystemRFC3986
			continue
		}
		if id.System == SystemRFC3986 && id.Value != "" {
			n.Identifier, haveID = id.Value, true
		}
	}
	if !haveID {
		bad("required", "Task.identifier", "an identifier with system %s is required", SystemRFC3986)
	}
	if t.GroupIdentifier != nil && valid(t.GroupIdentifier, "Task.groupIdentifier.value") {
		n.GroupIdentifier = t.GroupIdentifier.Value
	}
	if t.For == nil || t.For.Identifier == nil || nl.CanonicalSystem(t.For.Identifier.System) != nl.SystemBSN {
		bad("required", "Task.for.identifier", "the patient must be identified by BSN (%s)", nl.SystemBSN)
	} else if err := nl.ValidateBSN(t.For.Identifier.Value); err != nil && checkBSN {
		bad("value", "Task.for.identifier.value", "the patient's BSN is not valid: it must be 9 digits passing the 11-proef")
	} else {
		n.PatientBSN = t.For.Identifier.Value
	}
	if t.Requester == nil || t.Requester.OnBehalfOf == nil || t.Requester.OnBehalfOf.Identifier == nil ||
		nl.CanonicalSystem(t.Requester.OnBehalfOf.Identifier.System) != nl.SystemURA {
		bad("required", "Task.requester.onBehalfOf.identifier", "the sending organisation must be identified by URA")
	} else if valid(t.Requester.OnBehalfOf.Identifier, "Task.requester.onBehalfOf.identifier.value") {
		n.SenderURA = t.Requester.OnBehalfOf.Identifier.Value
	}
	if t.Requester != nil && t.Requester.Agent != nil && t.Requester.Agent.Identifier != nil &&
		valid(t.Requester.Agent.Identifier, "Task.requester.agent.identifier.value") {
		n.SenderSystem = t.Requester.Agent.Identifier.Value
	}
	if t.Owner == nil || t.Owner.Identifier == nil || nl.CanonicalSystem(t.Owner.Identifier.System) != nl.SystemURA {
		bad("required", "Task.owner.identifier", "the receiving organisation must be identified by URA")
	} else if valid(t.Owner.Identifier, "Task.owner.identifier.value") {
		n.OwnerURA = t.Owner.Identifier.Value
	}
	if len(t.BasedOn) != 1 || t.BasedOn[0].Reference == "" {
		bad("required", "Task.basedOn", "exactly one basedOn reference to the workflow Task is required")
	} else {
		n.WorkflowTask = t.BasedOn[0].Reference
		if !strings.HasPrefix(n.WorkflowTask, "https://") {
			bad("value", "Task.basedOn.reference", "the workflow Task reference must be an absolute https URL")
		}
	}
	if t.Restriction == nil || t.Restriction.Period == nil || t.Restriction.Period.End == "" {
		bad("required", "Task.restriction.period.end", "an end of the period the data may be pulled in is required")
	} else if end, err := parseFHIRTime(t.Restriction.Period.End); err != nil {
		bad("value", "Task.restriction.period.end", "not a valid dateTime: %q", t.Restriction.Period.End)
	} else {
		n.Expires = end
		if t.Status == StatusRequested && !end.After(now) {
			bad("business-rule", "Task.restriction.period.end", "the notification has already expired")
		}
	}
	var haveBase, haveGet bool
	for i, in := range t.Input {
		switch {
		case hasCoding(in.Type.Coding, SystemTaskParameter, ParamAuthBase):
			haveBase = true
			if in.ValueString == nil || *in.ValueString == "" {
				bad("required", fmt.Sprintf("Task.input[%d].valueString", i), "authorization-base needs a non-empty valueString")
			} else if err := checkAuthBase(*in.ValueString); err != nil {
				bad("value", fmt.Sprintf("Task.input[%d].valueString", i), "%s", err)
			} else {
				n.AuthorizationBase = *in.ValueString
			}
		case hasCoding(in.Type.Coding, SystemTaskParameter, ParamGetWorkflow):
			haveGet = true
			if in.ValueBoolean == nil {
				bad("required", fmt.Sprintf("Task.input[%d].valueBoolean", i), "get-workflow-task needs a valueBoolean")
			} else {
				n.GetWorkflowTask = *in.ValueBoolean
			}
		}
	}
	if !haveBase {
		bad("required", "Task.input", "input authorization-base (%s) is required", SystemTaskParameter)
	}
	if !haveGet {
		bad("required", "Task.input", "input get-workflow-task (%s) is required", SystemTaskParameter)
	}
	if len(issues) > 0 {
		return n, &fhir.Error{Status: http.StatusBadRequest, Issues: issues, Cause: ErrInvalidNotification}
	}
	// The decoder above matches element names case-insensitively and stops
	// after the first JSON value; the Task is stored as sent, so it must also
	// be one the validator accepts, or what was checked is not what is kept.
	if issues := validate.Resource(fhir.STU3, body); len(issues) > 0 {
		return n, &fhir.Error{Status: http.StatusBadRequest, Issues: issues, Cause: ErrInvalidNotification}
	}
	return n, nil
}

// WorkflowInput is one input of a workflow Task: a search the receiver may
// run, or a single resource it may read, typed with a code.
type WorkflowInput struct {
	System, Code, Display string
	Query                 string // relative search URL, e.g. Condition?patient.identifier=…
	Reference             string // relative reference of a single resource
}

// WorkflowSpec is what a new workflow Task holds.
type WorkflowSpec struct {
	Identifier   string
	PatientID    string // local Patient id
	PatientBSN   string
	SenderURA    string
	SenderName   string
	SenderSystem string
	ReceiverURA  string
	ReceiverName string
	Profile      string // the workflow Task's profile; none when empty
	Code         coding
	Expires      time.Time
	Authored     time.Time
	Inputs       []WorkflowInput
}

// BuildWorkflowTask renders the sender's workflow Task (intent order) whose
// inputs are the searches the receiver may run.
func BuildWorkflowTask(s WorkflowSpec) json.RawMessage {
	inputs := make([]map[string]any, 0, len(s.Inputs))
	for _, in := range s.Inputs {
		m := map[string]any{"type": codeableConcept{Coding: []coding{{System: in.System, Code: in.Code, Display: in.Display}}}}
		if in.Query != "" {
			m["valueString"] = in.Query
		} else {
			m["valueReference"] = reference{Reference: in.Reference}
		}
		inputs = append(inputs, m)
	}
	doc := map[string]any{
		"resourceType": "Task",
		"identifier":   []identifier{{System: SystemRFC3986, Value: s.Identifier}},
		"status":       StatusRequested,
		"intent":       "order",
		"code":         codeableConcept{Coding: []coding{s.Code}},
		"for":          reference{Reference: "Patient/" + s.PatientID, Identifier: &identifier{System: nl.SystemBSN, Value: s.PatientBSN}},
		"authoredOn":   s.Authored.UTC().Format(time.RFC3339),
		"requester": map[string]any{
			"agent":      reference{Identifier: &identifier{System: nl.SystemUZISys, Value: s.SenderSystem}},
			"onBehalfOf": reference{Identifier: &identifier{System: nl.SystemURA, Value: s.SenderURA}, Display: s.SenderName},
		},
		"owner":       reference{Identifier: &identifier{System: nl.SystemURA, Value: s.ReceiverURA}, Display: s.ReceiverName},
		"restriction": map[string]any{"period": map[string]string{"end": s.Expires.UTC().Format(time.RFC3339)}},
		"input":       inputs,
	}
	if s.Profile != "" {
		doc["meta"] = map[string]any{"profile": []string{s.Profile}}
	}
	b, _ := json.Marshal(doc)
	return b
}

// ErrInvalidRead marks a read input that is not a relative "Type/id".
var ErrInvalidRead = errors.New("not a read of one resource (Type/id)")

// ParseRead splits a relative reference "Type/id" (an optional leading
// '/'), refusing anything else: a search, a version, an absolute URL.
func ParseRead(ref string) (typ, id string, err error) {
	typ, id, ok := strings.Cut(strings.TrimPrefix(ref, "/"), "/")
	if !ok || !isResourceType(typ) || !validID(id) {
		return "", "", fmt.Errorf("%w: %q", ErrInvalidRead, ref)
	}
	return typ, id, nil
}

func isResourceType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// validID is the FHIR id syntax: 1–64 of A–Z a–z 0–9 '-' '.'.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ParseWorkflowInputs returns the inputs of a workflow Task.
func ParseWorkflowInputs(body []byte) (status string, inputs []WorkflowInput, err error) {
	var t task
	if err := json.Unmarshal(body, &t); err != nil {
		return "", nil, fmt.Errorf("workflow Task: %w", err)
	}
	if t.ResourceType != "Task" {
		return "", nil, fmt.Errorf("workflow Task: resourceType %q", t.ResourceType)
	}
	for _, in := range t.Input {
		wi := WorkflowInput{}
		if len(in.Type.Coding) > 0 {
			wi.System, wi.Code, wi.Display = in.Type.Coding[0].System, in.Type.Coding[0].Code, in.Type.Coding[0].Display
		}
		switch {
		case in.ValueString != nil:
			wi.Query = *in.ValueString
		case in.ValueReference != nil:
			wi.Reference = in.ValueReference.Reference
		default:
			continue
		}
		inputs = append(inputs, wi)
	}
	return t.Status, inputs, nil
}

// SetStatus returns body with Task.status replaced. A body with one
// status keeps every other byte as it was; otherwise (no status, or more
// than one) it is decoded and written again.
func SetStatus(body []byte, status string) (json.RawMessage, error) {
	if fhir.ValidJSON(body) {
		if start, end, n := memberValue(body, "status"); n == 1 {
			q, err := json.Marshal(status)
			if err != nil {
				return nil, err
			}
			out := make([]byte, 0, len(body)-(end-start)+len(q))
			out = append(out, body[:start]...)
			out = append(out, q...)
			return append(out, body[end:]...), nil
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	m["status"], _ = json.Marshal(status)
	return json.Marshal(m)
}

// SetStatusReason returns body with Task.status replaced and
// Task.statusReason (an STU3 CodeableConcept) set to reason's text, or
// removed when reason is empty.
func SetStatusReason(body []byte, status, reason string) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	m["status"], _ = json.Marshal(status)
	delete(m, "statusReason")
	if reason != "" {
		m["statusReason"], _ = json.Marshal(map[string]string{"text": reason})
	}
	return json.Marshal(m)
}

// StatusReasonOf is the text of a Task's statusReason: its text, else
// its first coding's display or code.
func StatusReasonOf(body []byte) string {
	var t struct {
		StatusReason *statusReason `json:"statusReason"`
	}
	if json.Unmarshal(body, &t) != nil {
		return ""
	}
	return t.StatusReason.text()
}

// statusReason is a Task's statusReason, an STU3 CodeableConcept.
type statusReason struct {
	Text   string `json:"text"`
	Coding []struct {
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"coding"`
}

// text is the reason's text, else its first coding's display or code.
func (r *statusReason) text() string {
	if r == nil {
		return ""
	}
	if r.Text != "" {
		return r.Text
	}
	for _, c := range r.Coding {
		if c.Display != "" {
			return c.Display
		}
		if c.Code != "" {
			return c.Code
		}
	}
	return ""
}

// StatusChanged reports whether next differs from current in nothing but
// status and statusReason (and the server-managed id/meta), and returns
// the new status and whether the reason changed.
func StatusChanged(current, next []byte) (status string, reasonChanged, ok bool) {
	var a, b map[string]json.RawMessage
	if json.Unmarshal(current, &a) != nil || json.Unmarshal(next, &b) != nil {
		return "", false, false
	}
	reasonChanged = !jsonEqual(a["statusReason"], b["statusReason"])
	delete(a, "statusReason")
	delete(b, "statusReason")
	ca, _ := json.Marshal(a)
	cb, _ := json.Marshal(b)
	status, ok = OnlyStatusChanged(ca, cb)
	return status, reasonChanged, ok
}

// OnlyStatusChanged reports whether next differs from current in nothing but
// status (and the server-managed id/meta), and returns the new status.
func OnlyStatusChanged(current, next []byte) (string, bool) {
	// What a receiver sends back is what it read with the status
	// replaced (SetStatus): then nothing else needs decoding.
	if status, ok := statusSpliced(current, next); ok {
		return status, true
	}
	var a, b map[string]json.RawMessage
	if json.Unmarshal(current, &a) != nil || json.Unmarshal(next, &b) != nil {
		return "", false
	}
	var status string
	if json.Unmarshal(b["status"], &status) != nil {
		return "", false
	}
	for _, m := range []map[string]json.RawMessage{a, b} {
		delete(m, "status")
		delete(m, "meta")
		delete(m, "id")
		delete(m, "text")
	}
	if len(a) != len(b) {
		return "", false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !jsonEqual(va, vb) {
			return "", false
		}
	}
	return status, true
}

// statusSpliced reports whether next is current, byte for byte, but for
// the value of its one status member, a string, and returns that status.
func statusSpliced(current, next []byte) (string, bool) {
	if !fhir.ValidJSON(current) || !fhir.ValidJSON(next) {
		return "", false
	}
	cs, ce, cn := memberValue(current, "status")
	ns, ne, nn := memberValue(next, "status")
	if cn != 1 || nn != 1 || !bytes.Equal(current[:cs], next[:ns]) || !bytes.Equal(current[ce:], next[ne:]) {
		return "", false
	}
	var status string
	if json.Unmarshal(next[ns:ne], &status) != nil {
		return "", false
	}
	return status, true
}

func jsonEqual(a, b json.RawMessage) bool {
	// A receiver sends back what it read: byte for byte, but for status.
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func hasCoding(cs []coding, system, code string) bool {
	for _, c := range cs {
		if c.System == system && c.Code == code {
			return true
		}
	}
	return false
}

func parseFHIRTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid dateTime %q", s)
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("element %s has the wrong type", te.Field)
	}
	return "malformed JSON"
}
