// Package indexedpull runs the Twiin Indexed Pull (SPEC §4) for a
// participant's system, orchestrated by the node: it localizes the patient
// at the referral index (which asks consent per holder before naming it),
// consults every holder named there in parallel — each a Direct Pull
// (package consult) with its own deadline, held to the plateaus agreed with
// that holder — and merges the answers into one FHIR STU3 searchset Bundle.
//
// The answer never hides what is missing: every holder that delivered gets
// a Provenance (who delivered which entries, when), every holder that
// refused, timed out or failed gets an OperationOutcome entry, and a result
// short of any holder opens with an OperationOutcome saying it is partial.
package indexedpull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// Defaults.
const (
	// DefaultHolderTimeout bounds each holder's Direct Pull: one slow holder
	// must not hold the whole answer back.
	DefaultHolderTimeout = 20 * time.Second
	// defaultParallel bounds the holders consulted at the same time; the
	// referral index rarely names more for one patient.
	defaultParallel = 8
	// maxHolders bounds the holders one Indexed Pull consults at all.
	maxHolders = 64
)

// Status is what came of one holder.
type Status string

// The holder statuses of an answer.
const (
	StatusDelivered Status = "delivered" // every query answered
	StatusPartial   Status = "partial"   // some queries answered, others refused or failed
	StatusNoData    Status = "no-data"   // every query answered, nothing found
	StatusRefused   Status = "refused"   // the holder (or this node's plateau check) refused
	StatusTimeout   Status = "timeout"   // the per-holder deadline passed
	StatusFailed    Status = "failed"    // the holder could not be consulted
)

// Request is a participant system's request for an Indexed Pull.
type Request struct {
	Patient     string `json:"patient"`
	Application string `json:"application,omitempty"` // "bgz" (the default)
	// User is the requesting user, as for a Direct Pull: the consent
	// questions name them, and what travels depends on each holder's
	// authentication plateau.
	User *plateau.Caller `json:"user,omitempty"`
}

// Located is what the referral index named: the holders the patient's
// consent lets the requester learn of, and warnings when holders were left
// out because consent could not be verified (they are not named).
type Located struct {
	Holders  []string
	Warnings []string
}

// Config wires the service. Localize and Consult are the node's own
// localization and Direct Pull (each audits itself and applies the plateau
// agreed with each holder).
type Config struct {
	// Applications are the care applications an Indexed Pull may be for:
	// those of the registry on Indexed Pull. Nil: none.
	Applications *careapp.Registry
	Localize     func(ctx context.Context, tenant string, req Request) (Located, error)
	Consult      func(ctx context.Context, tenant string, req consult.Request) (consult.Result, error)
	// HolderTimeout is each holder's deadline; default DefaultHolderTimeout.
	HolderTimeout time.Duration
	// Parallel bounds the holders consulted at the same time.
	Parallel int
	// System is the UZI number of a participant's system, for audit records.
	System func(tenant string) string
	Audit  audit.Log
	Logger *slog.Logger
	Now    func() time.Time
}

// Service runs Indexed Pulls for the participants of a node.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New builds the service.
func New(cfg Config) *Service {
	if cfg.HolderTimeout <= 0 {
		cfg.HolderTimeout = DefaultHolderTimeout
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = defaultParallel
	}
	if cfg.System == nil {
		cfg.System = func(string) string { return "" }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "indexedpull")}
}

// HolderResult is what came of one holder.
type HolderResult struct {
	Holder    string    `json:"holder"`
	Status    Status    `json:"status"`
	Resources int       `json:"resources"`
	Detail    string    `json:"detail,omitempty"`
	Started   time.Time `json:"started"`
	Ended     time.Time `json:"ended"`
}

// Answer is the merged result: Bundle is the FHIR STU3 searchset Bundle
// the participant's system receives; Holders the same per holder, for the
// node's logs and metrics.
type Answer struct {
	Bundle   json.RawMessage
	Holders  []HolderResult
	Warnings []string
	// Complete is true when every holder named delivered all it was asked.
	Complete bool
}

// Pull localizes the patient and consults every holder named. Errors are
// *fhir.Error for a bad request or a localization that could not be done;
// a holder's failure is part of the Answer, not an error.
func (s *Service) Pull(ctx context.Context, tenant string, req Request) (Answer, error) {
	if err := nl.ValidateBSN(req.Patient); err != nil {
		return Answer{}, fhir.Errorf(http.StatusBadRequest, "value", "patient: not a valid BSN")
	}
	if req.Application == "" {
		if apps := s.cfg.Applications.On(careapp.IndexedPull); len(apps) > 0 {
			req.Application = apps[0].Name()
		}
	}
	_, appErr := s.cfg.Applications.QuerySet(req.Application, careapp.IndexedPull)
	user := req.User
	if user == nil {
		user = &plateau.Caller{}
	}
	var bad string
	switch {
	case appErr != nil:
		bad = appErr.Error()
	case user.ID == "" || user.Role == "":
		bad = "user.id (UZI number) and user.role (UZI role code) are required: every holder asks the patient's consent for this user"
	}
	if bad != "" {
		// The request names a patient: its refusal is recorded.
		if err := s.audit(ctx, tenant, req, user, http.StatusBadRequest, bad, nil); err != nil {
			return Answer{}, err
		}
		return Answer{}, fhir.Errorf(http.StatusBadRequest, "value", "%s", bad)
	}
	req.User = user

	loc, err := s.cfg.Localize(ctx, tenant, req)
	if err != nil {
		return Answer{}, err // the localization audits and words its own failures
	}
	holders := make([]string, 0, len(loc.Holders))
	for _, h := range loc.Holders {
		// The participant's own holding is in its own system, and a holder
		// named twice is asked once.
		if h != tenant && !slices.Contains(holders, h) {
			holders = append(holders, h)
		}
	}
	warnings := slices.Clone(loc.Warnings)
	if len(holders) > maxHolders {
		warnings = append(warnings, fmt.Sprintf("the referral index named %d holders; the first %d were consulted", len(holders), maxHolders))
		holders = holders[:maxHolders]
	}

	results := make([]HolderResult, len(holders))
	data := make([]consult.Result, len(holders))
	sem := make(chan struct{}, s.cfg.Parallel)
	var wg sync.WaitGroup
	for i, h := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], data[i] = s.consultOne(ctx, tenant, req, h)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		// The participant's system went away: nothing to answer.
		return Answer{}, err
	}

	ans := Answer{Holders: results, Warnings: warnings, Complete: len(warnings) == 0}
	for _, r := range results {
		if r.Status != StatusDelivered && r.Status != StatusNoData {
			ans.Complete = false
		}
	}
	ans.Bundle = merge(req.Application, results, data, warnings)
	outcomes := make([]string, len(results))
	refs := make([]string, len(results))
	for i, r := range results {
		outcomes[i] = fmt.Sprintf("%s %s", r.Holder, r.Status)
		refs[i] = "Organization/" + r.Holder
	}
	text := "holders: " + strings.Join(outcomes, ", ")
	if len(results) == 0 {
		text = "no holder named by the referral index"
	}
	if err := s.audit(ctx, tenant, req, user, http.StatusOK, text, refs); err != nil {
		return Answer{}, err
	}
	return ans, nil
}

// consultOne runs the Direct Pull of one holder within its deadline and
// says what came of it.
func (s *Service) consultOne(ctx context.Context, tenant string, req Request, holder string) (HolderResult, consult.Result) {
	hr := HolderResult{Holder: holder, Started: s.cfg.Now()}
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HolderTimeout)
	defer cancel()
	res, err := s.cfg.Consult(hctx, tenant, consult.Request{PatientBSN: req.Patient, HolderURA: holder,
		Application: req.Application, User: req.User})
	hr.Ended = s.cfg.Now()
	timedOut := errors.Is(hctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	switch {
	case err != nil && timedOut:
		hr.Status, hr.Detail = StatusTimeout, fmt.Sprintf("no answer within %s", s.cfg.HolderTimeout)
		return hr, consult.Result{}
	case err != nil:
		hr.Status, hr.Detail = classify(err)
		return hr, consult.Result{}
	}
	hr.Resources = res.Resources
	answered, refused := 0, 0
	var reasons []string
	for _, q := range res.Queries {
		switch {
		case q.Status == http.StatusOK:
			answered++
		case q.Status == http.StatusForbidden || q.Status == http.StatusUnauthorized:
			refused++
			reasons = appendOnce(reasons, q.Outcome)
		default:
			reasons = appendOnce(reasons, q.Outcome)
		}
	}
	switch {
	case timedOut && !res.Complete:
		// Whatever queries were answered before the deadline count.
		hr.Status = StatusTimeout
		hr.Detail = fmt.Sprintf("no complete answer within %s: %d of %d queries answered", s.cfg.HolderTimeout, answered, len(res.Queries))
	case res.Complete && res.Resources == 0:
		hr.Status = StatusNoData
	case res.Complete:
		hr.Status = StatusDelivered
	case answered == 0 && refused == len(res.Queries):
		hr.Status, hr.Detail = StatusRefused, strings.Join(reasons, "; ")
	case answered == 0:
		hr.Status, hr.Detail = StatusFailed, strings.Join(reasons, "; ")
	default:
		hr.Status = StatusPartial
		hr.Detail = fmt.Sprintf("%d of %d queries answered: %s", answered, len(res.Queries), strings.Join(reasons, "; "))
	}
	return hr, res
}

// classify words a Direct Pull that did not start or was refused whole.
func classify(err error) (Status, string) {
	detail := err.Error()
	var oe *oauth.ErrorResponse
	if errors.As(err, &oe) {
		return StatusRefused, detail // the holder's authorization server refused the token
	}
	var fe *fhir.Error
	if errors.As(err, &fe) {
		switch fe.Status {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusUnprocessableEntity:
			// Refused by the holder, or by this node before sending (a plateau
			// the agreement with the holder requires and the request lacks).
			return StatusRefused, detail
		}
	}
	return StatusFailed, detail
}

func appendOnce(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func (s *Service) audit(ctx context.Context, tenant string, req Request, user *plateau.Caller, status int, text string, refs []string) error {
	if s.cfg.Audit == nil {
		return nil
	}
	err := s.cfg.Audit.Append(ctx, audit.Record{Action: audit.ActionExecute, Type: "indexed-pull", Interaction: "indexed-pull",
		Outcome: status, OutcomeText: text, Tenant: tenant, ActorURA: tenant, ActorSystem: s.cfg.System(tenant),
		ActorUser: user.ID, ActorRole: user.Role, PurposeOfUse: "TREAT", Patient: req.Patient, Resources: refs,
		Query:         fmt.Sprintf("%s at every holder the referral index names", req.Application),
		AuthzProtocol: "Twiin Indexed Pull: localization, then a Direct Pull per holder"})
	if err != nil {
		// What was received is not handed on unrecorded.
		return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: err, Issues: []fhir.Issue{{Severity: "error",
			Code: "transient", Diagnostics: "the audit log is unavailable; nothing was returned"}}}
	}
	return nil
}
