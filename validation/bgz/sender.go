package bgz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/np"
)

// notified is what the node (as sender) did when told to refer a patient
// to the kit: the requests up to and including its notification Task.
type notified struct {
	before []validation.Inbound // requests before the notification
	note   validation.Inbound
	task   map[string]any
}

// referral makes the node refer its patient to the kit and waits for the
// notification Task.
func (k *kit) referral(p *validation.Probe) (*notified, error) {
	n, err := np.AwaitNotification(p, k.name+".sender.referral", func(p *validation.Probe) error {
		env := p.Env()
		if env.Config.Patient == "" {
			return errors.New("no patient to refer: give the BSN of a patient the node holds (--patient)")
		}
		return env.Driver.Refer(p.Context(), env.Config.Patient, env.Counterpart.URA, k.name)
	})
	if n == nil {
		return nil, err
	}
	return &notified{before: n.Before, note: n.Note, task: n.Task}, err
}

// taskInput returns the input of the TaskParameter code.
func taskInput(task map[string]any, code string) map[string]any { return np.TaskInput(task, code) }

func hasCoding(cc any, system, code string) bool { return np.HasCoding(cc, system, code) }

// path reads a nested string: path(t, "requester", "onBehalfOf", "identifier", "value").
func path(v any, keys ...string) any { return np.Path(v, keys...) }

func str(v any) string { return np.Str(v) }

// pulled is the kit's pull as the receiver of the node's notification.
type pulled struct {
	authBase, workflowURL, token string
	workflow                     map[string]any
	queries                      []string
	results                      []searchResult
}

// pull redeems the notification: token with the authorization base, the
// workflow Task, every query in it.
func (k *kit) pull(p *validation.Probe) (*pulled, error) {
	v, err := p.Once(k.name+".sender.pull", func(p *validation.Probe) (any, error) {
		n, err := k.referral(p)
		if err != nil {
			return nil, err
		}
		pl := &pulled{authBase: str(taskInput(n.task, "authorization-base")["valueString"])}
		if refs, _ := n.task["basedOn"].([]any); len(refs) == 1 {
			pl.workflowURL = str(path(refs[0], "reference"))
		}
		tok, resp, err := p.Token(p.Env().HTTP, oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{k.name}, AuthorizationBase: pl.authBase})
		if err != nil {
			return pl, err
		}
		if tok == "" {
			return pl, fmt.Errorf("no token for the authorization base: HTTP %d %s", resp.Status, resp.OAuthError())
		}
		pl.token = tok
		resp, err = p.Get(p.Env().HTTP, pl.workflowURL, tok)
		if err != nil {
			return pl, err
		}
		if resp.Status != http.StatusOK || resp.JSON(&pl.workflow) != nil {
			return pl, fmt.Errorf("the workflow Task %s could not be read: HTTP %d", pl.workflowURL, resp.Status)
		}
		ins, _ := pl.workflow["input"].([]any)
		for _, x := range ins {
			if q := str(path(x, "valueString")); q != "" {
				pl.queries = append(pl.queries, q)
			}
		}
		return pl, nil
	})
	pl, _ := v.(*pulled)
	return pl, err
}

func (k *kit) senderCases() []validation.Case {
	return []validation.Case{
		{ID: k.name + ".sender.notify-token", Title: "The sender gets a token from the receiver's authorization server and notifies with it", Roles: sender, Mandatory: true,
			Requirement: "Before posting the notification Task the sender obtains an access token from the receiver's authorization server (found in the addressbook) and presents it; the notification reaches the receiver's Task endpoint over mTLS with the sender's certificate.",
			Source:      srcTANP + " step 2 and 5; RFC 6750",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				n, err := k.referral(p)
				if err != nil {
					return validation.Fail("%v", err)
				}
				var ps validation.Problems
				ps.Check(n.note.Token != nil, "the notification carried no valid token of the kit's authorization server: %s", n.note.TokenErr)
				ps.Check(n.note.PeerURA == p.Env().Target.URA, "the notification came over a certificate of URA %q, not %s", n.note.PeerURA, p.Env().Target.URA)
				ps.Check(n.note.Status == http.StatusCreated, "the kit answered %d", n.note.Status)
				return ps.Verdict("notified with a token of the receiver's authorization server")
			}},
		{ID: k.name + ".sender.client-assertion", Title: "The sender's token request is an RFC 7523 client assertion", Roles: sender, Mandatory: true,
			Requirement: "The sender authenticates at the receiver's token endpoint with a signed JWT (client_assertion_type jwt-bearer; iss = sub = its URA; aud = the token endpoint; exp, iat, jti; kid; PS256/ES256/ES384/ES512/RS256), over its own certificate.",
			Source:      "RFC 7523 §2.2, §3; TTA FHIR Authentication & Authorization (SPEC §4)",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				n, err := k.referral(p)
				if err != nil {
					return validation.Fail("%v", err)
				}
				var last *validation.Inbound
				for i := range n.before {
					if validation.IsToken(n.before[i]) {
						last = &n.before[i]
					}
				}
				if last == nil {
					// A token still valid from an earlier notification may be reused.
					for _, g := range p.Env().Counterpart.Grants() {
						if g.ClientID == p.Env().Target.URA {
							return validation.Pass("the sender reused a token it obtained before (client %s authenticated then)", g.ClientID)
						}
					}
					// Also one the kit's authorization server (its key and
					// issuer are the kit's, whatever the run) issued in an
					// earlier run, e.g. for the other BgZ version.
					if tok := n.note.Token; tok != nil && tok.ClientID == p.Env().Target.URA {
						return validation.Pass("the sender reused a token the kit's authorization server issued to client %s before this run (valid until %s)", tok.ClientID, tok.Expiry.Format(time.RFC3339))
					}
					return validation.Fail("the sender asked the kit's authorization server for no token")
				}
				ps := validation.CheckTokenRequest(*last, p.Env().Target.URA, p.Env().Counterpart.URL+oauth.TokenPath)
				ps.Check(last.Status == http.StatusOK, "the kit's authorization server refused the request (HTTP %d): %s", last.Status, last.Answer)
				return ps.Verdict("client assertion conforms")
			}},
		{ID: k.name + ".sender.notification-shape", Title: "The notification Task has the TA Notified Pull shape", Roles: sender, Mandatory: true,
			Requirement: "profile nl-vzvz-TaskNotifiedPull; status requested; intent proposal; code TaskCode|pull-notification; identifier and groupIdentifier (urn:ietf:rfc:3986); restriction.period.end in the future; for = the patient's BSN; requester.agent = UZI system number; requester.onBehalfOf = the sender's URA; owner = the receiver's URA; basedOn = the workflow Task on the sender's FHIR endpoint; inputs authorization-base (valueString) and get-workflow-task (valueBoolean).",
			Source:      srcTANPTask, Run: k.notificationShape},
		{ID: k.name + ".sender.data-token", Title: "The authorization base buys a certificate-bound token", Roles: sender, Mandatory: true,
			Requirement: "A jwt-bearer token request with the notification's authorization_base gets a Bearer token, bound to the receiver's certificate, expiring no later than the notification.",
			Source:      srcTANPPull + "; RFC 8705",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				p.Record(p.ScenarioExchanges(k.name + ".sender.pull")...)
				if pl == nil || pl.token == "" {
					return validation.Fail("%v", err)
				}
				c, err := validation.UnverifiedClaims(pl.token)
				if err != nil {
					return validation.Fail("the access token is not a JWT: %v", err)
				}
				var ps validation.Problems
				cnf, _ := c["cnf"].(map[string]any)
				ps.Check(cnf != nil && cnf["x5t#S256"] != "", "the token carries no cnf x5t#S256")
				exp, _ := c["exp"].(float64)
				ps.Check(exp > 0 && time.Unix(int64(exp), 0).Before(time.Now().Add(2*time.Hour)), "the token lives too long (exp %v)", exp)
				return ps.Verdict("token granted for the authorization base")
			}},
		{ID: k.name + ".sender.workflow-task", Title: "The workflow Task offers the BgZ query set for the patient", Roles: sender, Mandatory: true,
			Requirement: "The workflow Task (intent order) is readable with the token, is about the referred patient (BSN), and its inputs are the BgZ searches for that patient, one per block, typed with a code.",
			Source:      srcTANP + " step 1; " + k.querySet,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				p.Record(p.ScenarioExchanges(k.name + ".sender.pull")...)
				if pl == nil || pl.workflow == nil {
					return validation.Fail("%v", err)
				}
				bsn := p.Env().Config.Patient
				var ps validation.Problems
				ps.Check(pl.workflow["intent"] == "order", "intent %v, want order", pl.workflow["intent"])
				ps.Check(str(path(pl.workflow, "for", "identifier", "value")) == bsn, "for.identifier %v is not the patient %s", path(pl.workflow, "for", "identifier"), bsn)
				seen := map[string]int{}
				for _, q := range pl.queries {
					b, err := k.match(q, bsn)
					if err != nil {
						ps.Add("input %q is not a BgZ search for the patient", q)
						continue
					}
					seen[b.Name]++
				}
				for _, b := range k.blocks {
					ps.Check(seen[b.Name] == 1, "block %s offered %d times, want once", b.Name, seen[b.Name])
				}
				return ps.Verdict(fmt.Sprintf("%d inputs, the BgZ query set", len(pl.queries)))
			}},
		{ID: k.name + ".sender.data", Title: "Every offered search answers conformant data", Roles: sender, Mandatory: true,
			Requirement: "Each search of the workflow Task answers 200 with a searchset Bundle of valid " + k.fhirName + " resources of the searched type about the patient; the Patient block finds the patient." + k.versionRequirement(),
			Source:      k.querySet + "; " + k.fhirSearch,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				if pl == nil || pl.token == "" {
					return validation.Fail("%v", err)
				}
				bsn := p.Env().Config.Patient
				base := k.dataBase(p, pl)
				var ps validation.Problems
				var rs []searchResult
				for _, q := range pl.queries {
					b, err := k.match(q, bsn)
					if err != nil {
						continue
					}
					resp, err := p.Get(p.Env().HTTP, base+"/"+q, pl.token)
					if err != nil {
						ps.Add("%s: %v", b.Name, err)
						continue
					}
					r := k.judgeSearchset(&ps, b, bsn, resp)
					rs = append(rs, r)
					if b.Name == "Patient" {
						ps.Check(r.matches == 1, "the Patient search found %d patients, want 1", r.matches)
					}
				}
				ps.Check(len(rs) == len(k.blocks), "%d of %d blocks searched", len(rs), len(k.blocks))
				return ps.Verdict(summary(rs))
			}},
		{ID: k.name + ".sender.status-update", Title: "The receiver may set the workflow Task's status", Roles: sender, Mandatory: true,
			Requirement: "An update of the workflow Task by the receiver that changes only its status to completed is accepted.",
			Source:      srcTANPStat, Run: k.statusUpdate(false)},
		{ID: k.name + ".sender.status-update-only", Title: "An update beyond the status is refused", Roles: sender, Mandatory: true, Negative: true,
			Requirement: "An update of the workflow Task that changes more than its status is refused with an OperationOutcome.",
			Source:      srcTANPStat, Run: k.statusUpdate(true)},
		{ID: k.name + ".sender.wrong-authorization-base", Title: "A wrong authorization base gets no token", Roles: sender, Mandatory: true, Negative: true,
			Requirement: "A token request with an authorization_base the sender did not issue gets invalid_grant and no token.",
			Source:      srcTANPPull + "; RFC 6749 §5.2",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				if _, err := k.referral(p); err != nil {
					return validation.Error("%v", err)
				}
				_, resp, err := p.Token(p.Env().HTTP, oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{k.name}, AuthorizationBase: "guessed-" + secret()})
				if err != nil {
					return validation.Error("%v", err)
				}
				var ps validation.Problems
				ps.Check(resp.Status == http.StatusBadRequest && resp.OAuthError() == "invalid_grant", "HTTP %d %q, want 400 invalid_grant", resp.Status, resp.OAuthError())
				ps.Check(!strings.Contains(string(resp.Body), "access_token"), "a token was issued")
				return ps.Verdict("refused: invalid_grant")
			}},
		k.dataRefusal(k.name+".sender.other-patient", "The same search for another patient is refused",
			"A search of the workflow Task for another patient's BSN is refused (403 OperationOutcome): the token is limited to the referral's patient.",
			srcTANPPull, func(pl *pulled, bsn string) string { return otherPatientQuery(k.blocks[5]) }, http.StatusForbidden),
		k.dataRefusal(k.name+".sender.search-not-offered", "A search not in the workflow Task is refused",
			"A search the workflow Task does not list is refused (403 OperationOutcome), even for the referral's patient.",
			srcTANPPull, func(pl *pulled, bsn string) string {
				return "Observation?patient.identifier=" + nl.SystemBSN + "|" + bsn
			}, http.StatusForbidden),
		k.dataRefusal(k.name+".sender.direct-read", "A read of a resource not offered is refused",
			"A read of a resource the workflow Task does not reference is refused (403 OperationOutcome).",
			srcTANPPull, func(pl *pulled, bsn string) string { return "Patient/" + bsn }, http.StatusForbidden),
		k.dataRefusal(k.name+".sender.invalid-bsn", "A search with an invalid BSN is refused",
			"A search naming a BSN that fails the 11-proef is refused (400 or 403 OperationOutcome), and nothing is returned.",
			srcBSN, func(pl *pulled, bsn string) string { return k.blocks[5].Query(wrongBSN) }, 0),
		{ID: k.name + ".sender.notification-inputs", Title: "The notification carries the authorization base once and no searches", Roles: sender, Mandatory: true,
			Requirement: "The notification Task has exactly one authorization-base input and one get-workflow-task input (true), and nothing else: the searches are offered in the workflow Task, behind the token, not in the notification.",
			Source:      srcTANPTask,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				n, err := k.referral(p)
				if n == nil || n.task == nil {
					return validation.Fail("%v", err)
				}
				return notificationInputs(n.task).Verdict("one authorization base, get-workflow-task true")
			}},
		{ID: k.name + ".sender.workflow-task-parties", Title: "The workflow Task names the sender, the receiver and its period", Roles: sender, Mandatory: true,
			Requirement: "The workflow Task is not yet final when first read (requested, or in-progress once the receiver redeemed the authorization base), requester.onBehalfOf is the sender's URA, owner is the receiver's URA, and its restriction.period.end is the notification's (the data may be pulled as long as the notification says, no longer).",
			Source:      srcTANP + " step 1; Nictiz BgZ-verwijzing-Task (BgZ 2017 STU3 referral)",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				if pl == nil || pl.workflow == nil {
					return validation.Fail("%v", err)
				}
				n, _ := k.referral(p)
				return workflowParties(pl.workflow, n.task, p.Env().Target.URA, p.Env().Counterpart.URA).Verdict("sender, receiver and period as notified")
			}},
		{ID: k.name + ".sender.workflow-input-codes", Title: "Each workflow Task input is typed with its block's code", Roles: sender, Mandatory: true,
			Requirement: "Each input of the workflow Task carries, as its type, the code of the BgZ block its search retrieves (the Nictiz BgZ referral Task's input codes: LOINC section or zib SNOMED concept), so that the receiver knows what it pulls.",
			Source:      "Nictiz BgZ-verwijzing-Task input types (BgZ 2017 STU3); " + k.querySet,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				if pl == nil || pl.workflow == nil {
					return validation.Fail("%v", err)
				}
				return k.workflowInputCodes(pl.workflow, p.Env().Config.Patient).Verdict(fmt.Sprintf("%d inputs typed with their block's code", len(pl.queries)))
			}},
		{ID: k.name + ".sender.token-binding", Title: "The data token is useless over another certificate", Roles: sender, Mandatory: true, Negative: true,
			Requirement: "The referral's access token presented over a connection with another certificate (same organisation, other key) is refused with 401.",
			Source:      "RFC 8705 §3; " + srcTANP + " step 5",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				pl, err := k.pull(p)
				if pl == nil || pl.token == "" {
					return validation.Error("%v", err)
				}
				resp, err := p.Get(p.Env().AltHTTP, pl.workflowURL, pl.token)
				if err != nil {
					return validation.Pass("refused on the connection: %v", err)
				}
				if resp.Status != http.StatusUnauthorized {
					return validation.Fail("HTTP %d, want 401", resp.Status)
				}
				return validation.Pass("refused with 401")
			}},
	}
}

func lastSegment(u string) string { return u[strings.LastIndex(u, "/")+1:] }

// dataBase is the sender's FHIR base the referral's data is searched on:
// the workflow Task's for STU3; for another version the sender's data
// endpoint of that version in the addressbook (the Task stays on the STU3
// base of the technical agreement).
func (k *kit) dataBase(p *validation.Probe, pl *pulled) string {
	if k.stu3Data() {
		return strings.TrimSuffix(pl.workflowURL, "/Task/"+lastSegment(pl.workflowURL))
	}
	return p.Env().Target.FHIRBase()
}

// taskBase is the target's FHIR base its workflow Tasks are on: its data
// endpoint for STU3; for another version the STU3 base of its
// notification endpoint.
func (k *kit) taskBase(t validation.Target) string {
	if k.stu3Data() {
		return t.FHIRBase()
	}
	return t.TaskBase()
}

// dataRefusal is a case that sends, with the referral's token, a request
// the referral does not allow; status 0 accepts 400 and 403.
func (k *kit) dataRefusal(id, title, req, src string, rel func(pl *pulled, bsn string) string, status int) validation.Case {
	return validation.Case{ID: id, Title: title, Roles: sender, Mandatory: true, Negative: true, Requirement: req, Source: src,
		Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
			pl, err := k.pull(p)
			if pl == nil || pl.token == "" {
				return validation.Error("no referral token to try: %v", err)
			}
			resp, err := p.Get(p.Env().HTTP, k.dataBase(p, pl)+"/"+rel(pl, p.Env().Config.Patient), pl.token)
			if err != nil {
				return validation.Fail("%v", err)
			}
			var ps validation.Problems
			if status == 0 {
				ps.Check(resp.Status == http.StatusBadRequest || resp.Status == http.StatusForbidden, "HTTP %d, want 400 or 403", resp.Status)
			} else {
				ps.Check(resp.Status == status, "HTTP %d, want %d", resp.Status, status)
			}
			ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
			return ps.Verdict(fmt.Sprintf("refused: HTTP %d", resp.Status))
		}}
}

func (k *kit) statusUpdate(more bool) func(context.Context, *validation.Probe) validation.Verdict {
	return func(_ context.Context, p *validation.Probe) validation.Verdict {
		pl, err := k.pull(p)
		if pl == nil || pl.workflow == nil {
			return validation.Error("no workflow Task: %v", err)
		}
		t := map[string]any{}
		for k, v := range pl.workflow {
			t[k] = v
		}
		delete(t, "meta")
		t["status"] = "completed"
		if more {
			t["status"] = "in-progress"
			t["description"] = "changed by the validation kit"
		}
		body, _ := json.Marshal(t)
		resp, err := p.Send(p.Env().HTTP, http.MethodPut, pl.workflowURL, "application/fhir+json", pl.token, body)
		if err != nil {
			return validation.Fail("%v", err)
		}
		if more {
			var ps validation.Problems
			ps.Check(resp.Status >= 400 && resp.Status < 500, "HTTP %d, want a 4xx refusal", resp.Status)
			ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
			return ps.Verdict(fmt.Sprintf("refused: HTTP %d", resp.Status))
		}
		if resp.Status != http.StatusOK && resp.Status != http.StatusCreated {
			return validation.Fail("HTTP %d, want 200", resp.Status)
		}
		return validation.Pass("status completed accepted")
	}
}

func (k *kit) notificationShape(_ context.Context, p *validation.Probe) validation.Verdict {
	n, err := k.referral(p)
	if n == nil || n.task == nil {
		return validation.Fail("%v", err)
	}
	env := p.Env()
	return np.NotificationShape(n.task, env.Config.Patient, env.Target.URA, env.Counterpart.URA, k.taskBase(env.Target)).Verdict("the notification Task conforms")
}

// notificationInputs checks the notification's inputs: one
// authorization-base, one get-workflow-task true, nothing else.
func notificationInputs(task map[string]any) validation.Problems { return np.NotificationInputs(task) }

// workflowParties checks the workflow Task against the notification that
// pointed to it.
func workflowParties(wf, note map[string]any, senderURA, receiverURA string) validation.Problems {
	return np.WorkflowParties(wf, note, senderURA, receiverURA)
}

// workflowInputCodes checks that each search input is typed with the code
// of the block it retrieves.
func (k *kit) workflowInputCodes(wf map[string]any, bsn string) validation.Problems {
	var ps validation.Problems
	ins, _ := wf["input"].([]any)
	for i, x := range ins {
		q := str(path(x, "valueString"))
		if q == "" {
			continue
		}
		b, err := k.match(q, bsn)
		if err != nil {
			ps.Add("input %d %q is not a BgZ search for the patient", i, q)
			continue
		}
		ps.Check(hasCoding(path(x, "type"), b.Code.System, b.Code.Code), "input %d (%s) is not typed %s|%s", i, b.Name, b.Code.System, b.Code.Code)
	}
	return ps
}
