package eoverdracht

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/fhir"
	fhirvalidate "github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/np"
)

// transfer is one transfer the node (as sender) made to the kit, as the
// kit pulled it: the notification, the token its authorization base
// bought, the workflow Task and each document's $document answer.
type transfer struct {
	note        *np.Notified
	token       string
	workflowURL string
	workflow    map[string]any
	raw         []byte
	inputs      []documentInput
	documents   map[string]*validation.Response // by input reference
}

// base is the sender's FHIR base the workflow Task is on.
func (t *transfer) base() string {
	return strings.TrimSuffix(t.workflowURL, "/Task/"+np.LastSegment(t.workflowURL))
}

// pullTransfer makes the node refer the scenario's patient to the kit
// with the scenario's documents, once per run and key, and pulls it as a
// receiver does: token, workflow Task, every document's $document.
func pullTransfer(p *validation.Probe, key string) (*transfer, error) {
	v, err := p.Once(key, func(p *validation.Probe) (any, error) {
		n, err := np.AwaitNotification(p, key+".notification", func(p *validation.Probe) error {
			d, ok := p.Env().Driver.(validation.DocumentReferrer)
			if !ok {
				return errors.New("the driver cannot refer with documents")
			}
			return d.ReferDocuments(p.Context(), scenarioPatient, p.Env().Counterpart.URA, Name, scenarioDocuments)
		})
		if n == nil || n.Task == nil {
			return nil, err
		}
		t := &transfer{note: n, documents: map[string]*validation.Response{}}
		if refs, _ := n.Task["basedOn"].([]any); len(refs) == 1 {
			t.workflowURL = np.Str(np.Path(refs[0], "reference"))
		}
		ab := np.Str(np.TaskInput(n.Task, "authorization-base")["valueString"])
		tok, resp, err := p.Token(p.Env().HTTP, oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{Name}, AuthorizationBase: ab})
		if err != nil {
			return t, err
		}
		if tok == "" {
			return t, fmt.Errorf("the authorization base bought no token: HTTP %d %s", resp.Status, resp.OAuthError())
		}
		t.token = tok
		resp, err = p.Get(p.Env().HTTP, t.workflowURL, tok)
		if err != nil {
			return t, err
		}
		if resp.Status != http.StatusOK || resp.JSON(&t.workflow) != nil {
			return t, fmt.Errorf("the workflow Task %s: HTTP %d", t.workflowURL, resp.Status)
		}
		t.raw = resp.Body
		t.inputs = documentInputs(t.workflow)
		for _, in := range t.inputs {
			resp, err := p.Get(p.Env().HTTP, t.base()+"/"+in.Reference+"/$document", tok)
			if err != nil {
				return t, err
			}
			t.documents[in.Reference] = resp
		}
		return t, nil
	})
	t, _ := v.(*transfer)
	p.Record(p.ScenarioExchanges(key)...)
	return t, err
}

// put updates the workflow Task with body and reads it back.
func (t *transfer) put(p *validation.Probe, body []byte) (*validation.Response, map[string]any, error) {
	resp, err := p.Send(p.Env().HTTP, http.MethodPut, t.workflowURL, "application/fhir+json; fhirVersion=3.0", t.token, body)
	if err != nil {
		return nil, nil, err
	}
	back, err := p.Get(p.Env().HTTP, t.workflowURL, t.token)
	if err != nil {
		return resp, nil, err
	}
	var now map[string]any
	_ = back.JSON(&now)
	return resp, now, nil
}

// withStatus is the workflow Task as read, with status (and a statusReason
// when reason is not empty) changed.
func withStatus(wf map[string]any, status, reason string) []byte {
	m := map[string]any{}
	for k, v := range wf {
		m[k] = v
	}
	delete(m, "meta")
	m["meta"] = wf["meta"]
	m["status"] = status
	delete(m, "statusReason")
	if reason != "" {
		m["statusReason"] = map[string]any{"text": reason}
	}
	b, _ := json.Marshal(m)
	return b
}

const (
	keyAccepted = "eoverdracht.sender.transfer"
	keyRejected = "eoverdracht.sender.transfer-rejected"
	// rejectReason is the reason the kit gives when it rejects.
	rejectReason = "Geen plaats beschikbaar (validatie)"
)

func senderCases() []validation.Case {
	return []validation.Case{
		{ID: "eoverdracht.sender.notification-shape", Title: "The transfer's notification Task has the TA Notified Pull shape", Roles: sender, Mandatory: true,
			Requirement: "Told to transfer the scenario's patient with the aanmeldbericht and the overdrachtbericht, the sender notifies the kit with a notification Task of profile nl-vzvz-TaskNotifiedPull (status requested, intent proposal, code pull-notification, for = the patient's BSN, owner = the kit's URA, basedOn = the workflow Task on the sender's FHIR endpoint) whose only inputs are one authorization-base and get-workflow-task true.",
			Source:      srcTANPTask,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				t, err := pullTransfer(p, keyAccepted)
				if t == nil || t.note == nil {
					return validation.Fail("%v", err)
				}
				env := p.Env()
				ps := np.NotificationShape(t.note.Task, scenarioPatient, env.Target.URA, env.Counterpart.URA, env.Target.FHIRBase())
				ps = append(ps, np.NotificationInputs(t.note.Task)...)
				return ps.Verdict("the notification Task conforms")
			}},
		{ID: "eoverdracht.sender.workflow-task", Title: "The workflow Task is an eOverdracht-Task referencing the transfer's documents", Roles: sender, Mandatory: true,
			Requirement: "The workflow Task, readable with the token the authorization base bought, has profile eOverdracht-Task, code SNOMED 308292007, intent order and status requested; it is about the patient and names the sender and the kit as in the notification; its inputs reference exactly one aanmeldbericht (type SNOMED 721915006) and the overdrachtbericht (type SNOMED 11171000146100) as Composition references.",
			Source:      srcEOTask + "; " + srcTANPPull,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				t, err := pullTransfer(p, keyAccepted)
				if t == nil || t.workflow == nil {
					return validation.Fail("%v", err)
				}
				wf := t.workflow
				var ps validation.Problems
				ps.Check(np.HasProfile(wf, eoverdracht.ProfileTask), "meta.profile lacks %s", eoverdracht.ProfileTask)
				ps.Check(np.HasCoding(wf["code"], eoverdracht.TransferTask.System, eoverdracht.TransferTask.Code), "code is not SNOMED %s", eoverdracht.TransferTask.Code)
				ps.Check(wf["intent"] == "order", "intent %v, want order", wf["intent"])
				ps.Check(wf["status"] == "requested", "status %v before the receiver decided, want requested", wf["status"])
				ps.Check(nl.CanonicalSystem(np.Str(np.Path(wf, "for", "identifier", "system"))) == nl.SystemBSN &&
					np.Str(np.Path(wf, "for", "identifier", "value")) == scenarioPatient, "for.identifier is not the patient's BSN %s", scenarioPatient)
				ps = append(ps, np.WorkflowParties(wf, t.note.Task, p.Env().Target.URA, p.Env().Counterpart.URA)...)
				counts := map[string]int{}
				for _, in := range t.inputs {
					ps.Check(strings.HasPrefix(in.Reference, "Composition/"), "input %s is not a Composition reference", in.Reference)
					counts[in.Code]++
				}
				ps.Check(counts[eoverdracht.InputAdvanceNotice.Code] == 1, "%d aanmeldbericht inputs (SNOMED %s), want 1", counts[eoverdracht.InputAdvanceNotice.Code], eoverdracht.InputAdvanceNotice.Code)
				ps.Check(counts[eoverdracht.InputNursingHandoff.Code] == 1, "%d overdrachtbericht inputs (SNOMED %s), want 1", counts[eoverdracht.InputNursingHandoff.Code], eoverdracht.InputNursingHandoff.Code)
				return ps.Verdict(fmt.Sprintf("eOverdracht-Task with %d document inputs", len(t.inputs)))
			}},
		{ID: "eoverdracht.sender.documents", Title: "Each document is served whole by Composition/{id}/$document", Roles: sender, Mandatory: true,
			Requirement: "Composition/{id}/$document of each input answers 200 with a document Bundle (type document, an identifier) of valid STU3 resources whose first entry is the Composition, of the profile its input's type asks (eOverdracht-AdvanceNotice for 721915006, eOverdracht-NursingHandoff-* for 11171000146100) and with that type, and which holds the subject Patient with the referred BSN.",
			Source:      srcEODoc,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				t, err := pullTransfer(p, keyAccepted)
				if t == nil || len(t.documents) == 0 {
					return validation.Fail("no document was read: %v", err)
				}
				var ps validation.Problems
				for _, in := range t.inputs {
					judgeDocument(&ps, in, t.documents[in.Reference])
				}
				return ps.Verdict(fmt.Sprintf("%d documents conform", len(t.documents)))
			}},
		{ID: "eoverdracht.sender.refusals", Title: "What a transfer's receiver may not do is refused", Roles: sender, Mandatory: true, Negative: true,
			Requirement: "Under the transfer's token the sender refuses, with an OperationOutcome: moving the workflow Task from requested to completed (409, not a step of the flow); a change beside the status (403); a statusReason with accepted (403); $document of a Composition that is not an input (403); a read of a resource no document of the Task references (403). The workflow Task stays requested.",
			Source:      srcEOFlow + "; " + srcTANPPull,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				t, err := pullTransfer(p, keyAccepted)
				if t == nil || t.workflow == nil {
					return validation.Fail("%v", err)
				}
				beside := bytes.Replace(withStatus(t.workflow, "accepted", ""), []byte(`"intent":"order"`), []byte(`"intent":"plan"`), 1)
				var ps validation.Problems
				for _, c := range []struct {
					name, method, url string
					body              []byte
					want              int
				}{
					{"requested → completed", http.MethodPut, t.workflowURL, withStatus(t.workflow, "completed", ""), http.StatusConflict},
					{"a change beside the status", http.MethodPut, t.workflowURL, beside, http.StatusForbidden},
					{"a statusReason with accepted", http.MethodPut, t.workflowURL, withStatus(t.workflow, "accepted", "plaats vrij"), http.StatusForbidden},
					{"$document of a Composition not in the Task", http.MethodGet, t.base() + "/Composition/not-an-input/$document", nil, http.StatusForbidden},
					{"a Patient read by id", http.MethodGet, t.base() + "/Patient/" + scenarioPatient, nil, http.StatusForbidden},
				} {
					resp, err := p.Send(p.Env().HTTP, c.method, c.url, "application/fhir+json; fhirVersion=3.0", t.token, c.body)
					if err != nil {
						ps.Add("%s: %v", c.name, err)
						continue
					}
					ps.Check(resp.Status == c.want && resp.IsOutcome(), "%s: HTTP %d, want %d with an OperationOutcome", c.name, resp.Status, c.want)
				}
				back, err := p.Get(p.Env().HTTP, t.workflowURL, t.token)
				var now map[string]any
				if err == nil {
					_ = back.JSON(&now)
				}
				ps.Check(now["status"] == "requested", "the workflow Task is %v after the refusals, want requested", now["status"])
				return ps.Verdict("every step outside the flow refused")
			}},
		{ID: "eoverdracht.sender.accepted-flow", Title: "The receiver's acceptance, progress and completion are honoured", Roles: sender, Mandatory: true,
			Requirement: "The receiver moves the workflow Task requested → accepted → in-progress → completed by updates that change only its status; each is accepted (200) and the Task reads back with that status.",
			Source:      srcEOFlow,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				t, err := pullTransfer(p, keyAccepted)
				if t == nil || t.workflow == nil {
					return validation.Fail("%v", err)
				}
				var ps validation.Problems
				for _, status := range []string{"accepted", "in-progress", "completed"} {
					resp, now, err := t.put(p, withStatus(t.workflow, status, ""))
					if err != nil {
						ps.Add("%s: %v", status, err)
						break
					}
					ps.Check(resp.Status == http.StatusOK, "set %s: HTTP %d", status, resp.Status)
					ps.Check(now["status"] == status, "after setting %s the Task reads %v", status, now["status"])
				}
				return ps.Verdict("accepted, in-progress and completed honoured")
			}},
		{ID: "eoverdracht.sender.rejected", Title: "The receiver's rejection with its reason is honoured and ends the transfer", Roles: sender, Mandatory: true,
			Requirement: "On a second transfer the receiver sets the workflow Task rejected with a statusReason: the update is accepted (200) and answered with the Task as stored, rejected with that reason, and the transfer's documents are no longer served under its token (403 OperationOutcome).",
			Source:      srcEOFlow + "; " + srcTANPPull,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				t, err := pullTransfer(p, keyRejected)
				if t == nil || t.workflow == nil {
					return validation.Fail("%v", err)
				}
				var ps validation.Problems
				// The update's answer is the Task as stored: the referral
				// has ended, so the token reads nothing after it.
				resp, err := p.Send(p.Env().HTTP, http.MethodPut, t.workflowURL, "application/fhir+json; fhirVersion=3.0", t.token,
					withStatus(t.workflow, "rejected", rejectReason))
				if err != nil {
					return validation.Fail("%v", err)
				}
				var now map[string]any
				_ = resp.JSON(&now)
				ps.Check(resp.Status == http.StatusOK, "set rejected: HTTP %d", resp.Status)
				ps.Check(now["status"] == "rejected", "the rejection's answer holds status %v", now["status"])
				ps.Check(statusReason(now) == rejectReason, "the rejection's answer holds statusReason %q, want %q", statusReason(now), rejectReason)
				if len(t.inputs) > 0 {
					doc, err := p.Get(p.Env().HTTP, t.base()+"/"+t.inputs[0].Reference+"/$document", t.token)
					ps.Check(err == nil && doc.Status == http.StatusForbidden && doc.IsOutcome(), "a document after the rejection: %v, want 403 with an OperationOutcome", statusOf(doc, err))
				}
				return ps.Verdict("rejected with its reason; nothing served after it")
			}},
	}
}

func statusOf(r *validation.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("HTTP %d", r.Status)
}

// judgeDocument checks one $document answer against its input.
func judgeDocument(ps *validation.Problems, in documentInput, resp *validation.Response) {
	if resp == nil || resp.Status != http.StatusOK {
		ps.Add("%s/$document: %v", in.Reference, statusOf(resp, nil))
		return
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Identifier   *struct {
			System, Value string
		} `json:"identifier"`
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := resp.JSON(&b); err != nil || b.ResourceType != "Bundle" || b.Type != "document" || len(b.Entry) == 0 {
		ps.Add("%s/$document is not a document Bundle", in.Reference)
		return
	}
	ps.Check(b.Identifier != nil && b.Identifier.Value != "", "%s/$document: the document Bundle has no identifier", in.Reference)
	var comp map[string]any
	_ = json.Unmarshal(b.Entry[0].Resource, &comp)
	ps.Check(comp["resourceType"] == "Composition", "%s/$document: the first entry is a %v, not the Composition", in.Reference, comp["resourceType"])
	ps.Check(np.HasCoding(comp["type"], in.System, in.Code), "%s: Composition.type is not its input's type %s|%s", in.Reference, in.System, in.Code)
	switch in.Code {
	case eoverdracht.InputAdvanceNotice.Code:
		ps.Check(np.HasProfile(comp, eoverdracht.ProfileAdvanceNotice), "%s: the aanmeldbericht lacks profile %s", in.Reference, eoverdracht.ProfileAdvanceNotice)
	case eoverdracht.InputNursingHandoff.Code:
		ps.Check(np.HasProfile(comp, eoverdracht.ProfileHandoffAdults) || np.HasProfile(comp, eoverdracht.ProfileHandoffChild) || np.HasProfile(comp, eoverdracht.ProfileHandoffNewborn),
			"%s: the overdrachtbericht lacks an eOverdracht-NursingHandoff profile", in.Reference)
	}
	subject := np.Str(np.Path(comp, "subject", "reference"))
	found := false
	for i, e := range b.Entry {
		var head struct{ ResourceType, ID string }
		_ = json.Unmarshal(e.Resource, &head)
		for _, is := range fhirvalidate.Resource(fhir.STU3, e.Resource) {
			if is.Severity == "error" || is.Severity == "fatal" {
				ps.Add("%s: entry %d (%s) is not valid STU3: %s", in.Reference, i, head.ResourceType, is.Diagnostics)
				break
			}
		}
		if head.ResourceType == "Patient" && "Patient/"+head.ID == subject {
			bsn, _, _ := nl.Patient(e.Resource)
			ps.Check(bsn == scenarioPatient, "%s: the subject Patient has BSN %q, want %s", in.Reference, bsn, scenarioPatient)
			found = true
		}
	}
	ps.Check(found, "%s: the document does not hold its subject Patient (%s)", in.Reference, subject)
}
