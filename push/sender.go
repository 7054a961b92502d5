package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/nl"
)

// SendRequest is the participant system's message to send.
type SendRequest struct {
	// ID, when given, is the message id (a UUID the system chose): sending
	// the same id again returns the message queued first.
	ID          string          `json:"id,omitempty"`
	ReceiverURA string          `json:"receiver"`
	Application string          `json:"application"`
	Payload     json.RawMessage `json:"payload"`
}

// Send validates a message the way its receiver will, and queues it in the
// outbox; it returns once the message is durable (and audited). created is
// false when the tenant sent this id before: nothing is queued again.
//
// A refusal (a 4xx *fhir.Error) is audited before it is returned: it names
// the participant, the receiver and, once the payload was read, the
// patient.
func (s *Service) Send(ctx context.Context, tenant string, req SendRequest) (_ OutMessage, _ bool, err error) {
	party, ok := s.cfg.Parties(tenant)
	if !ok {
		return OutMessage{}, false, fmt.Errorf("%w: %s", ErrUnknownParticipant, tenant)
	}
	var patient string
	defer func() {
		var fe *fhir.Error
		if err == nil || !errors.As(err, &fe) || fe.Status >= 500 {
			return
		}
		rec := audit.Record{Action: audit.ActionCreate, Interaction: "push-send", Outcome: fe.Status,
			Tenant: tenant, ActorURA: tenant, ActorSystem: party.SystemUZI, Patient: patient, Task: req.ID,
			Query: "to " + req.ReceiverURA + " (" + req.Application + ")"}
		if len(fe.Issues) > 0 {
			rec.OutcomeText = fe.Issues[0].Diagnostics
		}
		if aerr := s.audit(ctx, rec); aerr != nil {
			err = fmt.Errorf("audit of a refused message: %w", aerr)
		}
	}()
	app, ok := s.apps[req.Application]
	if !ok {
		return OutMessage{}, false, fhir.Errorf(http.StatusBadRequest, "not-supported",
			"care application %q does not run on Push here; registered: %s", req.Application, strings.Join(s.Applications(), ", "))
	}
	if err := nl.ValidateURA(req.ReceiverURA); err != nil {
		return OutMessage{}, false, fhir.Errorf(http.StatusBadRequest, "value", "receiver: %v", err)
	}
	if req.ID == "" {
		req.ID = newUUID()
	} else if !idPattern.MatchString(req.ID) {
		return OutMessage{}, false, fhir.Errorf(http.StatusBadRequest, "value", "id must be a FHIR id (a UUID)")
	}
	if len(req.Payload) == 0 {
		return OutMessage{}, false, fhir.Errorf(http.StatusBadRequest, "required", "payload is required")
	}
	p, err := app.Validate(req.Payload)
	patient = p.PatientBSN
	if err != nil {
		return OutMessage{}, false, err
	}
	now := s.cfg.Now()
	sys, code := app.Event()
	body, err := buildMessage(header{ID: req.ID, EventSystem: sys, Event: code, SenderURA: tenant, SenderName: party.Name,
		Source: s.cfg.Endpoint(tenant), ReceiverURA: req.ReceiverURA, Timestamp: now}, req.Payload)
	if err != nil {
		return OutMessage{}, false, err
	}
	// Refused now what the receiver would refuse later: the message must
	// be valid STU3.
	if issues := validate.Resource(fhir.STU3, body); hasError(issues) {
		return OutMessage{}, false, &fhir.Error{Status: http.StatusBadRequest, Issues: issues}
	}
	m := OutMessage{ID: req.ID, Tenant: tenant, ReceiverURA: req.ReceiverURA, Application: app.Name(), Kind: KindMessage,
		PatientBSN: p.PatientBSN, Body: body, BodySHA256: sha(body), Status: StatusQueued, NextAttempt: now,
		Expires: now.Add(s.cfg.Lifetime), Created: now, Updated: now}
	stored, created, err := s.cfg.Store.Enqueue(ctx, m)
	if err != nil {
		return OutMessage{}, false, fmt.Errorf("outbox: %w", err)
	}
	if !created {
		return stored, false, nil
	}
	if err := s.audit(ctx, audit.Record{Action: audit.ActionCreate, Interaction: "push-send", Outcome: http.StatusAccepted,
		Tenant: tenant, ActorURA: tenant, ActorSystem: party.SystemUZI, Patient: p.PatientBSN, Types: []string{p.Type},
		Task: req.ID, ConsentProfile: app.Consent(), Query: "to " + req.ReceiverURA + " (" + app.Name() + ")"}); err != nil {
		return OutMessage{}, false, fmt.Errorf("audit: %w", err)
	}
	s.event(tenant, req.ID, "queued", fmt.Sprintf("%s message for %s durable in the outbox", app.Name(), req.ReceiverURA), nil)
	s.poke()
	return stored, true, nil
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// DefaultLease is a delivery round's lease on a message it claimed when
// Config.Lease is not set.
const DefaultLease = 30 * time.Second

// holdLease renews the lease of message m (m.Lease) every third of the
// lease until stop, which returns the lease the message holds then. The
// context it returns (under ctx) ends, with cause ErrLeaseLost, when the
// lease is lost: another round claimed the message after it ran out, or no
// renewal succeeded in time.
func (s *Service) holdLease(ctx context.Context, m OutMessage) (context.Context, func() time.Time) {
	actx, cancel := context.WithCancelCause(ctx)
	lease := m.Lease
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		every := s.cfg.Lease / 3
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-actx.Done():
				return
			case <-tick.C:
			}
			next := s.cfg.Now().Add(s.cfg.Lease)
			ok, err := s.cfg.Store.Renew(actx, m.Tenant, m.ID, lease, next)
			switch {
			case err == nil && ok:
				lease = next
			case err == nil:
				cancel(ErrLeaseLost)
				return
			case actx.Err() != nil:
				return
			case !s.cfg.Now().Add(every).Before(lease):
				s.log.Warn("outbox: renew lease", "message", m.ID, "err", err)
				cancel(ErrLeaseLost)
				return
			default:
				s.log.Warn("outbox: renew lease (retried)", "message", m.ID, "err", err)
			}
		}
	}()
	return actx, func() time.Time {
		close(done)
		<-finished
		cancel(nil)
		return lease
	}
}

// Start resumes the outbox (unless the store is Shared, a message claimed
// by a process that stopped is due at once) and delivers until ctx ends;
// Wait waits for it.
func (s *Service) Start(ctx context.Context) error {
	if !s.cfg.Shared {
		if err := s.Resume(ctx); err != nil {
			return err
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(ctx)
	}()
	return nil
}

// Resume makes every queued message due now: the leases of a process that
// stopped are void.
func (s *Service) Resume(ctx context.Context) error {
	if err := s.cfg.Store.Release(ctx, s.cfg.Now()); err != nil {
		return fmt.Errorf("resume outbox: %w", err)
	}
	return nil
}

// DeliverDue runs one round of delivery in the caller's goroutine: every
// message due now, one attempt each. It returns how many it tried.
func (s *Service) DeliverDue(ctx context.Context) (int, error) {
	due, err := s.cfg.Store.Claim(ctx, s.cfg.Now(), s.cfg.Now().Add(s.cfg.Lease), 1000)
	for _, m := range due {
		s.deliver(ctx, m)
	}
	return len(due), err
}

// Wait blocks until delivery has stopped (after Start's context ended).
func (s *Service) Wait() { s.wg.Wait() }

func (s *Service) run(ctx context.Context) {
	sem := make(chan struct{}, s.cfg.Workers)
	for ctx.Err() == nil {
		due, err := s.cfg.Store.Claim(ctx, s.cfg.Now(), s.cfg.Now().Add(s.cfg.Lease), s.cfg.Workers*4)
		if err != nil && ctx.Err() == nil {
			s.log.Error("outbox claim", "err", err)
		}
		for i, m := range due {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.giveBack(due[i:]...)
				return
			}
			s.wg.Add(1)
			go func() {
				defer func() { <-sem; s.wg.Done() }()
				s.deliver(ctx, m)
			}()
		}
		if len(due) > 0 {
			continue
		}
		wait := time.Second
		if next, ok, err := s.cfg.Store.NextDue(ctx); err == nil && ok {
			wait = min(max(next.Sub(s.cfg.Now()), 10*time.Millisecond), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Backoff is the wait before attempt n+1 after n failed attempts: base·2^(n-1),
// at most max, of which a random half (full jitter on the upper half) so that
// senders that failed together do not retry together.
func Backoff(n int, base, maxWait time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d/2 + rand.N(d/2+1)
}

// errRefused: the receiver answered the message and refused it.
type errRefused struct {
	status int
	text   string
}

func (e *errRefused) Error() string {
	return fmt.Sprintf("receiver refused the message: %d: %s", e.status, e.text)
}

func (s *Service) deliver(ctx context.Context, m OutMessage) {
	now := s.cfg.Now()
	if !now.Before(m.Expires) {
		s.finish(ctx, m, StatusFailed, fmt.Sprintf("not delivered within its lifetime (%d attempts; last: %s)", m.Attempts, m.StatusReason))
		return
	}
	// The lease is renewed while the attempt runs; lost, the attempt
	// stops and its outcome is left to the round that claimed it since.
	actx, stop := s.holdLease(ctx, m)
	receipt, err := s.attempt(actx, m)
	m.Lease = stop()
	if errors.Is(context.Cause(actx), ErrLeaseLost) {
		s.log.Warn("outbox: delivery stopped: lease lost", "message", m.ID)
		return
	}
	if ctx.Err() != nil {
		s.giveBack(m) // stopping: another replica (or the next start) tries it at once
		return
	}
	m.Attempts++
	if err == nil {
		m.Receipt, m.Delivered = receipt, s.cfg.Now()
		s.finish(ctx, m, StatusDelivered, "")
		return
	}
	var refused *errRefused
	if errors.As(err, &refused) {
		s.finish(ctx, m, StatusRefused, refused.Error())
		return
	}
	m.StatusReason = err.Error()
	m.NextAttempt = s.cfg.Now().Add(Backoff(m.Attempts, s.cfg.RetryBase, s.cfg.RetryMax))
	if !m.NextAttempt.Before(m.Expires) {
		m.NextAttempt = m.Expires // one last look, to mark it failed on time
	}
	m.Updated = s.cfg.Now()
	if uerr := s.cfg.Store.UpdateOut(ctx, m); errors.Is(uerr, ErrLeaseLost) {
		s.log.Warn("outbox: delivery stopped: lease lost", "message", m.ID)
		return
	} else if uerr != nil {
		s.log.Error("outbox update", "message", m.ID, "err", uerr)
	}
	s.event(m.Tenant, m.ID, "retry", fmt.Sprintf("attempt %d failed; next at %s", m.Attempts, m.NextAttempt.Format(time.RFC3339)), err)
}

// giveBack makes messages this process claimed but will not attempt (it
// is stopping) due now, while it still holds their leases: a replica
// sharing the store takes them up at once instead of a lease later. A
// message whose attempt was cut short may have reached the receiver; the
// next attempt carries the same message id, which the receiver accepts
// once.
func (s *Service) giveBack(ms ...OutMessage) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := s.cfg.Now()
	for _, m := range ms {
		if m.Lease.IsZero() || !m.Lease.After(now) {
			continue
		}
		if _, err := s.cfg.Store.Renew(ctx, m.Tenant, m.ID, m.Lease, now); err != nil {
			s.log.Warn("outbox: give back lease at stop", "message", m.ID, "err", err)
		}
	}
}

// finish ends a message's delivery; the sending system learns of it from
// the message's status (GET /internal/messages), and the event.
func (s *Service) finish(ctx context.Context, m OutMessage, status, reason string) {
	m.Status, m.StatusReason, m.Updated = status, reason, s.cfg.Now()
	if err := s.cfg.Store.UpdateOut(ctx, m); errors.Is(err, ErrLeaseLost) {
		// Another round claimed it since: that one finishes it.
		s.log.Warn("outbox: delivery stopped: lease lost", "message", m.ID)
		return
	} else if err != nil {
		s.log.Error("outbox update", "message", m.ID, "err", err)
		return
	}
	outcome := http.StatusOK
	if status != StatusDelivered {
		outcome = http.StatusBadGateway
	}
	interaction := "push-deliver"
	if m.Kind == KindAcknowledgement {
		interaction = "push-acknowledge"
	}
	if err := s.audit(ctx, audit.Record{Action: audit.ActionExecute, Interaction: interaction, Outcome: outcome, OutcomeText: reason,
		Tenant: m.Tenant, ActorURA: m.Tenant, NotRequestor: true, Patient: m.PatientBSN, Task: m.ID,
		Query: "to " + m.ReceiverURA + " (" + m.Application + ")", Checks: deliveryChecks(status)}); err != nil {
		s.log.Error("audit append failed", "message", m.ID, "err", err)
	}
	var err error
	if status != StatusDelivered {
		err = errors.New(reason)
	}
	s.event(m.Tenant, m.ID, status, fmt.Sprintf("%s %s to %s after %d attempt(s)", m.Kind, status, m.ReceiverURA, m.Attempts), err)
}

func deliveryChecks(status string) []string {
	if status == StatusDelivered {
		return []string{"receipt: signature verified against the receiver's key set; message id, parties and payload hash match"}
	}
	return nil
}

// attempt delivers m once and returns the verified receipt.
func (s *Service) attempt(ctx context.Context, m OutMessage) (string, error) {
	party, ok := s.cfg.Parties(m.Tenant)
	if !ok {
		return "", &errRefused{text: "the sender is no longer a participant of this node"}
	}
	target, err := s.cfg.Directory.Endpoint(ctx, m.ReceiverURA, PayloadType, "3.0")
	if err != nil {
		return "", fmt.Errorf("find the receiver's push endpoint: %w", err)
	}
	var answer []byte
	for try := 0; ; try++ {
		tok, err := s.cfg.Token(ctx, party, m.ReceiverURA, try > 0)
		if err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(m.Body))
		if err != nil {
			return "", &errRefused{text: "the addressbook lists no usable push endpoint: " + err.Error()}
		}
		req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
		req.Header.Set("Accept", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := party.HTTP.Do(req)
		if err != nil {
			return "", fmt.Errorf("deliver: %w", err)
		}
		answer, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && try == 0 {
			continue // a reused token the receiver no longer takes: once more with a fresh one
		}
		switch {
		case resp.StatusCode == http.StatusOK:
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests ||
			resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusUnauthorized:
			return "", fmt.Errorf("receiver answered %s: %s", resp.Status, outcomeText(answer))
		default:
			return "", &errRefused{status: resp.StatusCode, text: outcomeText(answer)}
		}
		break
	}
	receipt, err := receiptFrom(answer)
	if err != nil {
		return "", err
	}
	keys, err := s.cfg.PartnerKeys(ctx, m.ReceiverURA)
	if err != nil {
		return "", fmt.Errorf("receiver's key set: %w", err)
	}
	if _, err := VerifyReceipt(receipt, keys, m); err != nil && !s.cfg.Faults.Has(faults.PushReceiptNotVerified) {
		// A receipt that does not check out is no proof of delivery; the
		// receiver de-duplicates, so trying again is safe.
		return "", err
	}
	return receipt, nil
}

func outcomeText(body []byte) string {
	var oo struct {
		Issue []struct{ Diagnostics string } `json:"issue"`
	}
	if json.Unmarshal(body, &oo) == nil && len(oo.Issue) > 0 {
		return oo.Issue[0].Diagnostics
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}

// Sent lists a participant's outbox; Message returns one.
func (s *Service) Sent(ctx context.Context, tenant string) ([]OutMessage, error) {
	all, err := s.cfg.Store.OutList(ctx, tenant)
	var out []OutMessage
	for _, m := range all {
		if m.Kind == KindMessage {
			out = append(out, m)
		}
	}
	return out, err
}

// SentOne returns one message of the participant's outbox.
func (s *Service) SentOne(ctx context.Context, tenant, id string) (OutMessage, error) {
	m, err := s.cfg.Store.Out(ctx, tenant, id)
	if err == nil && m.Kind != KindMessage {
		err = ErrNotFound
	}
	return m, err
}
