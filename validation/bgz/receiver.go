package bgz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/np"
)

// notification is the kit's notification Task, written from SPEC §4 step 2
// and not with the node's own builder, so that a shared mistake shows.
type notification struct {
	identifier, patient, sender, senderSystem, owner, workflow, authBase string
	expires                                                              time.Time
	// group is the groupIdentifier: the identifier itself unless the
	// notification updates an earlier referral.
	group string
	// noWorkflowRead sends get-workflow-task false.
	noWorkflowRead bool
}

func (n notification) json() map[string]any {
	return np.Notification{Identifier: n.identifier, Patient: n.patient, Sender: n.sender, SenderSystem: n.senderSystem, Owner: n.owner,
		Workflow: n.workflow, AuthBase: n.authBase, Expires: n.expires, Group: n.group, NoWorkflowRead: n.noWorkflowRead}.JSON()
}

// workflowTask is the kit's workflow Task offering the BgZ query set.
func (k *kit) workflowTask(bsn, sender, owner string, expires time.Time) []byte {
	var inputs []any
	for _, b := range k.blocks {
		inputs = append(inputs, map[string]any{
			"type":        map[string]any{"coding": []any{map[string]any{"system": b.Code.System, "code": b.Code.Code, "display": b.Code.Display}}},
			"valueString": b.Query(bsn),
		})
	}
	t := map[string]any{
		"resourceType": "Task", "status": "requested", "intent": "order",
		"identifier":  []any{map[string]any{"system": "urn:ietf:rfc:3986", "value": uuid()}},
		"code":        map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}}},
		"for":         map[string]any{"identifier": map[string]any{"system": nl.SystemBSN, "value": bsn}},
		"requester":   map[string]any{"agent": map[string]any{"identifier": map[string]any{"system": nl.SystemURA, "value": sender}}},
		"owner":       map[string]any{"identifier": map[string]any{"system": nl.SystemURA, "value": owner}},
		"restriction": map[string]any{"period": map[string]any{"end": expires.UTC().Format(time.RFC3339)}},
		"input":       inputs,
	}
	b, _ := json.Marshal(t)
	return b
}

// offer creates a workflow Task on the kit and a notification for it.
func (k *kit) offer(p *validation.Probe) (notification, error) {
	env := p.Env()
	cp := env.Counterpart
	expires := time.Now().Add(time.Hour)
	id, err := cp.Create(p.Context(), k.workflowTask(cp.PatientBSN, cp.URA, env.Target.URA, expires))
	if err != nil {
		return notification{}, err
	}
	n := notification{identifier: uuid(), patient: cp.PatientBSN, sender: cp.URA, senderSystem: env.Config.Kit.SystemUZI,
		owner: env.Target.URA, workflow: cp.Base + "/Task/" + id, authBase: secret(), expires: expires}
	cp.AddOffer(n.authBase, validation.Offer{Patient: n.patient, WorkflowTask: n.workflow, Scope: k.name, Expires: expires})
	return n, nil
}

// notifyToken is the kit's token for the node's notification endpoint.
func (k *kit) notifyToken(p *validation.Probe) (string, error) { return np.NotifyToken(p) }

func (k *kit) postNotification(p *validation.Probe, token string, body []byte) (*validation.Response, error) {
	return np.PostNotification(p, token, body)
}

// delivery is the node's pull after the kit's notification.
type delivery struct {
	n        notification
	answer   *validation.Response
	inbound  []validation.Inbound
	finished bool
}

func (k *kit) deliver(p *validation.Probe) (*delivery, error) {
	return k.deliverOnce(p, k.name+".receiver.delivery", func(*notification) error { return nil })
}

// deliverOnce offers the BgZ set, posts a notification (changed by edit)
// and waits for the node's pull to report completion; once per run and key.
func (k *kit) deliverOnce(p *validation.Probe, key string, edit func(*notification) error) (*delivery, error) {
	v, err := p.Once(key, func(p *validation.Probe) (any, error) {
		tok, err := k.notifyToken(p)
		if err != nil {
			return nil, err
		}
		n, err := k.offer(p)
		if err != nil {
			return nil, err
		}
		if err := edit(&n); err != nil {
			return nil, err
		}
		cp := p.Env().Counterpart
		mark := cp.Mark()
		body, _ := json.Marshal(n.json())
		resp, err := k.postNotification(p, tok, body)
		if err != nil {
			return nil, err
		}
		d := &delivery{n: n, answer: resp}
		wfPath := strings.TrimPrefix(n.workflow, cp.URL)
		d.finished = cp.Await(p.Context(), mark, p.Env().Config.Wait, func(ins []validation.Inbound) bool {
			for _, in := range ins {
				if in.Method == http.MethodPut && in.Path == wfPath {
					return true
				}
			}
			return false
		})
		d.inbound = cp.Inbound(mark)
		p.Record(cp.Exchanges(d.inbound)...)
		return d, nil
	})
	d, _ := v.(*delivery)
	p.Record(p.ScenarioExchanges(key)...)
	return d, err
}

// deliverUpdate is the kit's update of the delivered referral: a new
// workflow Task and authorization base, announced by a notification with a
// new identifier in the first one's group (TA Notified Pull: a changed
// data set is announced by a new notification).
func (k *kit) deliverUpdate(p *validation.Probe) (*delivery, error) {
	return k.deliverOnce(p, k.name+".receiver.update", func(n *notification) error {
		first, err := k.deliver(p)
		if first == nil {
			return err
		}
		if !first.finished {
			return errors.New("the first referral's pull did not complete; there is nothing to update")
		}
		n.group = first.n.identifier
		return nil
	})
}

// receiverTASteps are the cases of a referral's update and of
// get-workflow-task false.
func (k *kit) receiverTASteps() []validation.Case {
	return []validation.Case{
		{ID: k.name + ".receiver.follows-update", Title: "The receiver pulls a referral's update", Roles: receiver, Mandatory: true,
			Requirement: "A new notification with a new identifier and the groupIdentifier of a completed referral (a changed data set) is accepted with 201, and the receiver pulls again with the new authorization base: it redeems it, reads the new workflow Task and sets that one to completed.",
			Source:      srcTANPStat + "; groupIdentifier (SPEC §4 steps 2–3)",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := k.deliverUpdate(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				var ps validation.Problems
				ps.Check(d.answer.Status == http.StatusCreated, "the update's notification: HTTP %d, want 201", d.answer.Status)
				redeemed := false
				for _, in := range d.inbound {
					if validation.IsToken(in) && validation.FormOf(in).Get("authorization_base") == d.n.authBase && in.Status == http.StatusOK {
						redeemed = true
					}
				}
				ps.Check(redeemed, "no token request with the update's authorization_base")
				ps.Check(d.finished, "the update's workflow Task was not set to completed within %s", p.Env().Config.Wait)
				return ps.Verdict("the update was pulled")
			}},
		{ID: k.name + ".receiver.get-workflow-task-false", Title: "With get-workflow-task false the receiver runs the BgZ set without reading the workflow Task first", Roles: receiver, Mandatory: true,
			Requirement: "A notification whose get-workflow-task input is false is accepted and pulled: the receiver runs the care application's query set (BgZ) for the patient without reading the workflow Task before it; it may read the Task afterwards to set it to completed.",
			Source:      srcTANPTask + " (input get-workflow-task); " + k.querySet,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := k.deliverOnce(p, k.name+".receiver.no-workflow-read", func(n *notification) error {
					n.noWorkflowRead = true
					return nil
				})
				if d == nil {
					return validation.Fail("%v", err)
				}
				if d.answer.Status != http.StatusCreated {
					return validation.Fail("HTTP %d, want 201", d.answer.Status)
				}
				cp := p.Env().Counterpart
				wf := strings.TrimPrefix(d.n.workflow, cp.URL)
				for _, in := range d.inbound {
					if !cp.IsData(in) {
						continue
					}
					if in.Path == wf {
						return validation.Fail("the workflow Task was read before the queries")
					}
					break // the first data request was a query
				}
				return k.judgeQueries(p, d.inbound, d.n.workflow)
			}},
	}
}

func (k *kit) receiverCases() []validation.Case {
	return []validation.Case{
		{ID: k.name + ".receiver.accepts-notification", Title: "A conformant notification Task is accepted", Roles: receiver, Mandatory: true,
			Requirement: "The receiver's Task endpoint (from the addressbook) accepts a conformant notification Task, posted with its notification token, with 201 Created.",
			Source:      srcTANPTask,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := k.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				if d.answer.Status != http.StatusCreated {
					return validation.Fail("HTTP %d, want 201", d.answer.Status)
				}
				return validation.Pass("201 Created")
			}},
		{ID: k.name + ".receiver.token-request", Title: "The receiver redeems the authorization base at the sender's authorization server", Roles: receiver, Mandatory: true,
			Requirement: "The receiver asks the sender's authorization server (from the addressbook) for a token with grant jwt-bearer, scope " + k.name + k.cite("", " (or bgz: the notification does not tell the two apart, and the sender grants the referral's own)") + " and the notification's authorization_base, authenticated with an RFC 7523 client assertion over its own certificate.",
			Source:      srcTANPPull + "; RFC 7523 §2.1–2.2",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := k.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				for _, in := range d.inbound {
					f := validation.FormOf(in)
					if !validation.IsToken(in) || f.Get("authorization_base") != d.n.authBase {
						continue
					}
					ps := validation.CheckTokenRequest(in, p.Env().Target.URA, p.Env().Counterpart.URL+oauth.TokenPath)
					ps.Check(f.Get("grant_type") == oauth.GrantTypeJWTBearer, "grant_type %q, want jwt-bearer", f.Get("grant_type"))
					ps.Check(k.redeemScope(f.Get("scope")), "scope %q lacks %s", f.Get("scope"), k.name)
					ps.Check(in.Status == http.StatusOK, "the kit refused the token request (HTTP %d): %s", in.Status, in.Answer)
					return ps.Verdict("token requested with the authorization base")
				}
				return validation.Fail("no token request with the notification's authorization_base arrived")
			}},
		{ID: k.name + ".receiver.reads-workflow-task", Title: "The receiver reads the workflow Task with its token", Roles: receiver, Mandatory: true,
			Requirement: "With the token the receiver reads the workflow Task the notification's basedOn names (get-workflow-task true).",
			Source:      srcTANPPull,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := k.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				wf := strings.TrimPrefix(d.n.workflow, p.Env().Counterpart.URL)
				for _, in := range d.inbound {
					if in.Method == http.MethodGet && in.Path == wf {
						if in.Token == nil {
							return validation.Fail("the workflow Task was read without a valid token: %s", in.TokenErr)
						}
						return validation.Pass("read the workflow Task")
					}
				}
				return validation.Fail("the workflow Task was not read")
			}},
		{ID: k.name + ".receiver.runs-queries", Title: "The receiver runs each offered search, and only those", Roles: receiver, Mandatory: true,
			Requirement: "The receiver runs every search of the workflow Task (the BgZ query set) on the sender's FHIR endpoint of the care application's version (" + k.fhirName + ", from the addressbook), each with its token, and requests nothing else.",
			Source:      srcTANPPull + "; " + k.querySet,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := k.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				return k.judgeQueries(p, d.inbound, d.n.workflow)
			}},
		{ID: k.name + ".receiver.reports-completion", Title: "The receiver sets the workflow Task to completed", Roles: receiver, Mandatory: true,
			Requirement: "After the pull the receiver updates the sender's workflow Task, changing only its status, to completed.",
			Source:      srcTANPStat,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := k.deliver(p)
				if d == nil {
					return validation.Fail("%v", err)
				}
				if !d.finished {
					return validation.Fail("no update of the workflow Task within %s", p.Env().Config.Wait)
				}
				body, err := p.Env().Counterpart.Read(p.Context(), "Task", lastSegment(d.n.workflow))
				if err != nil {
					return validation.Error("%v", err)
				}
				var t map[string]any
				_ = json.Unmarshal(body, &t)
				var ps validation.Problems
				ps.Check(t["status"] == "completed", "the workflow Task's status is %v, want completed", t["status"])
				ps.Check(t["intent"] == "order" && len(t["input"].([]any)) == len(k.blocks), "the update changed more than the status")
				return ps.Verdict("status completed")
			}},
		k.notificationRefusal(k.name+".receiver.malformed-json", "Malformed JSON is refused", "A notification that is not valid JSON is refused with 400 and an OperationOutcome.",
			"FHIR STU3 REST create; "+srcTANPTask, http.StatusBadRequest, func(n notification) []byte { return []byte(`{"resourceType": "Task", "status": `) }),
		k.notificationRefusal(k.name+".receiver.invalid-bsn", "A notification with an invalid BSN is refused", "A notification whose patient BSN fails the 11-proef is refused (4xx OperationOutcome) and not acted on.",
			srcBSN, 0, mutate(func(n *notification) { n.patient = wrongBSN })),
		k.notificationRefusal(k.name+".receiver.sender-not-certificate", "A notification on behalf of another organisation is refused", "requester.onBehalfOf must be the URA of the TLS client certificate; otherwise the notification is refused (4xx OperationOutcome).",
			srcTANPTask+"; UZI server certificate URA (SPEC §3)", 0, mutate(func(n *notification) { n.sender = "90000007" })),
		k.notificationRefusal(k.name+".receiver.missing-authorization-base", "A notification without authorization-base is refused", "A notification lacking the authorization-base input is refused (4xx OperationOutcome).",
			srcTANPTask, 0, func(n notification) []byte {
				m := n.json()
				m["input"] = []any{m["input"].([]any)[1]}
				b, _ := json.Marshal(m)
				return b
			}),
		k.notificationRefusal(k.name+".receiver.expired", "An expired notification is refused", "A notification whose restriction.period.end has passed is refused (4xx OperationOutcome).",
			srcTANPTask, 0, mutate(func(n *notification) { n.expires = time.Now().Add(-time.Minute) })),
		k.notificationRefusal(k.name+".receiver.unknown-owner", "A notification for an organisation not served is refused", "A notification whose owner is not a participant of the node is refused (4xx OperationOutcome).",
			srcTANPTask, 0, mutate(func(n *notification) { n.owner = "90000005" })),
		k.notificationRefusal(k.name+".receiver.wrong-intent", "A notification with intent order is refused", "The notification Task's intent is proposal (the order is the sender's workflow Task); a notification with intent order is refused (4xx OperationOutcome).",
			srcTANPTask+"; FHIR STU3 Task.intent", 0, alter(func(m map[string]any) { m["intent"] = "order" })),
		k.notificationRefusal(k.name+".receiver.wrong-code", "A notification without the pull-notification code is refused", "A Task without code TaskCode|pull-notification is not a Notified Pull notification and is refused (4xx OperationOutcome).",
			srcTANPTask, 0, alter(func(m map[string]any) {
				m["code"] = map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "3457005"}}}
			})),
		k.notificationRefusal(k.name+".receiver.wrong-status", "A notification not in status requested is refused", "A new notification is status requested (or cancelled, to withdraw one); a notification posted as completed is refused (4xx OperationOutcome).",
			srcTANPTask+"; "+srcTANPStat, 0, alter(func(m map[string]any) { m["status"] = "completed" })),
		k.notificationRefusal(k.name+".receiver.missing-identifier", "A notification without an identifier is refused", "The notification Task carries an identifier with system urn:ietf:rfc:3986 that the sender and receiver refer to it by; without one it is refused (4xx OperationOutcome).",
			srcTANPTask+"; RFC 3986", 0, alter(func(m map[string]any) { delete(m, "identifier") })),
		k.notificationRefusal(k.name+".receiver.missing-patient", "A notification without the patient is refused", "Task.for identifies the patient by BSN; a notification that names no patient is refused (4xx OperationOutcome) and not acted on.",
			srcTANPTask+"; "+srcBSN, 0, alter(func(m map[string]any) { delete(m, "for") })),
		{ID: k.name + ".receiver.no-token", Title: "A notification without a token is refused", Roles: receiver, Mandatory: true, Negative: true,
			Requirement: "The Task endpoint is an OAuth2 resource server: a notification without an access token gets 401.",
			Source:      srcTANP + " step 5; RFC 6750 §3",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				n, err := k.offer(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				body, _ := json.Marshal(n.json())
				resp, err := k.postNotification(p, "", body)
				if err != nil {
					return validation.Fail("%v", err)
				}
				if resp.Status != http.StatusUnauthorized {
					return validation.Fail("HTTP %d, want 401", resp.Status)
				}
				return validation.Pass("refused with 401")
			}},
		{ID: k.name + ".receiver.stays-on-sender-endpoint", Title: "A workflow Task off the sender's endpoint is not fetched", Roles: receiver, Mandatory: true, Negative: true,
			Requirement: "The receiver follows only URLs on the sender's registered FHIR endpoint: a notification whose basedOn points elsewhere makes it fetch nothing there.",
			Source:      srcTANPPull + "; addressbook as the source of endpoints (SPEC §9)",
			Run: func(ctx context.Context, p *validation.Probe) validation.Verdict {
				tok, err := k.notifyToken(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				n, err := k.offer(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				cp := p.Env().Counterpart
				n.workflow = cp.URL + "/elsewhere/Task/1"
				cp.AddOffer(n.authBase, validation.Offer{Patient: n.patient, WorkflowTask: n.workflow, Scope: k.name, Expires: n.expires})
				mark := cp.Mark()
				body, _ := json.Marshal(n.json())
				if _, err := k.postNotification(p, tok, body); err != nil {
					return validation.Fail("%v", err)
				}
				fetched := cp.Await(ctx, mark, 2*time.Second, func(ins []validation.Inbound) bool {
					for _, in := range ins {
						if strings.HasPrefix(in.Path, "/elsewhere/") {
							return true
						}
					}
					return false
				})
				p.Record(cp.Exchanges(cp.Inbound(mark))...)
				if fetched {
					return validation.Fail("the receiver fetched %s", n.workflow)
				}
				return validation.Pass("nothing was fetched outside the sender's endpoint")
			}},
	}
}

func mutate(change func(*notification)) func(notification) []byte {
	return func(n notification) []byte {
		change(&n)
		b, _ := json.Marshal(n.json())
		return b
	}
}

// alter changes the kit's conformant notification as JSON.
func alter(change func(map[string]any)) func(notification) []byte {
	return func(n notification) []byte {
		m := n.json()
		change(m)
		b, _ := json.Marshal(m)
		return b
	}
}

// notificationRefusal posts a broken notification; status 0 accepts any 4xx.
func (k *kit) notificationRefusal(id, title, req, src string, status int, body func(notification) []byte) validation.Case {
	return validation.Case{ID: id, Title: title, Roles: receiver, Mandatory: true, Negative: true, Requirement: req, Source: src,
		Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
			tok, err := k.notifyToken(p)
			if err != nil {
				return validation.Error("%v", err)
			}
			n, err := k.offer(p)
			if err != nil {
				return validation.Error("%v", err)
			}
			resp, err := k.postNotification(p, tok, body(n))
			if err != nil {
				return validation.Fail("%v", err)
			}
			var ps validation.Problems
			if status != 0 {
				ps.Check(resp.Status == status, "HTTP %d, want %d", resp.Status, status)
			} else {
				ps.Check(resp.Status >= 400 && resp.Status < 500, "HTTP %d, want a 4xx refusal", resp.Status)
			}
			ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
			return ps.Verdict(fmt.Sprintf("refused: HTTP %d", resp.Status))
		}}
}

// redeemScope reports whether the scope a receiver asks with an
// authorization base names the referral's application. The notification
// does not say which BgZ it is for (the workflow Task's code is the same
// in STU3 and R4, and its Task is on the STU3 base in either), so for BgZ
// on another version than STU3 a receiver may ask the STU3 one: the
// sender grants the referral's own application, whatever was asked for.
func (k *kit) redeemScope(scope string) bool {
	fields := strings.Fields(scope)
	return slices.Contains(fields, k.name) || !k.stu3Data() && slices.Contains(fields, Name)
}

// judgeQueries checks the node's data requests on the kit: each BgZ block
// searched, each with a valid token, nothing outside the offer.
func (k *kit) judgeQueries(p *validation.Probe, ins []validation.Inbound, workflow string) validation.Verdict {
	cp := p.Env().Counterpart
	wf := ""
	if workflow != "" {
		wf = strings.TrimPrefix(workflow, cp.URL)
	}
	basePath := cp.DataPath()
	seen := map[string]int{}
	var ps validation.Problems
	for _, in := range ins {
		if !cp.IsData(in) || in.Path == wf {
			continue
		}
		ps.Check(in.Token != nil, "%s was requested without a valid token: %s", in.Path, in.TokenErr)
		if !strings.HasPrefix(in.Path, basePath+"/") {
			// Only the Tasks are on the STU3 base when the data is of
			// another version.
			ps.Add("%s?%s was asked on the kit's FHIR STU3 base; the %s data is at %s", in.Path, in.Query, k.fhirName, cp.DataBase)
			continue
		}
		b, err := k.blockOf(in.Path, in.Query, basePath, cp.PatientBSN)
		if err != nil {
			ps.Add("%s?%s is not one of the offered searches", strings.TrimPrefix(in.Path, basePath), in.Query)
			continue
		}
		seen[b.Name]++
	}
	for _, b := range k.blocks {
		ps.Check(seen[b.Name] >= 1, "block %s was not searched", b.Name)
	}
	return ps.Verdict(fmt.Sprintf("%d blocks searched", len(seen)))
}
