package notifiedpull

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/internal/faults"
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
		Status: StatusRequested, Created: now, Updated: now, Awaiting: s.cfg.NeedsUser(tenant, n.SenderURA)}
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
	if row.Awaiting {
		s.event(tenant, res.ID, "awaiting-user", "the pull waits for a user to accept the referral", nil)
	} else {
		s.enqueue(ctx, tenant, res.ID)
	}
	return http.StatusCreated, res.Body, nil
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
	s.event(tenant, row.ID, "withdrawn", fmt.Sprintf("notification %s withdrawn by %s", value, peerURA), nil)
	return http.StatusOK, s.storedTask(ctx, tenant, row.ID), nil
}

// setReceived moves a received notification to status, in the exchange
// state and in the stored notification Task.
func (s *Service) setReceived(ctx context.Context, row Received, status, reason string) error {
	if err := s.cfg.DB.setReceivedStatus(ctx, row.ID, status, reason, s.cfg.Now()); err != nil {
		return err
	}
	cur, err := s.cfg.Store.Read(ctx, row.Tenant, "Task", row.ID)
	if err != nil {
		return err
	}
	body, err := SetStatus(cur.Body, status)
	if err != nil {
		return err
	}
	_, _, err = s.cfg.Store.Update(ctx, row.Tenant, body, "")
	return err
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

// pull runs SPEC §4 step 4 for one accepted notification.
func (s *Service) pull(ctx context.Context, tenant, id string) {
	row, err := s.cfg.DB.received(ctx, tenant, id)
	if err != nil {
		s.log.Error("pull: load notification", "referral", id, "err", err)
		return
	}
	if Final(row.Status) {
		return
	}
	if err := s.doPull(ctx, row); err != nil {
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

func (s *Service) doPull(ctx context.Context, row Received) error {
	party, ok := s.cfg.Parties(row.Tenant)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownParticipant, row.Tenant)
	}
	// The status bookkeeping runs beside the network steps it does not
	// depend on; each is joined before the next status is written, so the
	// notification Task still moves requested → accepted → in-progress →
	// completed in order.
	accepted := s.background(func() error { return s.setReceived(ctx, row, StatusAccepted, "") })
	base, err := s.cfg.Directory.Endpoint(ctx, row.SenderURA, PayloadBgZServer, "3.0")
	if err != nil {
		return errors.Join(fmt.Errorf("find sender's FHIR endpoint: %w", err), <-accepted)
	}
	// Follow only URLs on the sender's registered endpoint: a notification
	// must not make this node fetch from anywhere else.
	if !strings.HasPrefix(row.WorkflowTask, base+"/Task/") {
		return errors.Join(fmt.Errorf("the workflow Task %s is not on the sender's registered endpoint %s", row.WorkflowTask, base), <-accepted)
	}
	// The user who accepted the referral, else the participant's system.
	caller := row.AcceptedBy
	if caller == nil {
		caller = &plateau.Caller{ID: party.SystemUZI, System: true}
	}
	req := oauth.TokenRequest{GrantType: GrantTypeJWT, Scope: []string{ApplicationBgZ}, AuthorizationBase: row.AuthBase}
	if s.cfg.Faults.Has(faults.PullWithoutAuthorizationBase) {
		req.AuthorizationBase = ""
	}
	tok, err := s.token(ctx, party, row.SenderURA, req, caller)
	// No data is read before the notification is on record as accepted.
	if err := errors.Join(err, <-accepted); err != nil {
		return err
	}
	c := &fetcher{http: party.HTTP, token: tok.AccessToken, base: base}
	wfBody, err := c.get(ctx, row.WorkflowTask)
	if err != nil {
		return fmt.Errorf("read workflow Task: %w", err)
	}
	wfStatus, inputs, err := ParseWorkflowInputs(wfBody)
	if err != nil {
		return err
	}
	s.event(row.Tenant, row.ID, "workflow-task", fmt.Sprintf("workflow Task read (status %s): %d inputs", wfStatus, len(inputs)), nil)
	inProgress := s.background(func() error { return s.setReceived(ctx, row, StatusInProgress, "") })
	// The queries are independent: run a few at a time over the (HTTP/2)
	// connection, then merge the answers in the workflow Task's order.
	parts := make([]*collection, len(inputs))
	summary := make([]QueryResult, len(inputs))
	errs := make([]error, len(inputs)+1)
	sem := make(chan struct{}, parallelQueries)
	var wg sync.WaitGroup
	for i, in := range inputs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			parts[i] = newCollection()
			summary[i], errs[i] = c.run(ctx, in, parts[i])
			if errs[i] == nil {
				qr := summary[i]
				s.event(row.Tenant, row.ID, "query", fmt.Sprintf("%-28s %3d match(es) %3d included", qr.Block, qr.Matches, qr.Included), nil)
			}
		}()
	}
	wg.Wait()
	errs[len(inputs)] = <-inProgress
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
	res, err := s.cfg.Store.Create(ctx, row.Tenant, bundle)
	if err != nil {
		return fmt.Errorf("store pulled data: %w", err)
	}
	if err := s.cfg.DB.setReceivedResult(ctx, row.ID, res.ID, summary); err != nil {
		return err
	}
	// The data is stored: tell the sender the workflow is done (only the
	// status changes) while this side records the pull and completes.
	reported := s.background(func() error {
		if done, err := SetStatus(wfBody, StatusCompleted); err == nil {
			if err := c.put(ctx, row.WorkflowTask, done); err != nil {
				s.log.Warn("could not report completion to the sender", "referral", row.ID, "err", err)
			}
		}
		return nil
	})
	s.audit(ctx, audit.Record{Action: audit.ActionCreate, Interaction: "pull", Outcome: http.StatusOK, Tenant: row.Tenant,
		ActorURA: row.Tenant, ActorSystem: party.SystemUZI, ActorUser: userOf(caller), ActorRole: roleOf(caller), Patient: row.PatientBSN, Types: collected.types(),
		Resources: []string{"Bundle/" + res.ID}, Query: fmt.Sprintf("%d queries from %s", len(inputs), row.SenderURA), Task: row.Identifier})
	err = s.setReceived(ctx, row, StatusCompleted, "")
	<-reported
	if err != nil {
		return err
	}
	if s.cfg.Holding != nil {
		s.cfg.Holding(ctx, Holding{Tenant: row.Tenant, PatientBSN: row.PatientBSN, BirthDate: collected.birthDate(row.PatientBSN),
			Application: ApplicationBgZ})
	}
	s.event(row.Tenant, row.ID, "completed", fmt.Sprintf("%d resources stored as Bundle/%s", collected.len(), res.ID), nil)
	return nil
}

// background runs fn in its own goroutine; its error arrives on the channel.
func (s *Service) background(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

// parallelQueries bounds the searches a pull runs at the same time.
const parallelQueries = 6

// run executes one workflow input: a search (following next links) or a read.
func (f *fetcher) run(ctx context.Context, in WorkflowInput, into *collection) (QueryResult, error) {
	qr := QueryResult{Block: in.Display, Code: in.Code, Query: in.Query}
	if in.Reference != "" {
		qr.Query = in.Reference
		body, err := f.get(ctx, f.base+"/"+in.Reference)
		if err != nil {
			return qr, fmt.Errorf("read %s: %w", in.Reference, err)
		}
		into.add(f.base+"/"+in.Reference, body)
		qr.Matches, qr.Status = 1, http.StatusOK
		return qr, nil
	}
	m, inc, err := f.search(ctx, f.base+"/"+in.Query, into)
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
	base  string
}

func (f *fetcher) do(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	if !strings.HasPrefix(u, f.base+"/") {
		return nil, fmt.Errorf("refusing to follow %s: not on the sender's endpoint", u)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=3.0")
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readLimited(resp, maxResponseBytes)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s: %s", resp.Status, outcomeText(b))
	}
	return b, nil
}

func (f *fetcher) get(ctx context.Context, u string) ([]byte, error) {
	return f.do(ctx, http.MethodGet, u, nil)
}
func (f *fetcher) put(ctx context.Context, u string, body []byte) error {
	_, err := f.do(ctx, http.MethodPut, u, body)
	return err
}

// search runs one query following next links and adds every entry to c.
func (f *fetcher) search(ctx context.Context, u string, c *collection) (matches, included int, err error) {
	for page := 0; u != "" && page < 100; page++ {
		body, err := f.get(ctx, u)
		if err != nil {
			return 0, 0, err
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Link         []struct{ Relation, URL string }
			Entry        []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
				Search   struct{ Mode string }
			}
		}
		if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
			return 0, 0, fmt.Errorf("answer is not a searchset Bundle")
		}
		for _, e := range b.Entry {
			if e.Search.Mode == "outcome" {
				continue // the server's remarks on the search, not data
			}
			if e.Search.Mode == "include" {
				included++
			} else {
				matches++
			}
			c.add(e.FullURL, e.Resource)
		}
		u = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				u = l.URL
			}
		}
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
		if id, born, ok := nl.Patient(c.byURL[u]); ok && id == bsn {
			return born
		}
	}
	return ""
}

func (c *collection) types() []string {
	var out []string
	for _, u := range c.order {
		var h struct{ ResourceType string }
		_ = json.Unmarshal(c.byURL[u], &h)
		out = append(out, h.ResourceType)
	}
	return out
}

func (c *collection) bundle(row Received) json.RawMessage {
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	}
	entries := make([]entry, 0, len(c.order))
	for _, u := range c.order {
		entries = append(entries, entry{u, c.byURL[u]})
	}
	b, _ := json.Marshal(map[string]any{
		"resourceType": "Bundle",
		"identifier":   identifier{System: SystemRFC3986, Value: row.Identifier},
		"type":         "collection",
		"entry":        entries,
	})
	return b
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

func readLimited(resp *http.Response, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("answer larger than %d bytes", max)
	}
	return b, nil
}
