package notifiedpull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
)

// A Transfer application (careapp.Transfer, e.g. eOverdracht) differs from
// a plain Notified Pull in four places, all here: the sender types a read
// input by the resource it makes available (and refuses one the
// application cannot carry), and lets the receiver read what a document
// references; a read input is served and pulled with the
// application's instance operation ($document on a Composition); the
// sender's workflow Task stays requested until the receiver decides; and
// the receiver moves it through the transitions the application allows,
// accepting after it has read the inputs it decides on.

// transferOf is the Transfer application named, if it is one.
func (s *Service) transferOf(name string) (careapp.Transfer, bool) {
	a, ok := s.cfg.Applications.Get(name)
	if !ok {
		return nil, false
	}
	t, ok := a.(careapp.Transfer)
	return t, ok
}

// authorizeTransferOperation decides on an instance operation under a
// referral of a Transfer application: allowed only as the application's
// document operation on one of the workflow Task's read inputs (not on a
// resource a document merely references).
func (s *Service) authorizeTransferOperation(ctx context.Context, t careapp.Transfer, g Grant, req *rest.Request) error {
	op := t.DocumentOperation(req.Type)
	if op == "" || req.Operation != op {
		return transferDenied(http.StatusForbidden, "forbidden", "%s on %s is not an operation the workflow Task makes available", req.Operation, req.Type)
	}
	wf, err := s.cfg.Store.Read(ctx, req.Tenant, "Task", g.WorkflowTask)
	if err != nil {
		return err
	}
	_, inputs, err := ParseWorkflowInputs(wf.Body)
	if err != nil {
		return err
	}
	if !isInput(inputs, req.Type+"/"+req.ID) {
		return transferDenied(http.StatusForbidden, "forbidden", "%s/%s is not an input of the workflow Task: its %s is not available under this referral", req.Type, req.ID, op)
	}
	return nil
}

// isInput reports whether ref ("Type/id") is a read input.
func isInput(inputs []WorkflowInput, ref string) bool {
	for _, in := range inputs {
		if ref != "" && in.Reference == ref {
			return true
		}
	}
	return false
}

// transferTransition checks a receiver's status update of the workflow
// Task against the transitions the application allows from its current
// status.
func transferTransition(t careapp.Transfer, current, next string) error {
	if slices.Contains(t.ReceiverTransitions()[current], next) {
		return nil
	}
	allowed := t.ReceiverTransitions()[current]
	if len(allowed) == 0 {
		return transferDenied(http.StatusConflict, "business-rule", "the workflow Task is %s: a receiver may not change its status any more (asked: %s)", current, next)
	}
	return transferDenied(http.StatusConflict, "business-rule", "a receiver may set the workflow Task from %s to %v, not to %s", current, allowed, next)
}

func transferDenied(status int, code, format string, args ...any) error {
	return &fhir.Error{Status: status, Cause: ErrForbidden,
		Issues: []fhir.Issue{{Severity: "error", Code: code, Diagnostics: fmt.Sprintf(format, args...)}}}
}

// errRejected ends a Transfer's pull: the receiver rejected the request.
type errRejected struct{ reason string }

func (e *errRejected) Error() string { return "the transfer was rejected: " + e.reason }

// errAwaitingDecision ends a Transfer's pull for now: the documents the
// receiver decides on were read, and the participant's system decides.
var errAwaitingDecision = errors.New("the transfer request waits for the receiving organisation's decision")

// awaitsDecision reports whether t's requests wait for the receiving
// participant's system to decide (careapp.Decision).
func awaitsDecision(t careapp.Transfer) bool {
	d, ok := t.(careapp.Decision)
	return ok && d.AwaitsDecision()
}

// stagedPull runs a Transfer's inputs as the agreement orders them: those
// the receiver decides on first; then, if the application's Decide accepts
// each of those documents (docs returns what a stage pulled) and, for a
// careapp.Decision, the participant's system accepted (row.Decision), the
// workflow Task to accepted and in-progress on the sender, and the rest.
// A refusal by Decide, or the participant's rejection, sets the workflow
// Task rejected with the reason (Task.statusReason) and returns an
// *errRejected; a request the participant has not decided on yet returns
// errAwaitingDecision after the first stage. run pulls one stage.
func (s *Service) stagedPull(ctx context.Context, c *fetcher, t careapp.Transfer, row Received, wfBody []byte, inputs []WorkflowInput,
	run func([]WorkflowInput, []int) error, docs func([]int) []json.RawMessage) error {
	decides := awaitsDecision(t)
	if decides && row.Decision == DecisionRejected {
		// Nothing more is read once the participant rejected.
		return s.setSenderStatus(ctx, c, row, wfBody, StatusRejected, row.DecisionReason)
	}
	var first, rest []int
	for i, in := range inputs {
		if t.BeforeAcceptance(careapp.Coding{System: in.System, Code: in.Code}) {
			first = append(first, i)
		} else {
			rest = append(rest, i)
		}
	}
	if err := run(inputs, first); err != nil {
		return err
	}
	for _, d := range docs(first) {
		if err := t.Decide(d, row.PatientBSN); err != nil {
			return s.setSenderStatus(ctx, c, row, wfBody, StatusRejected, err.Error())
		}
	}
	if decides && row.Decision != DecisionAccepted {
		return errAwaitingDecision
	}
	for _, status := range []string{StatusAccepted, StatusInProgress} {
		if err := s.setSenderStatus(ctx, c, row, wfBody, status, ""); err != nil {
			return err
		}
	}
	return run(inputs, rest)
}

// setSenderStatus sets the sender's workflow Task to status (with reason
// as its statusReason, for a rejection); a rejection returns an
// *errRejected.
func (s *Service) setSenderStatus(ctx context.Context, c *fetcher, row Received, wfBody []byte, status, reason string) error {
	body, err := SetStatusReason(wfBody, status, reason)
	if err != nil {
		return err
	}
	if _, err := c.putStatus(ctx, row.WorkflowTask, body); err != nil {
		return fmt.Errorf("set the sender's workflow Task %s: %w", status, err)
	}
	detail := fmt.Sprintf("the sender's workflow Task set to %s", status)
	if reason != "" {
		detail += ": " + reason
	}
	s.event(row.Tenant, row.ID, "workflow-"+status, detail, nil)
	if status == StatusRejected {
		return &errRejected{reason: reason}
	}
	return nil
}

// maxDocumentReads bounds the resources a document makes readable.
const maxDocumentReads = 2000

// documentReads are the resources of the participant's record that a
// document references, directly or through what it references (relative
// references "Type/id" the store holds): what its $document answer holds,
// each of which a receiver may also read on its own.
func (s *Service) documentReads(ctx context.Context, tenant string, doc json.RawMessage) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	queue := []json.RawMessage{doc}
	for len(queue) > 0 {
		body := queue[0]
		queue = queue[1:]
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, err
		}
		for _, ref := range referencesIn(v, nil) {
			typ, id, err := ParseRead(ref)
			if err != nil || seen[typ+"/"+id] {
				continue
			}
			seen[typ+"/"+id] = true
			res, err := s.cfg.Store.Read(ctx, tenant, typ, id)
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
				continue // held elsewhere: not part of the document
			}
			if err != nil {
				return nil, err
			}
			if len(out) == maxDocumentReads {
				return nil, fhir.Errorf(http.StatusUnprocessableEntity, "too-costly", "the document references more than %d resources", maxDocumentReads)
			}
			out = append(out, typ+"/"+id)
			queue = append(queue, res.Body)
		}
	}
	return out, nil
}

// referencesIn appends every Reference.reference string in v.
func referencesIn(v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["reference"].(string); ok {
			out = append(out, r)
		}
		for k, e := range x {
			if k != "reference" {
				out = referencesIn(e, out)
			}
		}
	case []any:
		for _, e := range x {
			out = referencesIn(e, out)
		}
	}
	return out
}
