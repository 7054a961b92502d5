package consult

import (
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

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// Request is a participant system's request to consult a data holder.
type Request struct {
	PatientBSN  string `json:"patient"`
	HolderURA   string `json:"holder"`
	Application string `json:"application,omitempty"` // default: the node's first on Direct Pull ("bgz")
	// User is the requesting user: what of it travels depends on the
	// authentication plateau agreed with the holder (plateau.Caller).
	User *plateau.Caller `json:"user,omitempty"`
	// UserID, UserRole and UserLoA are the user in the older flat form;
	// used when User is absent.
	UserID   string `json:"userId,omitempty"`   // UZI number of the requesting user
	UserRole string `json:"userRole,omitempty"` // UZI role code, e.g. 01.015
	UserLoA  string `json:"userLoa,omitempty"`  // eIDAS level of assurance URI
}

// caller is the request's user in the one form, whichever was sent.
func (r *Request) caller() *plateau.Caller {
	if r.User != nil {
		return r.User
	}
	return &plateau.Caller{ID: r.UserID, Role: r.UserRole, LoA: r.UserLoA}
}

// Result is what a consult collected.
type Result struct {
	Holder string `json:"holder"`
	Base   string `json:"base"` // the holder's FHIR base the queries ran on
	// Bundle is a collection Bundle of every resource received, each once.
	Bundle    json.RawMessage `json:"bundle"`
	Resources int             `json:"resources"`
	Queries   []QueryResult   `json:"queries"`
	// Complete is true when every query was answered.
	Complete bool `json:"complete"`
}

// QueryResult is the outcome of one query. A refusal of one block (e.g. the
// holder's policy withholds it from this role) is recorded here; the other
// blocks still count.
type QueryResult struct {
	Block    string `json:"block"`
	Code     string `json:"code"`
	Query    string `json:"query"`
	Status   int    `json:"status"` // HTTP status of the holder's answer; 0 when none came
	Matches  int    `json:"matches"`
	Included int    `json:"included"`
	Outcome  string `json:"outcome,omitempty"` // the holder's reason, or the failure
}

// Consult runs the requester side of a Direct Pull for tenant: addressbook,
// token for the holder's FHIR endpoint, then every query of the application.
// Errors are *fhir.Error: 400 for a bad request, 502 when the holder cannot
// be found or refuses the token.
func (s *Service) Consult(ctx context.Context, tenant string, req Request) (Result, error) {
	party, ok := s.cfg.Parties(tenant)
	if !ok {
		e := fhir.Errorf(http.StatusNotFound, "not-found", "%s is not a participant of this node", tenant)
		e.Cause = ErrUnknownParticipant
		return Result{}, e
	}
	if req.Application == "" {
		if apps := s.cfg.Applications.On(careapp.DirectPull); len(apps) > 0 {
			req.Application = apps[0].Name()
		}
	}
	app, err := s.application(req.Application)
	if err != nil {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "not-supported", "%v", err)
	}
	if err := nl.ValidateBSN(req.PatientBSN); err != nil {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "value", "patient: not a valid BSN")
	}
	if err := nl.ValidateURA(req.HolderURA); err != nil {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "value", "holder: %v", err)
	}
	user := req.caller()
	if !validCode(user.ID) || !validCode(user.Role) {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "required", "user.id (UZI number) and user.role (UZI role code) are required: the holder asks the patient's consent for this user")
	}
	var admitted map[string]any
	if s.cfg.Admit != nil {
		var err error
		if admitted, err = s.cfg.Admit(ctx, tenant, req); err != nil {
			return Result{}, s.refused(ctx, tenant, party, req, err)
		}
	}
	base, err := s.cfg.Directory.Endpoint(ctx, req.HolderURA, app.ServerPayloadType(), fhirVersion(app))
	if err != nil {
		return Result{}, lookupError("the holder's FHIR endpoint", err)
	}
	base = strings.TrimSuffix(base, "/")
	if u, err := url.Parse(base); err != nil || u.Scheme != "https" || u.Host == "" {
		return Result{}, holderError("the holder's FHIR endpoint in the addressbook is not an https URL", err)
	}
	issuer, err := s.cfg.Directory.Endpoint(ctx, req.HolderURA, PayloadAuthServer, "")
	if err != nil {
		return Result{}, lookupError("the holder's authorization server", err)
	}
	md, err := party.OAuth.Metadata(ctx, issuer)
	if err != nil {
		return Result{}, holderError("the holder's authorization server could not be reached", err)
	}
	pres, err := s.cfg.Present(ctx, tenant, req.HolderURA, md.TokenEndpoint, user)
	if err != nil {
		return Result{}, presentError(err)
	}
	claims := pres.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	if ft := s.cfg.FacilityType(tenant); ft != "" {
		claims[AssertionRequesterType] = ft
	}
	for k, v := range admitted {
		claims[k] = v
	}
	tok, err := party.OAuth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{GrantType: GrantTypeJWT,
		Scope: []string{req.Application}, Resource: base, AssertionClaims: claims, UserIdentity: pres.UserIdentity})
	if err != nil {
		var refused *oauth.ErrorResponse
		if errors.As(err, &refused) {
			return Result{}, holderError(fmt.Sprintf("the holder refused the token: %s: %s", refused.Code, refused.Description), err)
		}
		return Result{}, holderError("no token from the holder's authorization server", err)
	}

	f := &fetcher{http: party.HTTP, token: tok.AccessToken, base: base, maxPages: s.cfg.MaxPages,
		maxResponse: s.cfg.MaxResponseBytes, budget: s.cfg.MaxTotalBytes}
	// A consult runs the searches; reads of single resources are a
	// referral's (a workflow Task names them), never a consult's.
	var blocks []careapp.Query
	for _, q := range app.Queries(req.PatientBSN) {
		if q.Search != "" {
			blocks = append(blocks, q)
		}
	}
	parts := make([]*collection, len(blocks))
	res := Result{Holder: req.HolderURA, Base: base, Queries: make([]QueryResult, len(blocks)), Complete: true}
	sem := make(chan struct{}, s.cfg.Parallel)
	var wg sync.WaitGroup
	for i, b := range blocks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			q := b.Search
			parts[i] = newCollection()
			qr := QueryResult{Block: b.Name, Code: b.Code.Code, Query: q}
			qr.Status, qr.Matches, qr.Included, qr.Outcome = f.search(ctx, base+"/"+q, parts[i])
			if qr.Status != http.StatusOK {
				parts[i] = newCollection() // a half-read query gives nothing
			}
			res.Queries[i] = qr
		}()
	}
	wg.Wait()
	all := newCollection()
	for i, p := range parts {
		if res.Queries[i].Status != http.StatusOK {
			res.Complete = false
		}
		for _, u := range p.order {
			all.add(u, p.byURL[u])
		}
	}
	res.Bundle = all.bundle()
	res.Resources = len(all.order)
	outcome := http.StatusOK
	if res.Resources == 0 && !res.Complete {
		outcome = http.StatusForbidden
	}
	if err := s.audit(ctx, audit.Record{Action: audit.ActionRead, Type: "consult", Interaction: "consult", Outcome: outcome,
		Tenant: tenant, ActorURA: tenant, ActorSystem: party.SystemUZI, ActorUser: user.ID, ActorRole: user.Role,
		PurposeOfUse: "TREAT", Patient: req.PatientBSN, Types: all.types(),
		Query:         fmt.Sprintf("%d %s queries at %s (%d answered)", len(blocks), req.Application, req.HolderURA, answered(res.Queries)),
		AuthzProtocol: "Twiin Direct Pull; RFC 7523 jwt-bearer with RFC 8707 resource"}); err != nil {
		// What was received is not handed on unrecorded.
		return Result{}, &fhir.Error{Status: http.StatusServiceUnavailable, Cause: err, Issues: []fhir.Issue{{Severity: "error",
			Code: "transient", Diagnostics: "the audit log is unavailable; nothing was returned"}}}
	}
	return res, nil
}

// refused audits a consult the requester side does not send (it names a
// patient) and returns the refusal as the participant's system sees it.
func (s *Service) refused(ctx context.Context, tenant string, party *Party, req Request, err error) error {
	r := plateau.AsRefusal(err)
	if r == nil {
		return err
	}
	fe := r.FHIRError()
	if aerr := s.audit(ctx, audit.Record{Action: audit.ActionRead, Type: "consult", Interaction: "consult", Outcome: fe.Status,
		OutcomeText: r.Description(), Tenant: tenant, ActorURA: tenant, ActorSystem: party.SystemUZI, ActorUser: req.caller().ID,
		ActorRole: req.caller().Role, PurposeOfUse: "TREAT", Patient: req.PatientBSN, Query: fmt.Sprintf("%s queries at %s", req.Application, req.HolderURA),
		AuthzProtocol: "Twiin Direct Pull; refused before sending"}); aerr != nil {
		return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: aerr, Issues: []fhir.Issue{{Severity: "error",
			Code: "transient", Diagnostics: "the audit log is unavailable; nothing was done"}}}
	}
	return fe
}

// presentError tells a user short of the agreed authentication plateau
// (the participant's system must send more: 422) from an identity issuer
// that could not be asked (502).
func presentError(err error) error {
	if r := plateau.AsRefusal(err); r != nil && errors.Is(err, plateau.ErrCaller) {
		return &fhir.Error{Status: http.StatusUnprocessableEntity, Cause: err,
			Issues: []fhir.Issue{{Severity: "error", Code: "security", Diagnostics: r.Description()}}}
	}
	return &fhir.Error{Status: http.StatusBadGateway, Cause: err,
		Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: "the user's signed identity could not be obtained from the identity issuer"}}}
}

func answered(qs []QueryResult) int {
	n := 0
	for _, q := range qs {
		if q.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// lookupError tells a holder the addressbook does not list (the
// participant asked for an organisation it cannot consult: 422) from an
// addressbook that cannot be asked (upstream: 502).
func lookupError(what string, err error) error {
	if errors.Is(err, addressbook.ErrNotFound) {
		return &fhir.Error{Status: http.StatusUnprocessableEntity, Cause: fmt.Errorf("%w: %w", ErrHolder, err),
			Issues: []fhir.Issue{{Severity: "error", Code: "not-found", Diagnostics: what + " is not in the addressbook"}}}
	}
	return holderError(what+" could not be looked up: the addressbook cannot be reached", err)
}

func holderError(msg string, cause error) error {
	if cause == nil {
		cause = errors.New(msg)
	}
	return &fhir.Error{Status: http.StatusBadGateway, Cause: fmt.Errorf("%w: %w", ErrHolder, cause),
		Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: msg}}}
}

// fetcher reads from the holder's FHIR endpoint with the access token.
type fetcher struct {
	http        *http.Client
	token       string
	base        string
	maxPages    int
	maxResponse int64
	budget      int64 // bytes still allowed for the whole consult
	used        atomic.Int64
}

// search runs one query following next links on the holder's base; it
// returns the final HTTP status (0 when no answer came) and the counts.
func (f *fetcher) search(ctx context.Context, u string, c *collection) (status, matches, included int, outcome string) {
	for page := 0; u != ""; page++ {
		if page == f.maxPages {
			return 0, matches, included, fmt.Sprintf("more than %d pages", f.maxPages)
		}
		// Follow only the holder's own endpoint: an answer must not make
		// this node send its token anywhere else.
		if !strings.HasPrefix(u, f.base+"/") {
			return 0, matches, included, "the holder's next link leaves its FHIR endpoint"
		}
		st, body, err := f.get(ctx, u)
		if err != nil {
			return st, matches, included, err.Error()
		}
		if st != http.StatusOK {
			return st, matches, included, outcomeText(body)
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Type         string `json:"type"`
			Link         []struct{ Relation, URL string }
			Entry        []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
				Search   struct{ Mode string }
			}
		}
		if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "searchset" {
			return 0, matches, included, "the answer is not a searchset Bundle"
		}
		for _, e := range b.Entry {
			if e.Search.Mode == "outcome" || len(e.Resource) == 0 {
				continue
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
	return http.StatusOK, matches, included, ""
}

func (f *fetcher) get(ctx context.Context, u string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := f.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("the holder could not be reached: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, f.maxResponse+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the holder's answer: %w", err)
	}
	if int64(len(b)) > f.maxResponse {
		return 0, nil, fmt.Errorf("the holder's answer exceeds %d bytes", f.maxResponse)
	}
	if f.used.Add(int64(len(b))) > f.budget {
		return 0, nil, fmt.Errorf("the consult exceeds %d bytes in all", f.budget)
	}
	return resp.StatusCode, b, nil
}

// outcomeText is the first diagnostics of an OperationOutcome, or a short
// excerpt of another body.
func outcomeText(body []byte) string {
	var oo struct {
		ResourceType string
		Issue        []struct{ Diagnostics string }
	}
	if json.Unmarshal(body, &oo) == nil && len(oo.Issue) > 0 {
		return oo.Issue[0].Diagnostics
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}

// collection gathers received resources, each once, in arrival order.
type collection struct {
	order []string
	byURL map[string]json.RawMessage
}

func newCollection() *collection { return &collection{byURL: map[string]json.RawMessage{}} }

func (c *collection) add(fullURL string, res json.RawMessage) {
	if fullURL == "" {
		var h struct{ ResourceType, ID string }
		_ = json.Unmarshal(res, &h)
		fullURL = h.ResourceType + "/" + h.ID
	}
	if _, ok := c.byURL[fullURL]; ok {
		return
	}
	c.order = append(c.order, fullURL)
	c.byURL[fullURL] = res
}

func (c *collection) types() []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range c.order {
		var h struct{ ResourceType string }
		_ = json.Unmarshal(c.byURL[u], &h)
		if !seen[h.ResourceType] {
			seen[h.ResourceType] = true
			out = append(out, h.ResourceType)
		}
	}
	return out
}

func (c *collection) bundle() json.RawMessage {
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	}
	entries := make([]entry, 0, len(c.order))
	for _, u := range c.order {
		entries = append(entries, entry{u, c.byURL[u]})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "collection", "entry": entries})
	return b
}

// fhirVersion is an application's FHIR version as addressbook Endpoints
// write it.
func fhirVersion(a careapp.Application) string {
	if a.FHIRVersion() == fhir.R4 {
		return "4.0"
	}
	return "3.0"
}
