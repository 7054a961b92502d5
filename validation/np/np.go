// Package np is the validation kit's Notified Pull machinery that every
// care application's kit on that pattern shares (validation/bgz,
// validation/eoverdracht): reading the node's notification Task as the
// receiver, the TA's shape checks of notification and workflow Task, and
// the kit's own notification when it plays the sender. The checks are
// written from the technical agreement (SPEC §4), not with the node's own
// builders, so that a mistake both share shows.
package np

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/validation"
)

// Code systems of the TA Notified Pull.
const (
	SystemTaskParameter = "http://fhir.nl/fhir/NamingSystem/TaskParameter"
	SystemTaskCode      = "http://fhir.nl/fhir/NamingSystem/TaskCode"
	SystemRFC3986       = "urn:ietf:rfc:3986"
	ProfileNotification = "http://fhir.nl/fhir/StructureDefinition/nl-vzvz-TaskNotifiedPull"
)

// Secret is a fresh random authorization base.
func Secret() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// UUID is a fresh urn:uuid.
func UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return "urn:uuid:" + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// TaskInput returns the input of a Task typed TaskParameter|code.
func TaskInput(task map[string]any, code string) map[string]any {
	ins, _ := task["input"].([]any)
	for _, x := range ins {
		in, _ := x.(map[string]any)
		if HasCoding(in["type"], SystemTaskParameter, code) {
			return in
		}
	}
	return nil
}

// HasCoding reports whether the CodeableConcept cc has system|code.
func HasCoding(cc any, system, code string) bool {
	m, _ := cc.(map[string]any)
	cs, _ := m["coding"].([]any)
	for _, x := range cs {
		c, _ := x.(map[string]any)
		if c["system"] == system && c["code"] == code {
			return true
		}
	}
	return false
}

// Path reads a nested element: Path(t, "requester", "onBehalfOf", "identifier", "value").
func Path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// Str is v when it is a string, else "".
func Str(v any) string { s, _ := v.(string); return s }

// HasProfile reports whether the resource r declares profile.
func HasProfile(r map[string]any, profile string) bool {
	ps, _ := Path(r, "meta", "profile").([]any)
	for _, p := range ps {
		if p == profile {
			return true
		}
	}
	return false
}

// Notified is what the node (as sender) did when told to refer a patient
// to the kit: the requests up to and including its notification Task.
type Notified struct {
	Before []validation.Inbound // requests before the notification
	Note   validation.Inbound
	Task   map[string]any
}

// AwaitNotification runs refer (which makes the node refer a patient to
// the kit) once per run and key, and waits for the notification Task on
// the kit's Task endpoint. The authorization base is redacted from the
// report.
func AwaitNotification(p *validation.Probe, key string, refer func(p *validation.Probe) error) (*Notified, error) {
	v, err := p.Once(key, func(p *validation.Probe) (any, error) {
		env := p.Env()
		cp := env.Counterpart
		mark := cp.Mark()
		if err := refer(p); err != nil {
			return nil, fmt.Errorf("the driver could not make the node refer: %w", err)
		}
		isNote := func(in validation.Inbound) bool {
			return in.Method == http.MethodPost && strings.HasSuffix(in.Path, "/"+cp.URA+"/Task")
		}
		if !cp.Await(p.Context(), mark, env.Config.Wait, func(ins []validation.Inbound) bool {
			for _, in := range ins {
				if isNote(in) {
					return true
				}
			}
			return false
		}) {
			return nil, fmt.Errorf("no notification Task arrived within %s", env.Config.Wait)
		}
		n := &Notified{}
		for _, in := range cp.Inbound(mark) {
			if isNote(in) {
				n.Note = in
				break
			}
			n.Before = append(n.Before, in)
		}
		err := json.Unmarshal(n.Note.Body, &n.Task)
		if ab := TaskInput(n.Task, "authorization-base"); ab != nil {
			if s, ok := ab["valueString"].(string); ok {
				p.Redact(s)
			}
		}
		p.Record(cp.Exchanges(append(n.Before, n.Note))...)
		if err != nil {
			return n, fmt.Errorf("the notification is not JSON: %w", err)
		}
		return n, nil
	})
	n, _ := v.(*Notified)
	p.Record(p.ScenarioExchanges(key)...)
	return n, err
}

// NotificationShape checks a notification Task against SPEC §4 step 2:
// about patient, from senderURA to receiverURA, basedOn a Task on
// senderBase.
func NotificationShape(t map[string]any, patient, senderURA, receiverURA, senderBase string) validation.Problems {
	var ps validation.Problems
	ps.Check(t["resourceType"] == "Task", "resourceType %v", t["resourceType"])
	ps.Check(HasProfile(t, ProfileNotification), "meta.profile lacks nl-vzvz-TaskNotifiedPull")
	ps.Check(t["status"] == "requested", "status %v, want requested", t["status"])
	ps.Check(t["intent"] == "proposal", "intent %v, want proposal", t["intent"])
	ps.Check(HasCoding(t["code"], SystemTaskCode, "pull-notification"), "code is not TaskCode|pull-notification")
	ids, _ := t["identifier"].([]any)
	hasID := false
	for _, id := range ids {
		hasID = hasID || (Str(Path(id, "system")) == SystemRFC3986 && Str(Path(id, "value")) != "")
	}
	ps.Check(hasID, "no identifier with system urn:ietf:rfc:3986")
	ps.Check(Str(Path(t, "groupIdentifier", "system")) == SystemRFC3986 && Str(Path(t, "groupIdentifier", "value")) != "", "no groupIdentifier with system urn:ietf:rfc:3986")
	end, err := time.Parse(time.RFC3339, Str(Path(t, "restriction", "period", "end")))
	ps.Check(err == nil && end.After(time.Now()), "restriction.period.end %q is not a future dateTime", Str(Path(t, "restriction", "period", "end")))
	ps.Check(nl.CanonicalSystem(Str(Path(t, "for", "identifier", "system"))) == nl.SystemBSN, "for.identifier is not a BSN")
	ps.Check(Str(Path(t, "for", "identifier", "value")) == patient, "for.identifier.value %q is not the referred patient", Str(Path(t, "for", "identifier", "value")))
	ps.Check(nl.CanonicalSystem(Str(Path(t, "requester", "agent", "identifier", "system"))) == nl.SystemUZISys, "requester.agent is not an UZI system number")
	ps.Check(nl.CanonicalSystem(Str(Path(t, "requester", "onBehalfOf", "identifier", "system"))) == nl.SystemURA &&
		Str(Path(t, "requester", "onBehalfOf", "identifier", "value")) == senderURA, "requester.onBehalfOf is not the sender's URA %s", senderURA)
	ps.Check(nl.CanonicalSystem(Str(Path(t, "owner", "identifier", "system"))) == nl.SystemURA &&
		Str(Path(t, "owner", "identifier", "value")) == receiverURA, "owner is not the receiver's URA %s", receiverURA)
	refs, _ := t["basedOn"].([]any)
	ps.Check(len(refs) == 1, "%d basedOn references, want 1 (the workflow Task)", len(refs))
	if len(refs) == 1 {
		ref := Str(Path(refs[0], "reference"))
		ps.Check(strings.HasPrefix(ref, senderBase+"/Task/"), "basedOn %q is not a Task on the sender's FHIR endpoint %s", ref, senderBase)
	}
	ab := TaskInput(t, "authorization-base")
	ps.Check(ab != nil && Str(ab["valueString"]) != "", "no authorization-base input with a valueString")
	gw := TaskInput(t, "get-workflow-task")
	_, isBool := gw["valueBoolean"].(bool)
	ps.Check(gw != nil && isBool, "no get-workflow-task input with a valueBoolean")
	return ps
}

// NotificationInputs checks the notification's inputs: one
// authorization-base, one get-workflow-task true, nothing else.
func NotificationInputs(task map[string]any) validation.Problems {
	var ps validation.Problems
	ins, _ := task["input"].([]any)
	counts := map[string]int{}
	for i, x := range ins {
		in, _ := x.(map[string]any)
		switch {
		case HasCoding(in["type"], SystemTaskParameter, "authorization-base"):
			counts["authorization-base"]++
			ps.Check(Str(in["valueString"]) != "", "the authorization-base input has no valueString")
		case HasCoding(in["type"], SystemTaskParameter, "get-workflow-task"):
			counts["get-workflow-task"]++
			ps.Check(in["valueBoolean"] == true, "get-workflow-task is %v, want true", in["valueBoolean"])
		default:
			ps.Add("input %d is neither authorization-base nor get-workflow-task (type %v)", i, in["type"])
		}
	}
	ps.Check(counts["authorization-base"] == 1, "%d authorization-base inputs, want 1", counts["authorization-base"])
	ps.Check(counts["get-workflow-task"] == 1, "%d get-workflow-task inputs, want 1", counts["get-workflow-task"])
	return ps
}

// WorkflowParties checks the workflow Task against the notification that
// pointed to it: the sender, the receiver, the same period, not final.
func WorkflowParties(wf, note map[string]any, senderURA, receiverURA string) validation.Problems {
	var ps validation.Problems
	// The sender may mark the Task in-progress once the receiver redeemed
	// the authorization base; a final status before the pull is wrong.
	switch wf["status"] {
	case "requested", "received", "accepted", "in-progress":
	default:
		ps.Add("status %v when first read, want requested (or in-progress, once the token was granted)", wf["status"])
	}
	ps.Check(nl.CanonicalSystem(Str(Path(wf, "requester", "onBehalfOf", "identifier", "system"))) == nl.SystemURA &&
		Str(Path(wf, "requester", "onBehalfOf", "identifier", "value")) == senderURA, "requester.onBehalfOf is not the sender's URA %s", senderURA)
	ps.Check(nl.CanonicalSystem(Str(Path(wf, "owner", "identifier", "system"))) == nl.SystemURA &&
		Str(Path(wf, "owner", "identifier", "value")) == receiverURA, "owner is not the receiver's URA %s", receiverURA)
	wEnd, err1 := time.Parse(time.RFC3339, Str(Path(wf, "restriction", "period", "end")))
	nEnd, err2 := time.Parse(time.RFC3339, Str(Path(note, "restriction", "period", "end")))
	ps.Check(err1 == nil && err2 == nil && wEnd.Equal(nEnd), "restriction.period.end %q, the notification's is %q",
		Str(Path(wf, "restriction", "period", "end")), Str(Path(note, "restriction", "period", "end")))
	return ps
}

// Notification is the kit's notification Task when it plays the sender,
// written from SPEC §4 step 2.
type Notification struct {
	Identifier, Patient, Sender, SenderSystem, Owner, Workflow, AuthBase string
	Expires                                                              time.Time
	// Group is the groupIdentifier: the identifier itself unless the
	// notification updates an earlier referral.
	Group string
	// NoWorkflowRead sends get-workflow-task false.
	NoWorkflowRead bool
}

// JSON is the notification Task.
func (n Notification) JSON() map[string]any {
	param := func(code string) map[string]any {
		return map[string]any{"coding": []any{map[string]any{"system": SystemTaskParameter, "code": code}}}
	}
	ident := func(system, value string) map[string]any {
		return map[string]any{"identifier": map[string]any{"system": system, "value": value}}
	}
	return map[string]any{
		"resourceType":    "Task",
		"meta":            map[string]any{"profile": []any{ProfileNotification}},
		"identifier":      []any{map[string]any{"system": SystemRFC3986, "value": n.Identifier}},
		"groupIdentifier": map[string]any{"system": SystemRFC3986, "value": cmp.Or(n.Group, n.Identifier)},
		"basedOn":         []any{map[string]any{"reference": n.Workflow}},
		"status":          "requested",
		"intent":          "proposal",
		"code":            map[string]any{"coding": []any{map[string]any{"system": SystemTaskCode, "code": "pull-notification"}}},
		"for":             ident(nl.SystemBSN, n.Patient),
		"authoredOn":      time.Now().UTC().Format(time.RFC3339),
		"requester":       map[string]any{"agent": ident(nl.SystemUZISys, n.SenderSystem), "onBehalfOf": ident(nl.SystemURA, n.Sender)},
		"owner":           ident(nl.SystemURA, n.Owner),
		"restriction":     map[string]any{"period": map[string]any{"end": n.Expires.UTC().Format(time.RFC3339)}},
		"input": []any{
			map[string]any{"type": param("authorization-base"), "valueString": n.AuthBase},
			map[string]any{"type": param("get-workflow-task"), "valueBoolean": !n.NoWorkflowRead},
		},
	}
}

// Offer creates workflow (a workflow Task) in the kit's record and a
// notification for it to the node, whose authorization base buys a token
// of scope for the kit's record; nothing is sent yet.
func Offer(p *validation.Probe, scope, patient string, workflow func(expires time.Time) []byte) (Notification, error) {
	env := p.Env()
	cp := env.Counterpart
	expires := time.Now().Add(time.Hour)
	id, err := cp.Create(p.Context(), workflow(expires))
	if err != nil {
		return Notification{}, err
	}
	n := Notification{Identifier: UUID(), Patient: patient, Sender: cp.URA, SenderSystem: env.Config.Kit.SystemUZI,
		Owner: env.Target.URA, Workflow: cp.Base + "/Task/" + id, AuthBase: Secret(), Expires: expires}
	cp.AddOffer(n.AuthBase, validation.Offer{Patient: n.Patient, WorkflowTask: n.Workflow, Scope: scope, Expires: expires})
	return n, nil
}

// NotifyToken is the kit's token for the node's notification endpoint,
// asked once per run.
func NotifyToken(p *validation.Probe) (string, error) {
	return p.ClientToken(validation.ScopeNotify, "notification token")
}

// PostNotification sends a notification Task to the node's Task endpoint.
func PostNotification(p *validation.Probe, token string, body []byte) (*validation.Response, error) {
	endpoint := p.Env().Target.NotificationEndpoint()
	if endpoint == "" {
		return nil, errors.New("the addressbook lists no notification endpoint")
	}
	return p.Send(p.Env().HTTP, http.MethodPost, endpoint, "application/fhir+json", token, body)
}

// LastSegment is the last path segment of u (a resource id).
func LastSegment(u string) string { return u[strings.LastIndex(u, "/")+1:] }
