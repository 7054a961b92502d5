package notifiedpull

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
)

// A Transfer application (careapp.Transfer, e.g. eOverdracht) differs from
// a plain Notified Pull in four places, all here: the sender types a read
// input by the resource it makes available (and refuses one the
// application cannot carry); a read input is served and pulled with the
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
// document operation on one of the workflow Task's read inputs.
func authorizeTransferOperation(t careapp.Transfer, g Grant, req *rest.Request) error {
	op := t.DocumentOperation(req.Type)
	if op == "" || req.Operation != op {
		return transferDenied(http.StatusForbidden, "forbidden", "%s on %s is not an operation the workflow Task makes available", req.Operation, req.Type)
	}
	if !slices.Contains(g.Queries, req.Type+"/"+req.ID) {
		return transferDenied(http.StatusForbidden, "forbidden", "%s/%s is not an input of the workflow Task: its %s is not available under this referral", req.Type, req.ID, op)
	}
	return nil
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

// stagedPull runs a Transfer's inputs as the agreement orders them: those
// the receiver decides on first, then the workflow Task to accepted and
// in-progress on the sender, then the rest. run pulls one stage.
func (s *Service) stagedPull(ctx context.Context, c *fetcher, t careapp.Transfer, row Received, wfBody []byte, inputs []WorkflowInput,
	run func([]WorkflowInput, []int) error) error {
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
	for _, status := range []string{StatusAccepted, StatusInProgress} {
		body, err := SetStatus(wfBody, status)
		if err != nil {
			return err
		}
		if _, err := c.putStatus(ctx, row.WorkflowTask, body); err != nil {
			return fmt.Errorf("set the sender's workflow Task %s: %w", status, err)
		}
		s.event(row.Tenant, row.ID, "workflow-"+status, fmt.Sprintf("the sender's workflow Task set to %s", status), nil)
	}
	return run(inputs, rest)
}
