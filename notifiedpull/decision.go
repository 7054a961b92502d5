package notifiedpull

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/plateau"
)

// A Transfer whose requests the receiving organisation decides on
// (careapp.Decision, e.g. eOverdracht) waits after its first stage: the
// node has read the documents the receiver decides on (the aanmeldbericht)
// and keeps them as a Bundle; the participant's system reads them, and
// accepts or rejects the request (DecideTransfer). The pull then resumes:
// on acceptance it sets the sender's workflow Task accepted and
// in-progress, reads the rest and completes; on rejection it sets the
// workflow Task rejected with the reason and reads nothing more.

// ReasonAwaitingDecision is the status reason of a received Transfer
// request that waits for the participant's decision.
const ReasonAwaitingDecision = "awaiting the receiving organisation's decision on the transfer request"

// maxDecisionReason bounds a rejection's reason (Task.statusReason.text).
const maxDecisionReason = 1000

// Errors of deciding on a Transfer request.
var (
	// ErrNotPending: the request does not wait for a decision (it was
	// decided before, has ended, is still being read, or is no request
	// that waits for one).
	ErrNotPending = errors.New("the referral does not wait for a decision")
	// ErrInvalidDecision: the decision is neither accepted nor rejected
	// with a reason.
	ErrInvalidDecision = errors.New(`a decision is {"status": "accepted"} or {"status": "rejected", "reason": text}`)
)

// TransferDecision is the receiving participant's decision on a Transfer
// request.
type TransferDecision struct {
	// Status is StatusAccepted or StatusRejected.
	Status string `json:"status"`
	// Reason is why it is rejected (required then): the sender's workflow
	// Task carries it as its statusReason.
	Reason string `json:"reason,omitempty"`
	// User is who decided (e.g. the nurse's UZI number or the system's
	// own user id), for the audit trail; optional.
	User string `json:"user,omitempty"`
	// Role is the user's role code, for the audit trail; optional.
	Role string `json:"role,omitempty"`
}

// Check refuses a decision that is neither an acceptance nor a rejection
// with a reason.
func (d TransferDecision) Check() error {
	switch {
	case d.Status == StatusAccepted && strings.TrimSpace(d.Reason) == "":
		return nil
	case d.Status == StatusAccepted:
		return fmt.Errorf("%w: an acceptance carries no reason", ErrInvalidDecision)
	case d.Status != StatusRejected:
		return fmt.Errorf("%w: status %q", ErrInvalidDecision, d.Status)
	case strings.TrimSpace(d.Reason) == "":
		return fmt.Errorf("%w: a rejection must give its reason", ErrInvalidDecision)
	case len(d.Reason) > maxDecisionReason || !utf8.ValidString(d.Reason):
		return fmt.Errorf("%w: the reason must be UTF-8 text of at most %d bytes", ErrInvalidDecision, maxDecisionReason)
	}
	return nil
}

// DecideTransfer records the participant's decision on a received Transfer
// request that waits for one, and resumes its pull. It returns the
// referral as it stands after the decision; with ErrNotPending, as it
// stood (so the refusal can be audited with its patient).
func (s *Service) DecideTransfer(ctx context.Context, tenant, id string, d TransferDecision) (Received, error) {
	row, err := s.cfg.DB.received(ctx, tenant, id)
	if errors.Is(err, errNoRow) {
		return Received{}, ErrUnknownReferral
	}
	if err != nil {
		return Received{}, err
	}
	if err := d.Check(); err != nil {
		return row, err
	}
	if err := notPending(row); err != nil {
		return row, err
	}
	ok, err := s.cfg.DB.decide(ctx, row.ID, d.Status, strings.TrimSpace(d.Reason), s.cfg.Now())
	if err != nil {
		return row, err
	}
	if !ok {
		cur, err := s.cfg.DB.received(ctx, tenant, id)
		if err != nil {
			return row, err
		}
		if err := notPending(cur); err != nil {
			return cur, err
		}
		return cur, fmt.Errorf("%w (decided concurrently)", ErrNotPending)
	}
	detail := "accepted by the receiving organisation"
	if d.Status == StatusRejected {
		detail = "rejected by the receiving organisation: " + strings.TrimSpace(d.Reason)
	}
	if d.User != "" {
		detail += " (user " + d.User + ")"
	}
	s.event(tenant, row.ID, "decided", detail, nil)
	s.enqueue(ctx, tenant, row.ID)
	return s.cfg.DB.received(ctx, tenant, id)
}

// notPending is ErrNotPending with what the referral is instead; nil when
// it waits for a decision.
func notPending(r Received) error {
	switch {
	case r.Decision == DecisionPending && !Final(r.Status):
		return nil
	case r.Decision == DecisionAccepted || r.Decision == DecisionRejected:
		return fmt.Errorf("%w: it was %s before (status %s)", ErrNotPending, r.Decision, r.Status)
	case Final(r.Status):
		return fmt.Errorf("%w: it has ended %s", ErrNotPending, r.Status)
	case r.Decision == "":
		return fmt.Errorf("%w: the documents to decide on are not read yet, or its care application asks no decision (status %s)", ErrNotPending, r.Status)
	}
	return fmt.Errorf("%w (status %s)", ErrNotPending, r.Status)
}

// awaitDecision keeps the documents read before the decision (parts) as a
// Bundle and records that the request waits for the participant.
func (s *Service) awaitDecision(ctx context.Context, row Received, party *Party, caller *plateau.Caller, app careapp.Workflow, parts []*collection) error {
	read := newCollection()
	for _, p := range parts {
		if p == nil {
			continue
		}
		for _, u := range p.order {
			read.add(u, p.byURL[u])
		}
	}
	res, err := s.dataStore(app.FHIRVersion()).Create(ctx, row.Tenant, read.bundle(row))
	if err != nil {
		return fmt.Errorf("store the transfer request's documents: %w", err)
	}
	s.auditDeferred(ctx, audit.Record{Action: audit.ActionCreate, Interaction: "pull", Outcome: http.StatusOK, Tenant: row.Tenant,
		ActorURA: row.Tenant, ActorSystem: party.SystemUZI, ActorUser: userOf(caller), ActorRole: roleOf(caller), Patient: row.PatientBSN,
		Types: read.types(), Resources: []string{"Bundle/" + res.ID}, Task: row.Identifier,
		Query: fmt.Sprintf("transfer request from %s: the documents to decide on", row.SenderURA)})
	if err := s.cfg.DB.awaitDecision(ctx, row.ID, app.Name(), res.ID, ReasonAwaitingDecision, s.cfg.Now()); err != nil {
		return err
	}
	s.event(row.Tenant, row.ID, "awaiting-decision", fmt.Sprintf("%d resources read and kept as Bundle/%s; waiting for the receiving organisation's decision", read.len(), res.ID), nil)
	return nil
}

// dropRequest deletes the documents kept for the participant's decision on
// a request the sender ended before it was decided (withdrawn, or
// superseded by a new notification): what the sender no longer makes
// available is not kept.
func (s *Service) dropRequest(ctx context.Context, row Received) error {
	if row.RequestBundle == "" || row.Decision != DecisionPending {
		return nil
	}
	v := fhir.STU3
	if a, ok := s.cfg.Applications.Get(row.Application); ok {
		v = a.FHIRVersion()
	}
	if err := s.dataStore(v).Delete(ctx, row.Tenant, "Bundle", row.RequestBundle); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrDeleted) {
		return err
	}
	return s.cfg.DB.dropRequest(ctx, row.ID)
}
