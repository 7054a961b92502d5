package notifiedpull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/oauth"
)

// AuthorizeData decides whether a request on the sender's FHIR endpoint is
// covered by the referral its access token was issued for: the workflow Task
// itself, a status update of it, or exactly one of its queries, while the
// referral is neither withdrawn nor expired.
func (s *Service) AuthorizeData(ctx context.Context, tok *oauth.AccessToken, req *rest.Request) error {
	deny := func(format string, args ...any) error {
		return &fhir.Error{Status: http.StatusForbidden, Cause: ErrForbidden,
			Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: fmt.Sprintf(format, args...)}}}
	}
	grantID := tok.StringClaim(ClaimGrant)
	if grantID == "" {
		return deny("the access token was not issued for a referral")
	}
	if req.Interaction == rest.InteractionUpdate {
		// A status report waits for the in-progress a first data token
		// started (startInProgress), which must not overwrite it. Reads
		// do not: the workflow Task may still read requested, as it is.
		s.settle(grantID)
	}
	g, err := s.cfg.DB.grant(ctx, req.Tenant, grantID)
	if errors.Is(err, errNoRow) {
		return deny("the access token's referral is not held by this participant")
	}
	if err != nil {
		return err
	}
	switch {
	case g.ReceiverURA != tok.Subject:
		return deny("the referral was not made to your organisation")
	case g.Status == StatusCancelled || g.Status == StatusFailed || g.Status == StatusRejected:
		return deny("the referral is %s", g.Status)
	case !s.cfg.Now().Before(g.Expires):
		return deny("the referral has expired")
	case !tok.HasScope(g.Application):
		return deny("the access token lacks scope %s", g.Application)
	}
	switch req.Interaction {
	case rest.InteractionRead:
		if req.Type == "Task" && req.ID == g.WorkflowTask {
			return nil
		}
		if slices.Contains(g.Queries, req.Type+"/"+req.ID) {
			return nil // a read input of the workflow Task
		}
		return deny("only the workflow Task and its queries may be read")
	case rest.InteractionUpdate:
		if req.Type != "Task" || req.ID != g.WorkflowTask {
			return deny("only the workflow Task's status may be updated")
		}
		cur, err := s.cfg.Store.Read(ctx, req.Tenant, "Task", g.WorkflowTask)
		if err != nil {
			return err
		}
		if t, isT := s.transferOf(g.Application); isT {
			// A Transfer's receiver may give its reason with a rejection
			// or a failure (Task.statusReason), nothing else beside the
			// status.
			status, reasonChanged, ok := StatusChanged(cur.Body, req.Body)
			if !ok {
				return deny("a receiver may only change the workflow Task's status (and its statusReason when it rejects)")
			}
			if reasonChanged && status != StatusRejected && status != StatusFailed {
				return deny("a receiver gives a statusReason only with status rejected or failed, not %s", status)
			}
			var was struct{ Status string }
			_ = json.Unmarshal(cur.Body, &was)
			return transferTransition(t, was.Status, status)
		}
		status, ok := OnlyStatusChanged(cur.Body, req.Body)
		if !ok || !slices.Contains([]string{StatusInProgress, StatusCompleted, StatusFailed}, status) {
			return deny("a receiver may only set the workflow Task's status to in-progress, completed or failed")
		}
		return nil
	case rest.InteractionSearchType, rest.InteractionOperation:
		if t, isT := s.transferOf(g.Application); isT && req.ID != "" {
			return s.authorizeTransferOperation(ctx, t, g, req)
		}
		app, err := s.cfg.Applications.QuerySet(g.Application, careapp.NotifiedPull)
		if err != nil {
			return deny("the referral's care application %s is not served here", g.Application)
		}
		n, err := app.Normalize(searchOf(req))
		if err != nil || !slices.Contains(g.Queries, n) {
			return deny("this search is not one of the queries the workflow Task makes available")
		}
		return nil
	}
	return deny("interaction %s is not allowed under a referral", req.Interaction)
}

// AfterData keeps the grant in step with a successful status update of the
// workflow Task by the receiver; the node calls it before the update is
// answered, so that a receiver told its report was taken finds the
// referral's status changed.
func (s *Service) AfterData(ctx context.Context, tok *oauth.AccessToken, req *rest.Request, status int) {
	if req.Interaction != rest.InteractionUpdate || status/100 != 2 || tok == nil {
		return
	}
	grantID := tok.StringClaim(ClaimGrant)
	s.settle(grantID)
	g, err := s.cfg.DB.grant(ctx, req.Tenant, grantID)
	if err != nil || req.ID != g.WorkflowTask {
		return
	}
	var t struct {
		Status       string
		StatusReason *statusReason `json:"statusReason"`
	}
	if err := json.Unmarshal(req.Body, &t); err != nil {
		// A statusReason of another shape does not hide the status.
		var st struct{ Status string }
		if json.Unmarshal(req.Body, &st) != nil {
			return
		}
		t.Status, t.StatusReason = st.Status, nil
	}
	if t.Status == "" {
		return
	}
	next := t.Status
	if next != g.Status && !Final(g.Status) {
		reason := "reported by the receiver"
		if r := t.StatusReason.text(); r != "" {
			reason = "reported by the receiver: " + r
		}
		_ = s.cfg.DB.setGrantStatus(ctx, g.ID, next, reason, s.cfg.Now())
		s.event(g.Tenant, g.ID, "status", fmt.Sprintf("receiver reported the workflow Task %s (%s)", next, reason), nil)
	}
}

// pagingParams are the parameters a data holder's own next links add to a
// search; a request with them is still the search it pages through.
var pagingParams = []string{"_count", "_offset", "_format"}

// shapingParams only narrow how each match is shown (_summary, _elements)
// or laid out (_pretty); a request with them is still the search it
// shapes, and returns no more than it.
var shapingParams = []string{"_summary", "_elements", "_pretty"}

// searchOf rebuilds a received search as a relative URL without its
// paging and shaping parameters, for the application's Normalize.
func searchOf(req *rest.Request) string {
	p := url.Values{}
	for k, v := range req.Params {
		if !slices.Contains(pagingParams, k) && !slices.Contains(shapingParams, k) {
			p[k] = v
		}
	}
	path := req.Type
	if req.Operation != "" {
		path += "/" + req.Operation
	}
	return path + "?" + p.Encode()
}
