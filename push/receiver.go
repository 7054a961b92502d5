package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/internal/pgdb"
)

// MaxMessageBytes bounds a message (a letter with its PDF).
const MaxMessageBytes = 16 << 20

// HandleMessage serves POST [base]/$process-message of participant tenant:
// it validates the message, stores it in the inbox before answering, and
// answers with a message Bundle carrying the signed delivery receipt. A
// message id received before gets the receipt it got then. Every answer is
// audited before it leaves.
func (s *Service) HandleMessage(w http.ResponseWriter, r *http.Request, tenant string) {
	rec := audit.Record{Action: audit.ActionCreate, Interaction: "push-receive", Tenant: tenant, Address: r.RemoteAddr,
		AuthzProtocol: "Twiin Push; access token " + Scope}
	status, body, err := s.receive(r, tenant, &rec)
	if err != nil {
		fe := fhir.AsError(err)
		if fe == nil {
			s.log.Error("push message failed", "tenant", tenant, "err", err)
			fe = fhir.Errorf(http.StatusInternalServerError, "exception", "the message could not be stored")
			if errors.Is(err, store.ErrUnavailable) || pgdb.Unavailable(err) {
				fe = fhir.Errorf(http.StatusServiceUnavailable, "transient", "the store is unavailable; nothing was stored, try again later")
			}
		}
		status, body = fe.Status, fhir.OperationOutcome(fe.Issues...)
		rec.OutcomeText = fe.Error()
	}
	rec.Outcome = status
	if aerr := s.audit(r.Context(), rec); aerr != nil {
		s.log.Error("audit append failed; refusing", "err", aerr)
		status = http.StatusServiceUnavailable
		body = fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "transient", Diagnostics: "the audit log is unavailable"})
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion=3.0; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Service) receive(r *http.Request, tenant string, rec *audit.Record) (int, []byte, error) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		return 0, nil, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "$process-message takes POST")
	}
	subject, client, scopes, err := s.cfg.Verify(r)
	if err != nil {
		return 0, nil, &fhir.Error{Status: http.StatusUnauthorized, Cause: err,
			Issues: []fhir.Issue{{Severity: "error", Code: "login", Diagnostics: "a valid access token bound to the client certificate is required"}}}
	}
	rec.ActorURA, rec.ActorSystem = subject, client
	if !slices.Contains(scopes, Scope) {
		return 0, nil, fhir.Errorf(http.StatusForbidden, "forbidden", "the access token does not carry scope %s", Scope)
	}
	peer, err := s.cfg.PeerURA(r)
	if err != nil || peer != subject {
		return 0, nil, fhir.Errorf(http.StatusForbidden, "forbidden", "the client certificate does not belong to the token's organisation")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || !strings.Contains(mt, "json") {
			return 0, nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "$process-message accepts application/fhir+json")
		}
		if v, ok := params["fhirversion"]; ok && v != "3.0" {
			return 0, nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported",
				"FHIR version %s is not served here: this endpoint takes STU3 (fhirVersion=3.0)", v)
		}
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxMessageBytes+1))
	if err != nil {
		return 0, nil, fhir.Errorf(http.StatusBadRequest, "structure", "could not read the request body")
	}
	if len(raw) > MaxMessageBytes {
		return 0, nil, fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "a message may be at most %d bytes", MaxMessageBytes)
	}
	msg, err := parseMessage(raw)
	if err != nil {
		return 0, nil, err
	}
	rec.Task = msg.Header.ID
	if msg.Sender != peer {
		return 0, nil, fhir.Errorf(http.StatusForbidden, "forbidden", "MessageHeader.sender (%s) is not the client certificate's URA (%s)", msg.Sender, peer)
	}
	if msg.Receiver != tenant {
		return 0, nil, fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", "MessageHeader.receiver %s is not the participant of this endpoint", msg.Receiver)
	}
	party, ok := s.cfg.Parties(tenant)
	if !ok {
		return 0, nil, fhir.Errorf(http.StatusNotFound, "not-found", "no participant %s on this node", tenant)
	}
	// The whole message against the STU3 definitions: an R4 resource (or
	// any element STU3 does not have) is refused as the wrong version.
	if issues := validate.Resource(fhir.STU3, raw); hasError(issues) {
		return 0, nil, &fhir.Error{Status: http.StatusBadRequest, Issues: issues}
	}
	if msg.Header.Response != nil {
		return s.receiveAck(ctx, party, msg, raw, rec)
	}
	app, ok := s.byEv[msg.Header.Event.System+"|"+msg.Header.Event.Code]
	if !ok {
		return 0, nil, fhir.Errorf(http.StatusUnprocessableEntity, "not-supported", "message event %s|%s is no care application this node receives",
			msg.Header.Event.System, msg.Header.Event.Code)
	}
	rec.ConsentProfile = app.Consent()
	p, err := app.Validate(msg.Payload)
	rec.Patient = p.PatientBSN
	if p.Type != "" {
		rec.Types = []string{p.Type}
	}
	if err != nil {
		return 0, nil, err
	}
	if s.cfg.Identify != nil {
		if err := s.cfg.Identify(ctx, tenant, peer, p.PatientBSN); err != nil {
			return 0, nil, err
		}
	}
	in, err := s.store(ctx, party, msg, raw, app.Name(), KindMessage, p.PatientBSN)
	if err != nil {
		return 0, nil, err
	}
	rec.Resources = []string{"MessageHeader/" + msg.Header.ID}
	rec.Checks = []string{"mtls: client certificate URA = token subject = MessageHeader.sender",
		"fhir: STU3 message validated", "application: " + app.Name() + " payload validated (" + p.Description + ")"}
	return http.StatusOK, s.receiptResponse(party, msg, in.Receipt, app), nil
}

func hasError(issues []fhir.Issue) bool {
	for _, i := range issues {
		if i.Severity == "error" || i.Severity == "fatal" {
			return true
		}
	}
	return false
}

// store keeps a message in the inbox with its signed receipt; a message id
// the sender used before returns what was stored then.
func (s *Service) store(ctx context.Context, party *Party, msg message, raw []byte, app, kind, bsn string) (InMessage, error) {
	now := s.cfg.Now()
	hash := sha(raw)
	if s.cfg.Faults.Has(faults.PushReceiptWrongHash) {
		hash = sha(msg.Payload)
	}
	receipt, err := signReceipt(party.Signing, Receipt{MessageID: msg.Header.ID, SenderURA: msg.Sender,
		ReceiverURA: party.URA, PayloadSHA256: hash, Received: now.Unix()})
	if err != nil {
		return InMessage{}, err
	}
	in := InMessage{ID: newUUID(), Tenant: party.URA, MessageID: msg.Header.ID, SenderURA: msg.Sender, Application: app,
		Kind: kind, PatientBSN: bsn, Body: raw, BodySHA256: hash, Receipt: receipt, Status: StatusReceived,
		Created: now, Updated: now}
	if msg.Header.Response != nil {
		in.ResponseTo, in.Status = msg.Header.Response.Identifier, StatusProcessed
	}
	stored, created, err := s.cfg.Store.Receive(ctx, in)
	if err != nil {
		return InMessage{}, fmt.Errorf("inbox: %w", err)
	}
	if created {
		s.event(party.URA, msg.Header.ID, "received", fmt.Sprintf("%s %s from %s stored in the inbox", app, kind, msg.Sender), nil)
	} else {
		if s.cfg.Faults.Has(faults.PushRepeatNewReceipt) {
			stored.Receipt = receipt
		}
		s.event(party.URA, msg.Header.ID, "duplicate", fmt.Sprintf("message %s from %s received before; the same receipt answers", msg.Header.ID, msg.Sender), nil)
	}
	return stored, nil
}

func (s *Service) receiptResponse(party *Party, msg message, receipt string, app Application) []byte {
	sys, code := SystemEvent, EventAck
	if app != nil {
		sys, code = app.Event()
	}
	body, _ := buildMessage(header{ID: newUUID(), EventSystem: sys, Event: code, SenderURA: party.URA, SenderName: party.Name,
		Source: s.cfg.Endpoint(party.URA), ReceiverURA: msg.Sender, Destination: msg.Header.Source.Endpoint,
		ResponseTo: msg.Header.ID, ResponseCode: "ok", Timestamp: s.cfg.Now(), Receipt: receipt}, nil)
	return body
}

// receiveAck takes an application acknowledgement of a message this
// participant sent, records it on the outbox message, and answers with a
// receipt like any message.
func (s *Service) receiveAck(ctx context.Context, party *Party, msg message, raw []byte, rec *audit.Record) (int, []byte, error) {
	rec.Interaction = "push-acknowledgement"
	orig, err := s.cfg.Store.Out(ctx, party.URA, msg.Header.Response.Identifier)
	if errors.Is(err, ErrNotFound) || (err == nil && (orig.ReceiverURA != msg.Sender || orig.Kind != KindMessage)) {
		return 0, nil, fhir.Errorf(http.StatusNotFound, "not-found", "no message %s from %s to you", msg.Header.Response.Identifier, party.URA)
	}
	if err != nil {
		return 0, nil, err
	}
	rec.Patient = orig.PatientBSN
	ack := AckAccepted
	if msg.Header.Response.Code != "ok" {
		ack = AckRejected
	}
	in, err := s.store(ctx, party, msg, raw, orig.Application, KindAcknowledgement, orig.PatientBSN)
	if err != nil {
		return 0, nil, err
	}
	// Again on a repeated delivery: the first may have been stored before
	// the outbox row was updated.
	if _, err := s.cfg.Store.Acknowledge(ctx, party.URA, orig.ID, ack, msg.Note, s.cfg.Now()); err != nil {
		return 0, nil, fmt.Errorf("outbox: %w", err)
	}
	s.event(party.URA, orig.ID, "acknowledged", fmt.Sprintf("%s's system %s the message", msg.Sender, ack), nil)
	rec.Resources = []string{"MessageHeader/" + msg.Header.ID}
	rec.OutcomeText = "acknowledgement " + ack + " of " + orig.ID
	return http.StatusOK, s.receiptResponse(party, msg, in.Receipt, nil), nil
}

// Received lists a participant's inbox; ReceivedOne returns one message.
func (s *Service) Received(ctx context.Context, tenant string) ([]InMessage, error) {
	return s.cfg.Store.InList(ctx, tenant)
}

// ReceivedOne returns one message of the participant's inbox.
func (s *Service) ReceivedOne(ctx context.Context, tenant, id string) (InMessage, error) {
	m, err := s.cfg.Store.In(ctx, tenant, id)
	if err == nil && m.Kind != KindMessage {
		err = ErrNotFound
	}
	return m, err
}

// Processed records that the receiving system processed inbox message id,
// accepted or rejected (with a note), and queues the acknowledgement to
// its sender in the same transaction.
func (s *Service) Processed(ctx context.Context, tenant, id, ack, note string) (InMessage, error) {
	party, ok := s.cfg.Parties(tenant)
	if !ok {
		return InMessage{}, fmt.Errorf("%w: %s", ErrUnknownParticipant, tenant)
	}
	if ack != AckAccepted && ack != AckRejected {
		return InMessage{}, fhir.Errorf(http.StatusBadRequest, "value", "acknowledgement must be %q or %q", AckAccepted, AckRejected)
	}
	in, err := s.ReceivedOne(ctx, tenant, id)
	if err != nil {
		return in, err
	}
	if in.Status != StatusReceived {
		return in, ErrNotReceived
	}
	now := s.cfg.Now()
	code := "ok"
	if ack == AckRejected {
		code = "fatal-error"
	}
	ackID := newUUID()
	body, err := buildMessage(header{ID: ackID, EventSystem: SystemEvent, Event: EventAck, SenderURA: tenant, SenderName: party.Name,
		Source: s.cfg.Endpoint(tenant), ReceiverURA: in.SenderURA, ResponseTo: in.MessageID, ResponseCode: code, Note: note,
		Timestamp: now}, nil)
	if err != nil {
		return in, err
	}
	out := OutMessage{ID: ackID, Tenant: tenant, ReceiverURA: in.SenderURA, Application: in.Application, Kind: KindAcknowledgement,
		ResponseTo: in.MessageID, PatientBSN: in.PatientBSN, Body: body, BodySHA256: sha(body), Status: StatusQueued,
		NextAttempt: now, Expires: now.Add(s.cfg.Lifetime), Created: now, Updated: now}
	in.Ack, in.AckNote, in.Updated = ack, note, now
	done, err := s.cfg.Store.Process(ctx, in, out)
	if err != nil {
		return in, fmt.Errorf("inbox: %w", err)
	}
	if !done {
		return in, ErrNotReceived
	}
	if err := s.audit(ctx, audit.Record{Action: audit.ActionUpdate, Interaction: "push-processed", Outcome: http.StatusOK,
		Tenant: tenant, ActorURA: tenant, ActorSystem: party.SystemUZI, Patient: in.PatientBSN, Task: in.MessageID,
		OutcomeText: ack + " " + note}); err != nil {
		s.log.Error("audit append failed", "message", in.MessageID, "err", err)
	}
	s.poke()
	in.Status = StatusProcessed
	return in, nil
}

// PayloadOf returns the payload of an inbox message (the resource its
// MessageHeader's focus names).
func PayloadOf(in InMessage) ([]byte, error) {
	m, err := parseMessage(in.Body)
	return m.Payload, err
}
