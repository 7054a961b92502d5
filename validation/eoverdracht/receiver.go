package eoverdracht

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/np"
)

// delivery is one transfer the kit (as the sending hospital) made to the
// node, and what the node did: before its participant decided, and after.
type delivery struct {
	n      np.Notification
	answer *validation.Response
	// before is what the node did until it read the aanmeldbericht and
	// the kit's wait for a premature step ran out; after, what it did once
	// its participant decided, until the workflow Task reached a final
	// status (finished) or the wait ran out.
	before, after []validation.Inbound
	readNotice    bool
	decideErr     error
	finished      bool
}

// workflowPath is the kit's workflow Task's path on the kit's listener.
func (d *delivery) workflowPath(cp *validation.Counterpart) string {
	return strings.TrimPrefix(d.n.Workflow, cp.URL)
}

// statusPuts are the statuses (and reasons) the node set on the kit's
// workflow Task, in order.
func (d *delivery) statusPuts(cp *validation.Counterpart, ins []validation.Inbound) (statuses, reasons []string, bodies []map[string]any) {
	for _, in := range ins {
		if in.Method != http.MethodPut || in.Path != d.workflowPath(cp) {
			continue
		}
		var t map[string]any
		_ = json.Unmarshal(in.Body, &t)
		statuses = append(statuses, np.Str(t["status"]))
		reasons = append(reasons, statusReason(t))
		bodies = append(bodies, t)
	}
	return statuses, reasons, bodies
}

// reads reports whether the node read document ref's $document in ins.
func reads(ins []validation.Inbound, ref string) bool {
	for _, in := range ins {
		if in.Method == http.MethodGet && strings.HasSuffix(in.Path, "/"+ref+"/$document") {
			return true
		}
	}
	return false
}

// premature is how long the kit watches for a step the node must not
// take before its participant decided.
const premature = 500 * time.Millisecond

// deliverTransfer offers the scenario's transfer to the node, once per run
// and key: it notifies, waits for the node to read the aanmeldbericht,
// watches that nothing more happens, makes the node's participant decide
// (status, with reason) through the driver, and waits for the workflow
// Task's final status.
func deliverTransfer(p *validation.Probe, key, status, reason string) (*delivery, error) {
	v, err := p.Once(key, func(p *validation.Probe) (any, error) {
		env := p.Env()
		cp := env.Counterpart
		decider, ok := env.Driver.(validation.TransferDecider)
		if !ok {
			return nil, errors.New("the driver cannot make the node's participant decide on a transfer request")
		}
		tok, err := np.NotifyToken(p)
		if err != nil {
			return nil, err
		}
		n, err := np.Offer(p, Name, cp.PatientBSN, func(expires time.Time) []byte {
			return workflowTask(cp.PatientBSN, cp.URA, env.Target.URA, expires)
		})
		if err != nil {
			return nil, err
		}
		mark := cp.Mark()
		body, _ := json.Marshal(n.JSON())
		resp, err := np.PostNotification(p, tok, body)
		if err != nil {
			return nil, err
		}
		d := &delivery{n: n, answer: resp}
		if resp.Status != http.StatusCreated {
			return d, fmt.Errorf("the notification was answered HTTP %d", resp.Status)
		}
		d.readNotice = cp.Await(p.Context(), mark, env.Config.Wait, func(ins []validation.Inbound) bool {
			return reads(ins, eoverdracht.DemoAdvanceNotice)
		})
		if d.readNotice {
			// Nothing more may happen before the participant decides.
			select {
			case <-time.After(premature):
			case <-p.Context().Done():
			}
		}
		d.before = cp.Inbound(mark)
		p.Record(cp.Exchanges(d.before)...)
		if !d.readNotice {
			return d, fmt.Errorf("the node did not read the aanmeldbericht's $document within %s", env.Config.Wait)
		}
		after := cp.Mark()
		if d.decideErr = decider.DecideTransfer(p.Context(), n.Identifier, status, reason); d.decideErr != nil {
			return d, fmt.Errorf("the driver could not make the participant decide: %w", d.decideErr)
		}
		final := "completed"
		if status == "rejected" {
			final = "rejected"
		}
		d.finished = cp.Await(p.Context(), after, env.Config.Wait, func(ins []validation.Inbound) bool {
			ss, _, _ := d.statusPuts(cp, ins)
			for _, s := range ss {
				if s == final {
					return true
				}
			}
			return false
		})
		d.after = cp.Inbound(after)
		p.Record(cp.Exchanges(d.after)...)
		return d, nil
	})
	d, _ := v.(*delivery)
	p.Record(p.ScenarioExchanges(key)...)
	return d, err
}

// otherPatient is a valid test BSN of no patient of the kit's record.
const otherPatient = "999990020"

// deliverOtherPatient offers the scenario's documents under a notification
// for another patient than the aanmeldbericht's subject, and watches what
// the node does until it sets the workflow Task rejected or the wait runs
// out (no decision is asked of its participant).
func deliverOtherPatient(p *validation.Probe) (*delivery, error) {
	v, err := p.Once("eoverdracht.receiver.other-patient", func(p *validation.Probe) (any, error) {
		env := p.Env()
		cp := env.Counterpart
		tok, err := np.NotifyToken(p)
		if err != nil {
			return nil, err
		}
		n, err := np.Offer(p, Name, otherPatient, func(expires time.Time) []byte {
			return workflowTask(otherPatient, cp.URA, env.Target.URA, expires)
		})
		if err != nil {
			return nil, err
		}
		mark := cp.Mark()
		body, _ := json.Marshal(n.JSON())
		resp, err := np.PostNotification(p, tok, body)
		if err != nil {
			return nil, err
		}
		d := &delivery{n: n, answer: resp}
		if resp.Status/100 == 2 {
			d.finished = cp.Await(p.Context(), mark, env.Config.Wait, func(ins []validation.Inbound) bool {
				ss, _, _ := d.statusPuts(cp, ins)
				return len(ss) > 0
			})
			// A node that took the transfer would go on: watch a moment.
			select {
			case <-time.After(premature):
			case <-p.Context().Done():
			}
		}
		d.after = cp.Inbound(mark)
		p.Record(cp.Exchanges(d.after)...)
		return d, nil
	})
	d, _ := v.(*delivery)
	p.Record(p.ScenarioExchanges("eoverdracht.receiver.other-patient")...)
	return d, err
}

const (
	keyDeliverAccepted = "eoverdracht.receiver.accepted"
	keyDeliverRejected = "eoverdracht.receiver.rejected"
)

func receiverCases() []validation.Case {
	return []validation.Case{
		{ID: "eoverdracht.receiver.reads-advance-notice", Title: "The receiver pulls the aanmeldbericht and waits for its organisation's decision", Roles: receiver, Mandatory: true,
			Requirement: "The kit's eOverdracht notification is accepted (201); the receiver buys a token with the authorization base, reads the workflow Task and the aanmeldbericht's Composition/{id}/$document, and then neither changes the workflow Task's status nor reads the overdrachtbericht until its participant has decided.",
			Source:      srcTANPPull + "; " + srcEOFlow,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := deliverTransfer(p, keyDeliverAccepted, "accepted", "")
				if d == nil {
					return validation.Fail("%v", err)
				}
				cp := p.Env().Counterpart
				var ps validation.Problems
				ps.Check(d.answer.Status == http.StatusCreated, "the notification was answered HTTP %d, want 201", d.answer.Status)
				token, workflow := false, false
				for _, in := range d.before {
					token = token || (validation.IsToken(in) && validation.FormOf(in).Get("authorization_base") == d.n.AuthBase)
					workflow = workflow || (in.Method == http.MethodGet && in.Path == d.workflowPath(cp))
				}
				ps.Check(token, "no token request with the notification's authorization base")
				ps.Check(workflow, "the workflow Task was not read")
				ps.Check(d.readNotice, "the aanmeldbericht's $document was not read")
				ss, _, _ := d.statusPuts(cp, d.before)
				ps.Check(len(ss) == 0, "the workflow Task was set %v before the participant decided", ss)
				ps.Check(!reads(d.before, eoverdracht.DemoNursingHandoff), "the overdrachtbericht was read before the participant decided")
				return ps.Verdict("aanmeldbericht read; waiting for the decision")
			}},
		{ID: "eoverdracht.receiver.accepted-flow", Title: "The participant's acceptance moves the transfer through the flow", Roles: receiver, Mandatory: true,
			Requirement: "Once the receiver's participant accepts, the receiver sets the sender's workflow Task accepted and in-progress, reads the overdrachtbericht's $document, and sets the Task completed, in that order, each update changing only the status.",
			Source:      srcEOFlow + "; " + srcEODoc,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := deliverTransfer(p, keyDeliverAccepted, "accepted", "")
				if d == nil || !d.readNotice || d.decideErr != nil {
					return validation.Fail("%v", err)
				}
				cp := p.Env().Counterpart
				var ps validation.Problems
				ss, reasons, _ := d.statusPuts(cp, d.after)
				ps.Check(strings.Join(ss, " → ") == "accepted → in-progress → completed", "the workflow Task was set %v, want accepted → in-progress → completed", ss)
				for i, r := range reasons {
					ps.Check(r == "", "the update to %s carries a statusReason %q", ss[i], r)
				}
				// The overdrachtbericht is read between in-progress and completed.
				order := []string{}
				for _, in := range d.after {
					switch {
					case in.Method == http.MethodPut && in.Path == d.workflowPath(cp):
						var t map[string]any
						_ = json.Unmarshal(in.Body, &t)
						order = append(order, np.Str(t["status"]))
					case reads([]validation.Inbound{in}, eoverdracht.DemoNursingHandoff):
						order = append(order, "overdrachtbericht")
					}
				}
				ps.Check(strings.Join(order, " ") == "accepted in-progress overdrachtbericht completed", "steps %v, want accepted, in-progress, the overdrachtbericht, completed", order)
				ps.Check(d.finished, "the workflow Task did not reach completed within the wait")
				return ps.Verdict("accepted → in-progress → overdrachtbericht → completed")
			}},
		{ID: "eoverdracht.receiver.rejected", Title: "The participant's rejection reaches the sender with its reason", Roles: receiver, Mandatory: true,
			Requirement: "On a second transfer the receiver's participant rejects with a reason: the receiver sets the sender's workflow Task rejected with that reason as Task.statusReason, sets no other status, and never reads the overdrachtbericht.",
			Source:      srcEOFlow,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := deliverTransfer(p, keyDeliverRejected, "rejected", rejectReason)
				if d == nil || !d.readNotice || d.decideErr != nil {
					return validation.Fail("%v", err)
				}
				cp := p.Env().Counterpart
				var ps validation.Problems
				ss, reasons, _ := d.statusPuts(cp, append(d.before, d.after...))
				ps.Check(len(ss) == 1 && ss[0] == "rejected", "the workflow Task was set %v, want rejected only", ss)
				ps.Check(len(reasons) == 1 && reasons[0] == rejectReason, "statusReason %v, want %q", reasons, rejectReason)
				ps.Check(!reads(append(d.before, d.after...), eoverdracht.DemoNursingHandoff), "the overdrachtbericht was read although the transfer was rejected")
				return ps.Verdict("rejected with the participant's reason")
			}},
		{ID: "eoverdracht.receiver.other-patient", Title: "An aanmeldbericht about another patient is not taken", Roles: receiver, Mandatory: true, Negative: true,
			Requirement: "A transfer whose notification and workflow Task name one patient while the aanmeldbericht's subject Patient carries another BSN is not taken: the receiver refuses the notification (4xx OperationOutcome), or reads the aanmeldbericht and sets the sender's workflow Task rejected with a statusReason; it never sets accepted and never reads the overdrachtbericht.",
			Source:      srcEOFlow + "; citizen identification (SPEC §3, §6)",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				d, err := deliverOtherPatient(p)
				if d == nil {
					return validation.Error("%v", err)
				}
				cp := p.Env().Counterpart
				if d.answer.Status/100 == 4 {
					if !d.answer.IsOutcome() {
						return validation.Fail("the notification was refused (HTTP %d) without an OperationOutcome", d.answer.Status)
					}
					return validation.Pass("the notification was refused: HTTP %d", d.answer.Status)
				}
				var ps validation.Problems
				ps.Check(d.answer.Status == http.StatusCreated, "the notification was answered HTTP %d", d.answer.Status)
				ss, reasons, _ := d.statusPuts(cp, d.after)
				ps.Check(len(ss) == 1 && ss[0] == "rejected", "the workflow Task was set %v, want rejected only", ss)
				ps.Check(len(reasons) == 1 && reasons[0] != "", "the rejection carries no statusReason")
				ps.Check(!reads(d.after, eoverdracht.DemoNursingHandoff), "the overdrachtbericht was read")
				return ps.Verdict(fmt.Sprintf("rejected by the receiver: %v", reasons))
			}},
	}
}
