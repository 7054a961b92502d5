package notifiedpull

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

const maxNotificationBytes = 256 << 10

// HandleNotification serves the Task endpoint of a participant: POST creates a
// notification (SPEC §4 step 3), PUT with ?identifier= withdraws one. The
// caller has already checked that tenant is a participant of this node.
func (s *Service) HandleNotification(w http.ResponseWriter, r *http.Request, tenant string) {
	rec := audit.Record{Action: audit.ActionCreate, Interaction: "notify", Tenant: tenant, Address: r.RemoteAddr, Types: []string{"Task"}}
	status, body, err := s.handleNotification(r, tenant, &rec)
	if err != nil {
		fe := fhir.AsError(err)
		if fe == nil {
			s.log.Error("notification failed", "tenant", tenant, "err", err)
			fe = fhir.Errorf(http.StatusInternalServerError, "exception", "the notification could not be processed")
			if errors.Is(err, store.ErrUnavailable) || pgdb.Unavailable(err) {
				fe = fhir.Errorf(http.StatusServiceUnavailable, "transient", "the store is unavailable; nothing was stored, try again later")
			}
		}
		if fe.Cause != nil && !errors.Is(fe.Cause, ErrInvalidNotification) {
			s.log.Info("notification refused", "tenant", tenant, "status", fe.Status, "cause", fe.Cause)
		}
		status = fe.Status
		body = fhir.OperationOutcome(fe.Issues...)
		rec.OutcomeText = fe.Error()
	}
	rec.Outcome = status
	// The answer leaves only after its audit record is written.
	if aerr := s.cfg.Audit.Append(r.Context(), rec); aerr != nil {
		s.log.Error("audit append failed; refusing", "err", aerr)
		status = http.StatusServiceUnavailable
		body = fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "transient", Diagnostics: "the audit log is unavailable"})
	}
	if err != nil {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion=3.0; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Service) handleNotification(r *http.Request, tenant string, rec *audit.Record) (int, []byte, error) {
	ctx := r.Context()
	tok, err := s.cfg.Verify(r, s.cfg.Issuer)
	if err != nil {
		return 0, nil, &fhir.Error{Status: http.StatusUnauthorized, Cause: err,
			Issues: []fhir.Issue{{Severity: "error", Code: "login", Diagnostics: "a valid access token bound to the client certificate is required"}}}
	}
	rec.ActorURA = tok.Subject
	rec.ActorSystem = tok.ClientID
	if !tok.HasScope(ScopeNotify) {
		return 0, nil, fhir.Errorf(http.StatusForbidden, "forbidden", "the access token does not carry scope %s", ScopeNotify)
	}
	peerURA, err := s.cfg.PeerURA(r)
	if err != nil || peerURA != tok.Subject {
		return 0, nil, fhir.Errorf(http.StatusForbidden, "forbidden", "the client certificate does not belong to the token's organisation")
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.Contains(ct, "json") {
		return 0, nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "the Task endpoint accepts application/fhir+json")
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxNotificationBytes+1))
	if err != nil {
		return 0, nil, fhir.Errorf(http.StatusBadRequest, "structure", "could not read the request body")
	}
	if len(raw) > maxNotificationBytes {
		return 0, nil, fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "a notification Task may be at most %d bytes", maxNotificationBytes)
	}
	now := s.cfg.Now()
	switch {
	case r.Method == http.MethodPost:
	case r.Method == http.MethodPut && r.URL.Query().Get("identifier") != "":
		return s.withdraw(ctx, r, tenant, peerURA, raw, rec)
	default:
		return 0, nil, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "the Task endpoint accepts POST (create) and conditional PUT (withdraw)")
	}
	n, err := parseNotification(raw, now, !s.cfg.Faults.Has(faults.NotificationBSNUnchecked))
	// A refused notification is audited with the patient and Task it names
	// validly (ParseNotification keeps only well-formed identifiers).
	rec.Patient = n.PatientBSN
	rec.Task = n.Identifier
	if err != nil {
		return 0, nil, err
	}
	if n.Status != StatusRequested {
		return 0, nil, fhir.Errorf(http.StatusBadRequest, "invalid", "a new notification must have status requested")
	}
	if n.OwnerURA != tenant {
		return 0, nil, fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", "Task.owner %s is not the participant of this endpoint", n.OwnerURA)
	}
	if _, ok := s.cfg.Parties(n.OwnerURA); !ok {
		return 0, nil, fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", "Task.owner %s is not a participant of this node", n.OwnerURA)
	}
	if n.SenderURA != peerURA {
		return 0, nil, fhir.Errorf(http.StatusForbidden, "forbidden", "Task.requester.onBehalfOf (%s) does not match the client certificate's URA", n.SenderURA)
	}
	if prev, err := s.cfg.DB.receivedByIdentifier(ctx, n.SenderURA, n.Identifier); err == nil {
		// A repeated delivery of the same notification: answer as before.
		rec.Resources = []string{"Task/" + prev.ID}
		return http.StatusOK, s.storedTask(ctx, tenant, prev.ID), nil
	}
	if s.cfg.Identify != nil {
		if err := s.cfg.Identify(ctx, IdentityCheck{Tenant: tenant, PartnerURA: n.SenderURA, PatientBSN: n.PatientBSN,
			Step: "notification"}); err != nil {
			return 0, nil, err
		}
	}
	// Keep the notification as received, minus the secret, for the
	// participant's systems; the secret lives only in the exchange state.
	stored, err := redactAuthBase(raw)
	if err != nil {
		return 0, nil, err
	}
	res, err := s.cfg.Store.Create(ctx, tenant, stored)
	if err != nil {
		return 0, nil, fmt.Errorf("store notification Task: %w", err)
	}
	row := Received{ID: res.ID, Tenant: tenant, Identifier: n.Identifier, SenderURA: n.SenderURA, SenderSystem: n.SenderSystem,
		PatientBSN: n.PatientBSN, WorkflowTask: n.WorkflowTask, AuthBase: n.AuthorizationBase, Expires: n.Expires,
		Status: StatusRequested, Created: now, Updated: now, Awaiting: s.cfg.NeedsUser(tenant, n.SenderURA),
		Group: n.GroupIdentifier, GetWorkflowTask: n.GetWorkflowTask}
	if row.Group == "" {
		row.Group = n.Identifier // a notification without a group is a group of its own
	}
	if row.Awaiting {
		row.StatusReason = ReasonAwaitingUser
	}
	inserted, err := s.cfg.DB.insertReceived(ctx, row)
	if err != nil || !inserted {
		_ = s.cfg.Store.Delete(ctx, tenant, "Task", res.ID)
		if err == nil {
			err = errors.New("concurrent duplicate notification")
		}
		return 0, nil, fmt.Errorf("store notification: %w", err)
	}
	rec.Resources = []string{"Task/" + res.ID}
	s.event(tenant, res.ID, "received", fmt.Sprintf("notification %s from %s accepted as Task/%s", n.Identifier, n.SenderURA, res.ID), nil)
	if err := s.supersede(ctx, row); err != nil {
		// The new notification stands; an earlier one left running pulls
		// what its own grant still allows, which the sender has ended.
		s.log.Error("earlier notifications of the group not superseded", "referral", res.ID, "group", row.Group, "err", err)
	}
	if row.Awaiting {
		s.event(tenant, res.ID, "awaiting-user", "the pull waits for a user to accept the referral", nil)
	} else {
		s.enqueue(ctx, tenant, res.ID)
	}
	return http.StatusCreated, res.Body, nil
}

// supersede ends the earlier notifications of row's group (TA Notified
// Pull: a changed data set is announced by a new notification with the
// same groupIdentifier): one not yet completed is cancelled, so its pull
// keeps nothing; a completed one keeps the data it pulled. The exchange
// state follows the newest.
func (s *Service) supersede(ctx context.Context, row Received) error {
	group, err := s.cfg.DB.receivedInGroup(ctx, row.Tenant, row.SenderURA, row.Group)
	if err != nil {
		return err
	}
	var errs []error
	for _, old := range group {
		if old.ID == row.ID || Final(old.Status) {
			continue
		}
		if err := s.setReceived(ctx, old, StatusCancelled, "superseded by notification "+row.Identifier); err != nil {
			errs = append(errs, fmt.Errorf("notification %s: %w", old.ID, err))
			continue
		}
		if err := s.dropRequest(ctx, old); err != nil {
			errs = append(errs, fmt.Errorf("notification %s: %w", old.ID, err))
		}
		s.event(row.Tenant, old.ID, "superseded", fmt.Sprintf("notification %s superseded by %s (Task/%s)", old.Identifier, row.Identifier, row.ID), nil)
	}
	return errors.Join(errs...)
}

func (s *Service) storedTask(ctx context.Context, tenant, id string) []byte {
	res, err := s.cfg.Store.Read(ctx, tenant, "Task", id)
	if err != nil {
		return fhir.OperationOutcome()
	}
	return res.Body
}

// withdraw handles the sender's conditional update setting a notification to cancelled.
func (s *Service) withdraw(ctx context.Context, r *http.Request, tenant, peerURA string, raw []byte, rec *audit.Record) (int, []byte, error) {
	rec.Action = audit.ActionUpdate
	rec.Interaction = "withdraw"
	ident := r.URL.Query().Get("identifier")
	sys, value, ok := strings.Cut(ident, "|")
	if !ok || sys != SystemRFC3986 || value == "" {
		return 0, nil, fhir.Errorf(http.StatusBadRequest, "invalid", "identifier must be %s|<value>", SystemRFC3986)
	}
	if err := checkTaskURI(value); err != nil {
		return 0, nil, fhir.Errorf(http.StatusBadRequest, "value", "search parameter identifier: %s", err)
	}
	var t task
	if err := json.Unmarshal(raw, &t); err != nil {
		return 0, nil, fhir.Errorf(http.StatusBadRequest, "structure", "body is not a valid FHIR JSON Task: %s", jsonProblem(err))
	}
	if t.ResourceType != "Task" || t.Status != StatusCancelled {
		return 0, nil, fhir.Errorf(http.StatusBadRequest, "invalid", "a conditional update of a notification may only set status cancelled")
	}
	row, err := s.cfg.DB.receivedByIdentifier(ctx, peerURA, value)
	if errors.Is(err, errNoRow) || (err == nil && row.Tenant != tenant) {
		return 0, nil, fhir.Errorf(http.StatusNotFound, "not-found", "no notification with this identifier from your organisation")
	}
	if err != nil {
		return 0, nil, err
	}
	rec.Patient = row.PatientBSN
	rec.Task = row.Identifier
	rec.Resources = []string{"Task/" + row.ID}
	if err := s.setReceived(ctx, row, StatusCancelled, "withdrawn by the sender"); err != nil {
		return 0, nil, err
	}
	if err := s.dropRequest(ctx, row); err != nil {
		s.log.Error("withdrawn transfer request: documents not deleted", "referral", row.ID, "err", err)
	}
	s.event(tenant, row.ID, "withdrawn", fmt.Sprintf("notification %s withdrawn by %s", value, peerURA), nil)
	return http.StatusOK, s.storedTask(ctx, tenant, row.ID), nil
}

// setReceived moves a received notification to status, in the exchange
// state and in the stored notification Task.
func (s *Service) setReceived(ctx context.Context, row Received, status, reason string) error {
	return s.advance(ctx, row, &noteTask{}, status, reason)
}

// noteTask is the stored notification Task as a pull last wrote it: its
// status changes are then one write each, not a read and a write.
type noteTask struct{ cur store.Resource }

// advance moves a received notification to status: the exchange state,
// then the notification Task, written over the version in note when it is
// still current (else read afresh), and kept in note for the next change.
func (s *Service) advance(ctx context.Context, row Received, note *noteTask, status, reason string) error {
	if err := s.cfg.DB.setReceivedStatusLeased(ctx, row.ID, row.lease, status, reason, s.cfg.Now()); err != nil {
		return err
	}
	return s.writeNoteStatus(ctx, row, note, status)
}

func (s *Service) writeNoteStatus(ctx context.Context, row Received, note *noteTask, status string) error {
	for attempt := 0; attempt < 2; attempt++ {
		if note.cur.ID == "" || attempt > 0 {
			cur, err := s.cfg.Store.Read(ctx, row.Tenant, "Task", row.ID)
			if err != nil {
				return err
			}
			note.cur = cur
		}
		body, err := SetStatus(note.cur.Body, status)
		if err != nil {
			return err
		}
		// Over the version this pull wrote: a change by anyone else (a
		// withdrawal) makes it read the Task again.
		res, _, err := s.cfg.Store.Update(ctx, row.Tenant, body, note.cur.VersionID)
		if errors.Is(err, store.ErrVersionConflict) {
			continue
		}
		if err != nil {
			return err
		}
		note.cur = res
		return nil
	}
	return fmt.Errorf("notification Task %s: %w", row.ID, store.ErrVersionConflict)
}

func redactAuthBase(raw []byte) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", "body is not a JSON object")
	}
	var inputs []map[string]json.RawMessage
	if err := json.Unmarshal(m["input"], &inputs); err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", "Task.input is malformed")
	}
	for _, in := range inputs {
		var typ codeableConcept
		_ = json.Unmarshal(in["type"], &typ)
		if hasCoding(typ.Coding, SystemTaskParameter, ParamAuthBase) {
			in["valueString"], _ = json.Marshal("[kept by the node]")
		}
	}
	m["input"], _ = json.Marshal(inputs)
	delete(m, "id")
	delete(m, "meta")
	// Keep the profile the sender declared.
	var meta struct {
		Profile []string `json:"profile,omitempty"`
	}
	_ = json.Unmarshal(raw, &struct {
		Meta *struct {
			Profile []string `json:"profile,omitempty"`
		} `json:"meta"`
	}{Meta: &meta})
	if len(meta.Profile) > 0 {
		m["meta"], _ = json.Marshal(meta)
	}
	return json.Marshal(m)
}

// pull runs SPEC §4 step 4 for one accepted notification, under a lease
// on it that it renews while it works (holdLease).
func (s *Service) pull(ctx context.Context, tenant, id string) {
	now := s.cfg.Now()
	owner := s.leaseOwner()
	leased, err := s.cfg.DB.leasePull(ctx, id, owner, now, now.Add(s.cfg.Lease))
	if err != nil {
		s.log.Error("pull: lease notification", "referral", id, "err", err)
		return
	}
	if !leased {
		return // another worker (perhaps another replica) is pulling it
	}
	lctx, stop := s.holdLease(ctx, id, owner, now.Add(s.cfg.Lease))
	defer stop()
	pended, done := false, false
	defer func() {
		// Released with a context of its own: a shutdown ends ctx, and
		// the next replica should not wait out the lease. A completion
		// hands it on to its report to the sender (reportCompletion).
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.cfg.DB.releasePull(rctx, id, owner, done); err != nil {
			s.log.Warn("pull: release notification", "referral", id, "err", err)
		}
		// A decision taken before the lease was released found it held:
		// its pull starts now.
		if !pended {
			return
		}
		if cur, err := s.cfg.DB.received(rctx, tenant, id); err == nil && !Final(cur.Status) &&
			(cur.Decision == DecisionAccepted || cur.Decision == DecisionRejected) {
			s.enqueue(ctx, tenant, id)
		}
	}()
	row, err := s.cfg.DB.received(lctx, tenant, id)
	if err != nil {
		s.log.Error("pull: load notification", "referral", id, "err", err)
		return
	}
	if Final(row.Status) {
		return
	}
	row.lease = owner
	err = s.doPull(lctx, ctx, row)
	done = err == nil
	if err != nil {
		if errors.Is(err, errAwaitingDecision) {
			pended = true
			return
		}
		if errors.Is(err, errLeaseLost) || errors.Is(context.Cause(lctx), errLeaseLost) {
			// Another worker took the notification over: it pulls and
			// completes it; this one writes nothing more.
			s.log.Warn("pull stopped: lease lost", "referral", id, "err", err)
			return
		}
		if ctx.Err() != nil {
			return // shutting down: resumed at the next start
		}
		s.log.Warn("pull failed", "referral", id, "err", err)
		cur, _ := s.cfg.DB.received(ctx, tenant, id)
		if cur.Status != StatusCancelled {
			_ = s.setReceived(ctx, row, StatusFailed, err.Error())
		}
		s.event(tenant, id, "failed", "", err)
	}
}

// holdLease keeps owner's lease on notification id, which runs until
// until, renewing it every renewInterval until stop is called. The
// context it returns (under ctx) ends, with cause errLeaseLost, when the
// lease is lost: another worker took the notification over, or no renewal
// succeeded in time, so another may have.
func (s *Service) holdLease(ctx context.Context, id, owner string, until time.Time) (context.Context, func()) {
	lctx, cancel := context.WithCancelCause(ctx)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(s.renewInterval())
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			next := s.cfg.Now().Add(s.cfg.Lease)
			ok, err := s.cfg.DB.renewPull(lctx, id, owner, next)
			switch {
			case err == nil && ok:
				until = next
			case err == nil:
				cancel(errLeaseLost)
				return
			case lctx.Err() != nil:
				return
			case !s.cfg.Now().Add(s.renewInterval()).Before(until):
				// The lease ends before the next renewal could save it.
				s.log.Warn("pull: renew lease", "referral", id, "err", err)
				cancel(errLeaseLost)
				return
			default:
				s.log.Warn("pull: renew lease (retried)", "referral", id, "err", err)
			}
		}
	}()
	return lctx, func() {
		close(done)
		<-finished
		cancel(nil)
	}
}

// doPull pulls row's data under ctx (the pull's lease); bg outlives the
// pull, for the completion report that runs beside.
func (s *Service) doPull(ctx, bg context.Context, row Received) error {
	party, ok := s.cfg.Parties(row.Tenant)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownParticipant, row.Tenant)
	}
	// The notification Task goes from requested to in-progress in one
	// status write (SPEC §4 step 3: accepted/in-progress), beside the
	// token request it does not depend on; no data is read before it is on
	// record, and it is completed only after. A resumed pull (after the
	// participant's decision) is in progress already.
	note := &noteTask{}
	taken := s.background(func() error {
		if row.Status == StatusInProgress {
			return nil
		}
		return s.advance(ctx, row, note, StatusInProgress, "")
	})
	caller := callerOf(row, party)
	c, err := s.connect(ctx, row, party, caller)
	if err := errors.Join(err, <-taken); err != nil {
		return err
	}
	wfBody, inputs, err := s.inputsOf(ctx, c, row)
	if err != nil {
		return err
	}
	// The queries are independent: run a few at a time over the (HTTP/2)
	// connection, then merge the answers in the workflow Task's order.
	parts := make([]*collection, len(inputs))
	summary := make([]QueryResult, len(inputs))
	errs := make([]error, len(inputs)+1)
	runInputs := func(inputs []WorkflowInput, which []int) error {
		// A few workers take the queries in turn: each grows its stack
		// once for all the queries it runs.
		var wg sync.WaitGroup
		var next atomic.Int64
		for range min(len(which), parallelQueries) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := int(next.Add(1)) - 1
					if k >= len(which) {
						return
					}
					i := which[k]
					parts[i] = newCollection()
					summary[i], errs[i] = c.run(ctx, inputs[i], parts[i])
					if errs[i] == nil {
						qr := summary[i]
						s.event(row.Tenant, row.ID, "query", fmt.Sprintf("%-28s %3d match(es) %3d included", qr.Block, qr.Matches, qr.Included), nil)
					}
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if t, ok := c.app.(careapp.Transfer); ok && wfBody != nil {
		docs := func(which []int) []json.RawMessage {
			var out []json.RawMessage
			for _, i := range which {
				if parts[i] != nil {
					for _, u := range parts[i].order {
						out = append(out, parts[i].byURL[u])
					}
				}
			}
			return out
		}
		err := s.stagedPull(ctx, c, t, row, wfBody, inputs, runInputs, docs)
		if errors.Is(err, errAwaitingDecision) {
			// The participant's system decides: keep what it decides on,
			// and wait (Service.DecideTransfer enqueues the pull again).
			if err := s.awaitDecision(ctx, row, party, caller, c.app, parts); err != nil {
				return err
			}
			return errAwaitingDecision
		}
		var rejected *errRejected
		if errors.As(err, &rejected) {
			// The receiver decided: nothing is kept, and the referral
			// ends rejected on both sides.
			if err := errors.Join(s.setReceived(ctx, row, StatusRejected, rejected.reason),
				s.writeNoteStatus(ctx, row, note, StatusRejected)); err != nil {
				return err
			}
			_ = s.cfg.DB.reportDone(context.WithoutCancel(ctx), row.ID)
			s.event(row.Tenant, row.ID, "rejected", rejected.reason, nil)
			return nil
		}
		errs[len(inputs)] = err
	} else {
		all := make([]int, len(inputs))
		for i := range all {
			all[i] = i
		}
		errs[len(inputs)] = runInputs(inputs, all)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	collected := newCollection()
	for _, p := range parts {
		for _, u := range p.order {
			collected.add(u, p.byURL[u])
		}
	}
	cur, _ := s.cfg.DB.received(ctx, row.Tenant, row.ID)
	if cur.Status == StatusCancelled {
		return nil // withdrawn while pulling: keep nothing
	}
	bundle := collected.bundle(row)
	res, err := s.dataStore(c.app.FHIRVersion()).Create(ctx, row.Tenant, bundle)
	if err != nil {
		return fmt.Errorf("store pulled data: %w", err)
	}
	// The pull answers no one: its record rides with the next record some
	// answer waits on (audit.Store.Defer), and is queued before the
	// completion is written, so no answer that shows it leaves before it
	// is durable.
	s.auditDeferred(ctx, audit.Record{Action: audit.ActionCreate, Interaction: "pull", Outcome: http.StatusOK, Tenant: row.Tenant,
		ActorURA: row.Tenant, ActorSystem: party.SystemUZI, ActorUser: userOf(caller), ActorRole: roleOf(caller), Patient: row.PatientBSN, Types: collected.types(),
		Resources: []string{"Bundle/" + res.ID}, Query: fmt.Sprintf("%d queries from %s", len(inputs), row.SenderURA), Task: row.Identifier})
	// Result and status in one statement, then the notification Task.
	if err := s.cfg.DB.completeReceived(ctx, row.ID, row.lease, c.app.Name(), res.ID, summary, s.cfg.Now()); err != nil {
		if errors.Is(err, errLeaseLost) {
			// Another worker pulls it again and keeps its own Bundle.
			if derr := s.dataStore(c.app.FHIRVersion()).Delete(context.WithoutCancel(ctx), row.Tenant, "Bundle", res.ID); derr != nil {
				s.log.Warn("pull: delete the Bundle of a pull that lost its lease", "referral", row.ID, "bundle", res.ID, "err", derr)
			}
		}
		return err
	}
	// The exchange state says completed: the sender is told now, beside
	// the notification Task's last status write. Nothing here waits for
	// the sender to take the completion; it is retried when the sender
	// cannot take it yet.
	s.reportCompletion(bg, c, row, wfBody)
	if err := s.writeNoteStatus(ctx, row, note, StatusCompleted); err != nil {
		// The data is stored and the completion on record (and on its way
		// to the sender): a notification Task left behind does not undo
		// that, but the operator must see it.
		s.log.Error("pull completed, but its notification Task was not set completed", "referral", row.ID, "err", err)
	}
	if s.cfg.Holding != nil {
		s.cfg.Holding(ctx, Holding{Tenant: row.Tenant, PatientBSN: row.PatientBSN, BirthDate: collected.birthDate(row.PatientBSN),
			Application: c.app.Name()})
	}
	s.event(row.Tenant, row.ID, "completed", fmt.Sprintf("%d resources stored as Bundle/%s", collected.len(), res.ID), nil)
	return nil
}

// inputsOf is what a pull runs, as the notification's get-workflow-task
// input says: true, the inputs of the workflow Task, read first (its body
// is returned, for the completion report); false, the care application's
// own query set for the patient, without reading the workflow Task.
func (s *Service) inputsOf(ctx context.Context, c *fetcher, row Received) ([]byte, []WorkflowInput, error) {
	if !row.GetWorkflowTask {
		var inputs []WorkflowInput
		for _, q := range c.app.Queries(row.PatientBSN) {
			inputs = append(inputs, WorkflowInput{System: q.Code.System, Code: q.Code.Code, Display: q.Name, Query: q.Search, Reference: q.Read})
		}
		s.event(row.Tenant, row.ID, "workflow-task", fmt.Sprintf("get-workflow-task is false: the %s query set, %d queries, without reading the workflow Task", c.app.Name(), len(inputs)), nil)
		return nil, inputs, nil
	}
	wfBody, err := c.get(ctx, row.WorkflowTask)
	if err != nil {
		return nil, nil, fmt.Errorf("read workflow Task: %w", err)
	}
	wfStatus, inputs, err := ParseWorkflowInputs(wfBody)
	if err != nil {
		return nil, nil, err
	}
	s.event(row.Tenant, row.ID, "workflow-task", fmt.Sprintf("workflow Task read (status %s): %d inputs", wfStatus, len(inputs)), nil)
	return wfBody, inputs, nil
}

// Reporting the completion to the sender: attempts, and the wait before
// the first retry (doubling after each).
const (
	reportAttempts = 5
	reportBackoff  = 200 * time.Millisecond
)

// reportCompletion sets the sender's workflow Task to completed (only its
// status changes) in the background, with the pull's token, retrying a
// failed attempt (no answer, or 5xx/429) a few times with backoff. A
// refusal is not retried: the sender decided. The report stays pending in
// the exchange state (resumed at the next start) until the sender took it
// or refused it. Service.Wait waits for it.
//
// The report goes on under the lease row.lease holds (the pull's, handed
// on, or resumeReport's): renewed while it runs, released when it ends, so
// that when its replica dies another takes the report up (orphanedReports).
func (s *Service) reportCompletion(ctx context.Context, c *fetcher, row Received, wfBody []byte) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if row.lease != "" {
			lctx, stop := s.holdLease(ctx, row.ID, row.lease, s.cfg.Now().Add(s.cfg.Lease))
			defer func() {
				stop()
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := s.cfg.DB.releasePull(rctx, row.ID, row.lease, false); err != nil {
					s.log.Warn("report: release notification", "referral", row.ID, "err", err)
				}
			}()
			ctx = lctx
		}
		if wfBody == nil {
			// Not read before the pull (get-workflow-task false): the
			// report is the workflow Task as it is now, status changed.
			var err error
			if wfBody, err = c.get(ctx, row.WorkflowTask); err != nil {
				// Still pending: the next start tries again.
				s.log.Warn("could not report completion to the sender", "referral", row.ID, "err", err)
				return
			}
		}
		done, err := SetStatus(wfBody, StatusCompleted)
		if err != nil {
			s.log.Warn("could not report completion to the sender", "referral", row.ID, "err", err)
			return
		}
		wait := reportBackoff
		for attempt := 1; ; attempt++ {
			status, err := c.putStatus(ctx, row.WorkflowTask, done)
			retry := err != nil && (status == 0 || status >= 500 || status == http.StatusTooManyRequests)
			if !retry {
				if err := s.cfg.DB.reportDone(context.WithoutCancel(ctx), row.ID); err != nil {
					s.log.Error("completion report not recorded as done", "referral", row.ID, "err", err)
				}
			}
			if err == nil {
				return
			}
			if errors.Is(context.Cause(ctx), errLeaseLost) {
				s.log.Warn("completion report stopped: lease lost", "referral", row.ID)
				return
			}
			if !retry || attempt == reportAttempts || ctx.Err() != nil {
				s.log.Warn("could not report completion to the sender", "referral", row.ID, "attempts", attempt, "err", err)
				s.event(row.Tenant, row.ID, "report-failed", "the sender was not told of the completion", err)
				return
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			wait *= 2
		}
	}()
}

// auditDeferred writes the record of a step that answers no one: deferred
// when the log can (audit.Store.Defer), else appended.
func (s *Service) auditDeferred(ctx context.Context, r audit.Record) {
	if d, ok := s.cfg.Audit.(interface {
		Defer(context.Context, audit.Record) error
	}); ok {
		if err := d.Defer(ctx, r); err != nil {
			s.log.Error("audit append failed", "interaction", r.Interaction, "err", err)
		}
		return
	}
	s.audit(ctx, r)
}

// callerOf is who pulls: the user who accepted the referral, else the
// participant's system.
func callerOf(row Received, party *Party) *plateau.Caller {
	if row.AcceptedBy != nil {
		return row.AcceptedBy
	}
	return &plateau.Caller{ID: party.SystemUZI, System: true}
}

// connect finds the sender's FHIR endpoint and gets a pull token there with
// the notification's authorization base, for caller.
func (s *Service) connect(ctx context.Context, row Received, party *Party, caller *plateau.Caller) (*fetcher, error) {
	app, base, err := s.senderEndpoint(ctx, row)
	if err != nil {
		return nil, err
	}
	req := oauth.TokenRequest{GrantType: GrantTypeJWT, Scope: []string{app.Name()}, AuthorizationBase: row.AuthBase}
	if s.cfg.Faults.Has(faults.PullWithoutAuthorizationBase) {
		req.AuthorizationBase = ""
	}
	tok, err := s.token(ctx, party, row.SenderURA, req, caller)
	if err != nil {
		return nil, err
	}
	// The sender grants the referral's own application, whatever was
	// asked for: its scope names the application the data is for.
	granted := app
	for _, sc := range strings.Fields(tok.Scope) {
		if a, err := s.cfg.Applications.Workflow(sc); err == nil {
			granted = a
		}
	}
	data := base
	if granted.FHIRVersion() != fhir.STU3 {
		// The workflow Task is on the STU3 base the agreement puts it on;
		// the data of an application of another version is on its own base.
		if data, err = s.cfg.Directory.Endpoint(ctx, row.SenderURA, granted.ServerPayloadType(), versionOf(granted)); err != nil {
			return nil, fmt.Errorf("find sender's FHIR %s endpoint (%s): %w", granted.FHIRVersion(), granted.Name(), err)
		}
		data = strings.TrimSuffix(data, "/")
	}
	return &fetcher{http: party.HTTP, token: tok.AccessToken, base: base, data: data, app: granted}, nil
}

// senderEndpoint finds the sender's FHIR base the workflow Task is on: the
// data endpoint the addressbook lists for the sender under one of the
// Notified Pull applications, the first in registration order. Only URLs
// on it are followed: a notification must not make this node fetch from
// anywhere else.
func (s *Service) senderEndpoint(ctx context.Context, row Received) (careapp.Workflow, string, error) {
	apps := s.cfg.Applications.On(careapp.NotifiedPull)
	if len(apps) == 0 {
		return nil, "", errors.New("this node runs no care application on Notified Pull")
	}
	var errs []error
	for _, a := range apps {
		w := a.(careapp.Workflow) // the registry admits Notified Pull applications only with a workflow
		base, err := s.taskBase(ctx, row.SenderURA, w)
		if err != nil {
			errs = append(errs, fmt.Errorf("find sender's FHIR endpoint (%s): %w", w.Name(), err))
			continue
		}
		if strings.HasPrefix(row.WorkflowTask, base+"/Task/") {
			return w, base, nil
		}
		errs = append(errs, fmt.Errorf("the workflow Task %s is not on the sender's registered endpoint %s", row.WorkflowTask, base))
	}
	return nil, "", errors.Join(errs...)
}

// dataStore is where pulled data of FHIR version v is kept.
func (s *Service) dataStore(v fhir.Version) store.Store {
	if s.cfg.DataStore != nil {
		if st := s.cfg.DataStore(v); st != nil {
			return st
		}
	}
	return s.cfg.Store
}

// taskBase is the sender's FHIR base its workflow Tasks of application w
// are on: the data endpoint of an STU3 application; for an application
// of another version, the STU3 base of the technical agreement's Task
// endpoint (the notification endpoint, ".../Task"), where the Task stays
// while the data is served in the application's version.
func (s *Service) taskBase(ctx context.Context, sender string, w careapp.Workflow) (string, error) {
	if w.FHIRVersion() == fhir.STU3 {
		return s.cfg.Directory.Endpoint(ctx, sender, w.ServerPayloadType(), versionOf(w))
	}
	if _, err := s.cfg.Directory.Endpoint(ctx, sender, w.ServerPayloadType(), versionOf(w)); err != nil {
		return "", err // the sender does not serve the application
	}
	task, err := s.cfg.Directory.Endpoint(ctx, sender, PayloadNotification, "3.0")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(task, "/"), "/Task"), nil
}

// versionOf is an application's FHIR version as addressbook Endpoints
// write it.
func versionOf(a careapp.Application) string {
	if a.FHIRVersion() == fhir.R4 {
		return "4.0"
	}
	return "3.0"
}

// resumeReport reports a completion the sender had not taken when the
// node stopped: with a fresh token, over the workflow Task as it is now.
//
// It takes the notification's lease first: a report another worker (on
// another replica) is making now is left to it.
func (s *Service) resumeReport(ctx context.Context, row Received) {
	party, ok := s.cfg.Parties(row.Tenant)
	if !ok {
		return
	}
	now, owner := s.cfg.Now(), s.leaseOwner()
	if leased, err := s.cfg.DB.leasePull(ctx, row.ID, owner, now, now.Add(s.cfg.Lease)); err != nil || !leased {
		if err != nil {
			s.log.Warn("report: lease notification", "referral", row.ID, "err", err)
		}
		return
	}
	row.lease = owner
	lctx, stop := s.holdLease(ctx, row.ID, owner, now.Add(s.cfg.Lease))
	c, err := s.connect(lctx, row, party, callerOf(row, party))
	var wf []byte
	if err == nil {
		wf, err = c.get(lctx, row.WorkflowTask)
	}
	stop()
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.cfg.DB.releasePull(rctx, row.ID, owner, false)
		// Still pending: the next start tries again.
		s.log.Warn("could not report completion to the sender", "referral", row.ID, "err", err)
		return
	}
	s.reportCompletion(ctx, c, row, wf)
}

// background runs fn in its own goroutine; its error arrives on the channel.
func (s *Service) background(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

// parallelQueries bounds the searches a pull runs at the same time. The
// sender answers each only once its audit record is durable; the more of
// them are in flight, the more records share one durable write there (with
// 6, the BgZ set's 26 queries took about 10 sequential commits; with 16,
// about 5), while the sender's few read connections still bound its work.
const parallelQueries = 16

// run executes one workflow input: a search (following next links) or a read.
func (f *fetcher) run(ctx context.Context, in WorkflowInput, into *collection) (QueryResult, error) {
	qr := QueryResult{Block: in.Display, Code: in.Code, Query: in.Query}
	if in.Reference != "" {
		qr.Query = in.Reference
		u := f.dataBase() + "/" + in.Reference
		if t, ok := f.app.(careapp.Transfer); ok {
			if typ, _, err := ParseRead(in.Reference); err == nil && t.DocumentOperation(typ) != "" {
				// A document of a Transfer: read as the agreement
				// serves it, e.g. Composition/{id}/$document.
				u += "/" + t.DocumentOperation(typ)
				qr.Query = in.Reference + "/" + t.DocumentOperation(typ)
			}
		}
		body, err := f.get(ctx, u)
		if err != nil {
			return qr, fmt.Errorf("read %s: %w", qr.Query, err)
		}
		if !fhir.ValidJSON(body) {
			return qr, fmt.Errorf("read %s: the answer is not JSON", qr.Query)
		}
		into.add(u, body)
		qr.Matches, qr.Status = 1, http.StatusOK
		return qr, nil
	}
	m, inc, err := f.search(ctx, f.dataBase()+"/"+in.Query, into)
	if err != nil {
		return qr, fmt.Errorf("query %s: %w", in.Display, err)
	}
	qr.Matches, qr.Included, qr.Status = m, inc, http.StatusOK
	return qr, nil
}

// fetcher reads from the sender's FHIR endpoint with the access token.
type fetcher struct {
	http  *http.Client
	token string
	base  string           // the sender's FHIR base the workflow Task is on
	data  string           // the sender's FHIR base of the application's data (base for STU3)
	app   careapp.Workflow // the application the token was granted for
}

// dataBase is where the application's data is read: data, or base when
// the two are one.
func (f *fetcher) dataBase() string {
	if f.data == "" {
		return f.base
	}
	return f.data
}

func (f *fetcher) do(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	b, _, err := f.send(ctx, method, u, body)
	return b, err
}

// send is do that also returns the answer's status (0 without an answer).
func (f *fetcher) send(ctx context.Context, method, u string, body []byte) ([]byte, int, error) {
	if !strings.HasPrefix(u, f.base+"/") && !strings.HasPrefix(u, f.dataBase()+"/") {
		return nil, 0, fmt.Errorf("refusing to follow %s: not on the sender's endpoint", u)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := readLimited(resp, maxResponseBytes)
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, outcomeText(b))
	}
	return b, resp.StatusCode, nil
}

// get GETs u. A GET may be sent again: when the connection fails under it
// (the sender's node, or the replica of it this connection reached, went
// away mid-request), it is sent once more on a new connection before the
// pull gives up. A refusal or any other answer is not repeated, nor is a
// request that timed out.
func (f *fetcher) get(ctx context.Context, u string) ([]byte, error) {
	b, err := f.do(ctx, http.MethodGet, u, nil)
	var ue *url.Error
	if err != nil && errors.As(err, &ue) && !ue.Timeout() && ctx.Err() == nil {
		b, err = f.do(ctx, http.MethodGet, u, nil)
	}
	return b, err
}

// putStatus PUTs body to u; status is the answer's (0 without one).
func (f *fetcher) putStatus(ctx context.Context, u string, body []byte) (int, error) {
	_, status, err := f.send(ctx, http.MethodPut, u, body)
	return status, err
}

// search runs one query following next links and adds every entry to c.
func (f *fetcher) search(ctx context.Context, u string, c *collection) (matches, included int, err error) {
	for page := 0; u != "" && page < 100; page++ {
		body, err := f.get(ctx, u)
		if err != nil {
			return 0, 0, err
		}
		p, err := parseSearchPage(body)
		if err != nil || p.ResourceType != "Bundle" {
			return 0, 0, errNotSearchset
		}
		for _, e := range p.Entries {
			if e.Mode == "outcome" {
				continue // the server's remarks on the search, not data
			}
			if e.Mode == "include" {
				included++
			} else {
				matches++
			}
			c.add(e.FullURL, e.Resource)
		}
		u = p.Next
	}
	return matches, included, nil
}

// collection gathers pulled resources, each once.
type collection struct {
	order []string
	byURL map[string]json.RawMessage
}

func newCollection() *collection { return &collection{byURL: map[string]json.RawMessage{}} }

func (c *collection) add(fullURL string, res json.RawMessage) {
	if _, ok := c.byURL[fullURL]; ok {
		return
	}
	c.order = append(c.order, fullURL)
	c.byURL[fullURL] = res
}

func (c *collection) len() int { return len(c.order) }

// birthDate is the birth date of the pulled Patient with this BSN.
func (c *collection) birthDate(bsn string) string {
	for _, u := range c.order {
		if resourceType(c.byURL[u]) != "Patient" {
			continue // not decoded only to find that out
		}
		if id, born, ok := nl.Patient(c.byURL[u]); ok && id == bsn {
			return born
		}
	}
	return ""
}

func (c *collection) types() []string {
	out := make([]string, 0, len(c.order))
	for _, u := range c.order {
		out = append(out, resourceType(c.byURL[u]))
	}
	return out
}

// resourceType is a resource's resourceType. Servers write it first
// (compact JSON, as a search answer's resources are): that is read without
// decoding the whole resource; anything else is decoded.
func resourceType(res json.RawMessage) string {
	const head = `{"resourceType":"`
	if rest, ok := bytes.CutPrefix(res, []byte(head)); ok {
		if end := bytes.IndexByte(rest, '"'); end > 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			return string(rest[:end])
		}
	}
	var h struct{ ResourceType string }
	_ = json.Unmarshal(res, &h)
	return h.ResourceType
}

// bundle is the pulled data as one collection Bundle. It is written
// byte by byte: every resource is a value of an answer checked to be
// valid JSON (parseSearchPage, or a read's body, checked by add's
// caller), kept as it came.
func (c *collection) bundle(row Received) json.RawMessage {
	size := 128 + len(row.Identifier)
	for _, u := range c.order {
		size += len(u) + len(c.byURL[u]) + 32
	}
	b := make([]byte, 0, size)
	b = append(b, `{"entry":[`...)
	for i, u := range c.order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"fullUrl":`...)
		b = appendJSONString(b, u)
		b = append(b, `,"resource":`...)
		if res := c.byURL[u]; len(res) > 0 {
			b = append(b, res...)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, '}')
	}
	b = append(b, `],"identifier":{"system":`...)
	b = appendJSONString(b, SystemRFC3986)
	if row.Identifier != "" {
		b = append(b, `,"value":`...)
		b = appendJSONString(b, row.Identifier)
	}
	b = append(b, `},"resourceType":"Bundle","type":"collection"}`...)
	return b
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

func readLimited(resp *http.Response, max int64) ([]byte, error) {
	// A declared length within the limit sizes the buffer once, instead of
	// the doublings (and copies) of io.ReadAll; the limit still holds.
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= max {
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if int64(len(b)) > max {
		return nil, fmt.Errorf("answer larger than %d bytes", max)
	}
	return b, nil
}
