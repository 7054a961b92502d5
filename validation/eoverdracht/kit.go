// Package eoverdracht holds the validation kit's cases for the care
// application eOverdracht (the nursing transfer, Nictiz eOverdracht 4.0 on
// FHIR STU3 over Notified Pull): the node as sender, with the kit as the
// receiving organisation that accepts or rejects the transfer, and the
// node as receiver, with the kit as the sending hospital whose request the
// node's participant decides on. The Notified Pull machinery is the kit's
// shared validation/np; this package adds what a transfer adds: the
// eOverdracht-Task with its document inputs, the documents read with
// Composition/{id}/$document, and the status flow requested → accepted |
// rejected → in-progress → completed with the receiver's reason.
package eoverdracht

import (
	"encoding/json"
	"time"

	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/np"
)

// Name is the care application's name and its OAuth scope.
const Name = eoverdracht.Name

// Sources the cases cite.
const (
	srcTANPTask = "Twiin TA Notified Pull, notification Task nl-vzvz-TaskNotifiedPull (SPEC §4 step 2)"
	srcTANPPull = "Twiin TA Notified Pull, the receiver's pull (SPEC §4 step 4)"
	srcEOTask   = "Nictiz eOverdracht 4.0 TA: the workflow Task eOverdracht-Task and its inputs"
	srcEOFlow   = "Nictiz eOverdracht 4.0 TA: Task status flow requested → accepted | rejected → in-progress → completed; Twiin TA Notified Pull, Task status (SPEC §4 step 3)"
	srcEODoc    = "Nictiz eOverdracht 4.0: aanmeldbericht (eOverdracht-AdvanceNotice) and overdrachtbericht (eOverdracht-NursingHandoff-*) as document Bundles, Composition/{id}/$document (FHIR STU3)"
)

// The scenario the kit refers and serves: Nictiz qualification scenario
// 1.1b (eoverdracht.DemoRecord). A node validated as sender holds it in
// its participant's record (as the Nictiz qualification asks of a
// sending system).
var (
	scenarioPatient   = eoverdracht.DemoPatientBSN
	scenarioDocuments = []string{eoverdracht.DemoAdvanceNotice, eoverdracht.DemoNursingHandoff}
)

// Application is eOverdracht as the kit needs it: the record it serves
// when it plays the sending hospital (the scenario's dossier).
func Application() validation.Application {
	return validation.Application{Name: Name, Title: "eOverdracht 4.0 (nursing transfer, STU3)",
		Record: func() (string, [][]byte, error) {
			rec, err := eoverdracht.DemoRecord(time.Now())
			if err != nil {
				return "", nil, err
			}
			return scenarioPatient, [][]byte{rec}, nil
		}}
}

// Cases returns every eOverdracht case, per role of the node under test.
func Cases() []validation.Case {
	return append(senderCases(), receiverCases()...)
}

// Register adds eOverdracht and its cases to reg.
func Register(reg *validation.Registry) error { return reg.AddApplication(Application(), Cases()...) }

var (
	sender   = []validation.Role{validation.RoleSender}
	receiver = []validation.Role{validation.RoleReceiver}
)

// documentInput is a workflow Task input referencing a document.
type documentInput struct {
	System, Code string
	Reference    string
}

// documentInputs are the workflow Task's valueReference inputs.
func documentInputs(wf map[string]any) []documentInput {
	var out []documentInput
	ins, _ := wf["input"].([]any)
	for _, x := range ins {
		in, _ := x.(map[string]any)
		ref := np.Str(np.Path(in, "valueReference", "reference"))
		if ref == "" {
			continue
		}
		d := documentInput{Reference: ref}
		if cs, _ := np.Path(in, "type", "coding").([]any); len(cs) > 0 {
			d.System, d.Code = np.Str(np.Path(cs[0], "system")), np.Str(np.Path(cs[0], "code"))
		}
		out = append(out, d)
	}
	return out
}

// workflowTask is the kit's eOverdracht-Task when it plays the sending
// hospital: the scenario's aanmeldbericht and overdrachtbericht as inputs.
func workflowTask(bsn, sender, owner string, expires time.Time) []byte {
	ref := func(c eoverdrachtCoding, doc string) map[string]any {
		return map[string]any{
			"type":           map[string]any{"coding": []any{map[string]any{"system": c.System, "code": c.Code, "display": c.Display}}},
			"valueReference": map[string]any{"reference": doc},
		}
	}
	t := map[string]any{
		"resourceType": "Task", "status": "requested", "intent": "order",
		"meta":        map[string]any{"profile": []any{eoverdracht.ProfileTask}},
		"identifier":  []any{map[string]any{"system": np.SystemRFC3986, "value": np.UUID()}},
		"code":        map[string]any{"coding": []any{map[string]any{"system": eoverdracht.TransferTask.System, "code": eoverdracht.TransferTask.Code, "display": eoverdracht.TransferTask.Display}}},
		"for":         map[string]any{"identifier": map[string]any{"system": nl.SystemBSN, "value": bsn}},
		"requester":   map[string]any{"agent": map[string]any{"identifier": map[string]any{"system": nl.SystemURA, "value": sender}}, "onBehalfOf": map[string]any{"identifier": map[string]any{"system": nl.SystemURA, "value": sender}}},
		"owner":       map[string]any{"identifier": map[string]any{"system": nl.SystemURA, "value": owner}},
		"restriction": map[string]any{"period": map[string]any{"end": expires.UTC().Format(time.RFC3339)}},
		"input": []any{
			ref(eoverdrachtCoding(eoverdracht.InputAdvanceNotice), eoverdracht.DemoAdvanceNotice),
			ref(eoverdrachtCoding(eoverdracht.InputNursingHandoff), eoverdracht.DemoNursingHandoff),
		},
	}
	b, _ := json.Marshal(t)
	return b
}

type eoverdrachtCoding struct{ System, Code, Display string }

// statusReason is a Task's statusReason text.
func statusReason(t map[string]any) string {
	if s := np.Str(np.Path(t, "statusReason", "text")); s != "" {
		return s
	}
	cs, _ := np.Path(t, "statusReason", "coding").([]any)
	for _, c := range cs {
		if s := np.Str(np.Path(c, "display")); s != "" {
			return s
		}
	}
	return ""
}
