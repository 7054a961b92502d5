package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/plateau"
)

type participantKey struct{}

func tokenHash(t string) [32]byte { return sha256.Sum256([]byte(t)) }

// internalRoutes serve the participants' own systems. Every route but
// health and metrics needs the participant's bearer token.
func (n *Node) internalRoutes(reg prometheus.Registerer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if n.draining.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining", "node": n.cfg.Name})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": n.cfg.Name})
	})
	mux.HandleFunc("GET /livez", n.livez)
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.HandleFunc("GET /internal/dashboard", n.dashboard)
	if g, ok := reg.(prometheus.Gatherer); ok {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	n.mountInternalFHIR(mux)
	mux.Handle("POST /internal/referrals", n.authInternal(n.createReferral))
	mux.Handle("GET /internal/referrals", n.authInternal(n.listReferrals))
	mux.Handle("GET /internal/referrals/{id}", n.authInternal(n.getReferral))
	mux.Handle("POST /internal/referrals/{id}/cancel", n.authInternal(n.cancelReferral))
	mux.Handle("POST /internal/referrals/{id}/update", n.authInternal(n.updateReferral))
	mux.Handle("POST /internal/referrals/{id}/accept", n.authInternal(n.acceptReferral))
	mux.Handle("GET /internal/referrals/{id}/data", n.authInternal(n.referralData))
	n.transferRoutes(mux)
	mux.Handle("POST /internal/localize", n.authInternal(n.localize))
	mux.Handle("POST /internal/consult", n.authInternal(n.consultHolder))
	mux.Handle("POST /internal/indexed-pull", n.authInternal(n.indexedPull))
	mux.Handle("POST /internal/consent", n.authInternal(n.registerConsent))
	n.pushRoutes(mux)
	n.hostedInternalRoutes(mux)
	// The participant's own audit trail, as FHIR R4 AuditEvent ("who looked
	// at my patient's record"), limited to the participant's records.
	auditAPI := audit.FHIRHandler(n.auditLog, fhir.R4, func(r *http.Request) string {
		p, _ := r.Context().Value(participantKey{}).(*participant)
		if p == nil {
			return ""
		}
		return p.URA
	})
	mux.Handle("GET /internal/audit/{path...}", n.authInternal(func(w http.ResponseWriter, r *http.Request, _ *participant) {
		auditAPI.ServeHTTP(w, r)
	}))
	return unmatched(mux)
}

// authInternal admits a request carrying a participant's internal API token
// and refuses (and audits) every other.
func (n *Node) authInternal(h func(http.ResponseWriter, *http.Request, *participant)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, bearer := bearerCredentials(r.Header.Get("Authorization"))
		p := n.participantByToken(token)
		if p == nil || !bearer {
			n.refuseInternal(w, r, p, token != "")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), participantKey{}, p)), p)
	})
}

// bearerCredentials splits an Authorization header into its credentials and
// whether its scheme is Bearer. The scheme is case-insensitive and followed
// by one or more spaces (RFC 7235 §2.1, RFC 6750 §2.1). A header of one word
// is taken as the credentials, so a token sent bare can be named in the audit.
func bearerCredentials(header string) (credentials string, bearer bool) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok {
		if strings.EqualFold(scheme, "Bearer") {
			return "", true // the scheme without credentials
		}
		return scheme, false
	}
	return strings.TrimLeft(cred, " "), strings.EqualFold(scheme, "Bearer")
}

// participantByToken is the participant whose internal API token this is;
// nil when none. Every token is compared, in constant time.
func (n *Node) participantByToken(token string) *participant {
	if token == "" {
		return nil
	}
	return n.parts.byInternalToken(tokenHash(token))
}

// internalFHIRPath tells the internal listener's FHIR APIs, which answer
// errors as OperationOutcome, from the rest, which answer problem+json.
func internalFHIRPath(path string) bool {
	return path == "/internal/fhir" || strings.HasPrefix(path, "/internal/fhir/") || strings.HasPrefix(path, "/internal/audit/") ||
		path == "/internal/transfers" || strings.HasPrefix(path, "/internal/transfers/")
}

// refuseInternal answers a request without a valid internal API token 401
// after auditing it with its source and what it named: the patient, the
// participants in its body and, when the credentials are a participant's
// token sent under another scheme, that participant. The token itself is
// never recorded.
func (n *Node) refuseInternal(w http.ResponseWriter, r *http.Request, named *participant, presented bool) {
	fhirAPI := internalFHIRPath(r.URL.Path)
	rec := audit.Record{Action: actionFor(r.Method), Interaction: "access", Outcome: http.StatusUnauthorized,
		OutcomeText: "no valid internal API token", Address: r.RemoteAddr, AuthzProtocol: "internal API, participant token"}
	if named != nil {
		rec.Tenant = named.URA
		rec.OutcomeText = "the participant's internal API token, not under the Bearer scheme"
	}
	rec.Patient, rec.Query = refusedNames(r, fhirAPI, n.patientBSN)
	if err := n.auditLog.Append(r.Context(), rec); err != nil {
		if fhirAPI {
			writeOutcome(w, auditUnavailable(err))
		} else {
			writeProblem(w, http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable; nothing was done")
		}
		return
	}
	challenge := `Bearer realm="schakel-internal"`
	if presented {
		challenge += `, error="invalid_token"` // RFC 6750 §3.1
	}
	w.Header().Set("WWW-Authenticate", challenge)
	const detail = "a participant's internal API token is required (Authorization: Bearer <token>)"
	if fhirAPI {
		writeOutcome(w, &fhir.Error{Status: http.StatusUnauthorized, Issues: []fhir.Issue{{Severity: "error", Code: "login", Diagnostics: detail}}})
		return
	}
	writeProblem(w, http.StatusUnauthorized, "unauthorized", detail)
}

// maxRefusedQuery bounds what a refused request puts in the audit record's
// query: enough for any real search, not a sink for whatever is sent.
const maxRefusedQuery = 1024

// refusedNames is the patient and the query (path, FHIR search, the
// participants named in a JSON body) a refused internal request named.
func refusedNames(r *http.Request, fhirAPI bool, patientBSN func(url.Values) string) (patient, query string) {
	params := r.URL.Query()
	patient = patientBSN(params)
	if patient == "" {
		for _, v := range params["patient"] { // the audit trail's own search
			if _, bsn, _ := strings.Cut(v, "|"); bsn != "" && nl.ValidateBSN(bsn) == nil {
				patient = bsn
			} else if nl.ValidateBSN(v) == nil {
				patient = v
			}
		}
	}
	query = r.URL.Path
	if fhirAPI && r.URL.RawQuery != "" {
		query += "?" + r.URL.RawQuery
	}
	if !fhirAPI && r.Method == http.MethodPost && r.Body != nil {
		// The internal API's JSON bodies name the patient and the partner.
		var body struct {
			Patient      string `json:"patient"`
			Receiver     string `json:"receiver"`
			Holder       string `json:"holder"`
			RequesterURA string `json:"requesterUra"`
			HolderURA    string `json:"holderUra"`
		}
		if json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body) == nil {
			if patient == "" && nl.ValidateBSN(body.Patient) == nil {
				patient = body.Patient
			}
			for _, f := range []struct{ name, ura string }{{"receiver", body.Receiver}, {"holder", body.Holder},
				{"requesterUra", body.RequesterURA}, {"holderUra", body.HolderURA}} {
				if nl.ValidateURA(f.ura) == nil {
					query += " " + f.name + "=" + f.ura
				}
			}
		}
	}
	if len(query) > maxRefusedQuery {
		query = query[:maxRefusedQuery]
	}
	return patient, query
}

// Referral is the internal API's view of a referral, sent or received.
type Referral struct {
	ID         string `json:"id"`
	Identifier string `json:"identifier"` // the notification identifier both sides share
	// Group is the notification's groupIdentifier: an update of a referral
	// (POST /internal/referrals/{id}/update) keeps the group and supersedes it.
	Group        string                     `json:"group,omitempty"`
	Direction    string                     `json:"direction"` // sent | received
	Status       string                     `json:"status"`
	StatusReason string                     `json:"statusReason,omitempty"`
	Patient      string                     `json:"patient"`
	Partner      string                     `json:"partner"` // the other organisation's URA
	Application  string                     `json:"application,omitempty"`
	WorkflowTask string                     `json:"workflowTask,omitempty"`
	Expires      time.Time                  `json:"expires"`
	Created      time.Time                  `json:"created"`
	Updated      time.Time                  `json:"updated"`
	Data         string                     `json:"data,omitempty"` // local Bundle id of pulled data
	Results      []notifiedpull.QueryResult `json:"results,omitempty"`
	// AwaitingUser: a received referral whose pull waits for a user to
	// accept it (POST /internal/referrals/{id}/accept).
	AwaitingUser bool `json:"awaitingUser,omitempty"`
	// AcceptedBy is the user who accepted a received referral.
	AcceptedBy string `json:"acceptedBy,omitempty"`
	// Decision is the participant's decision on a received transfer
	// request (GET /internal/transfers): pending, accepted or rejected.
	Decision string `json:"decision,omitempty"`
	// DecisionReason is the reason the participant gave for a rejection.
	DecisionReason string `json:"decisionReason,omitempty"`
}

func sentView(g notifiedpull.Grant) Referral {
	return Referral{ID: g.ID, Identifier: g.ID, Group: g.Group, Direction: "sent", Status: g.Status, StatusReason: g.StatusReason, Patient: g.PatientBSN,
		Partner: g.ReceiverURA, Application: g.Application, WorkflowTask: "Task/" + g.WorkflowTask, Expires: g.Expires,
		Created: g.Created, Updated: g.Updated}
}

func receivedView(r notifiedpull.Received) Referral {
	v := Referral{ID: r.ID, Identifier: r.Identifier, Group: r.Group, Application: r.Application, Direction: "received", Status: r.Status, StatusReason: r.StatusReason, Patient: r.PatientBSN,
		Partner: r.SenderURA, WorkflowTask: r.WorkflowTask, Expires: r.Expires, Created: r.Created, Updated: r.Updated,
		Data: r.ResultBundle, Results: r.Summary, AwaitingUser: r.Awaiting, Decision: r.Decision, DecisionReason: r.DecisionReason}
	if r.AcceptedBy != nil {
		v.AcceptedBy = r.AcceptedBy.ID
	}
	return v
}

func (n *Node) createReferral(w http.ResponseWriter, r *http.Request, p *participant) {
	var req notifiedpull.ReferRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", "expected JSON {\"patient\": BSN, \"receiver\": URA, \"application\": \"bgz\"}")
		return
	}
	if fe := n.referralBSN(req.ReceiverURA, req.PatientBSN); fe != nil {
		n.internalError(w, fe)
		return
	}
	g, err := n.np.Refer(r.Context(), p.URA, req)
	n.metrics.exchange(applicationLabel(req.Application, notifiedpull.ApplicationBgZ, err), patternNotifiedPull, roleSender, err)
	if err != nil {
		n.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, sentView(g))
}

func (n *Node) listReferrals(w http.ResponseWriter, r *http.Request, p *participant) {
	out := []Referral{}
	dir := r.URL.Query().Get("direction")
	if dir == "" || dir == "sent" {
		gs, err := n.np.Sent(r.Context(), p.URA)
		if err != nil {
			n.internalError(w, err)
			return
		}
		for _, g := range gs {
			out = append(out, sentView(g))
		}
	}
	if dir == "" || dir == "received" {
		rs, err := n.np.Received(r.Context(), p.URA)
		if err != nil {
			n.internalError(w, err)
			return
		}
		for _, x := range rs {
			out = append(out, receivedView(x))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) getReferral(w http.ResponseWriter, r *http.Request, p *participant) {
	id := r.PathValue("id")
	if g, err := n.np.SentOne(r.Context(), p.URA, id); err == nil {
		writeJSON(w, http.StatusOK, sentView(g))
		return
	}
	x, err := n.np.ReceivedOne(r.Context(), p.URA, id)
	if err != nil {
		n.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, receivedView(x))
}

func (n *Node) cancelReferral(w http.ResponseWriter, r *http.Request, p *participant) {
	g, err := n.np.Cancel(r.Context(), p.URA, r.PathValue("id"))
	if err != nil {
		n.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sentView(g))
}

// updateReferral serves POST /internal/referrals/{id}/update: the
// participant's data set for a referral changed, and a new notification
// with the same group supersedes the earlier one (TA Notified Pull). The
// body, optional, is {"description": text}. The answer is the new referral.
func (n *Node) updateReferral(w http.ResponseWriter, r *http.Request, p *participant) {
	var body struct {
		Description string `json:"description"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected no body or JSON {"description": text}`)
		return
	}
	g, err := n.np.Update(r.Context(), p.URA, r.PathValue("id"), body.Description)
	n.metrics.exchange(applicationLabel(g.Application, notifiedpull.ApplicationBgZ, err), patternNotifiedPull, roleSender, err)
	if err != nil {
		n.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, sentView(g))
}

// acceptReferral serves POST /internal/referrals/{id}/accept: a user of
// the participant accepts a received referral that waits for one, and its
// pull starts, carrying that user in the grant assertion. The body is the
// user (plateau.Caller): {"id", "role", "loa", "amr", "identityToken"}.
func (n *Node) acceptReferral(w http.ResponseWriter, r *http.Request, p *participant) {
	var user plateau.Caller
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&user); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"id": UZI number, "role": UZI role code, "loa": eIDAS level, "identityToken": signed identity (optional)}`)
		return
	}
	x, err := n.np.Accept(r.Context(), p.URA, r.PathValue("id"), user)
	if err != nil {
		n.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, receivedView(x))
}

// referralData returns the Bundle pulled for a received referral.
func (n *Node) referralData(w http.ResponseWriter, r *http.Request, p *participant) {
	x, err := n.np.ReceivedOne(r.Context(), p.URA, r.PathValue("id"))
	if err != nil {
		n.internalError(w, err)
		return
	}
	if x.ResultBundle == "" {
		writeProblem(w, http.StatusConflict, "not-ready", "no data pulled yet; referral status is "+x.Status)
		return
	}
	v := fhir.STU3
	if a, ok := n.apps.Get(x.Application); ok {
		v = a.FHIRVersion()
	}
	res, err := n.StoreFor(v).Read(r.Context(), p.URA, "Bundle", x.ResultBundle)
	if err != nil {
		n.internalError(w, err)
		return
	}
	if err := n.auditLog.Append(r.Context(), audit.Record{Action: audit.ActionRead, Interaction: "read", Outcome: http.StatusOK, Tenant: p.URA,
		ActorURA: p.URA, ActorSystem: p.SystemUZI, Address: r.RemoteAddr, Patient: x.PatientBSN, Types: []string{"Bundle"},
		Resources: []string{"Bundle/" + res.ID}, Task: x.Identifier}); err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable; nothing was returned")
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion="+versionParam(v)+"; charset=utf-8")
	_, _ = w.Write(res.Body)
}

// versionParam is the fhirVersion media type parameter of version v.
func versionParam(v fhir.Version) string {
	if v == fhir.R4 {
		return "4.0"
	}
	return "3.0"
}

// internalError translates an error once, at the edge of the internal API.
func (n *Node) internalError(w http.ResponseWriter, err error) {
	if fe := fhir.AsError(err); fe != nil {
		writeProblem(w, fe.Status, "rejected", fe.Error())
		return
	}
	switch {
	case storeUnavailable(err):
		n.log.Warn("internal API: store unavailable", "err", err)
		writeStoreUnavailable(w)
	case errors.Is(err, notifiedpull.ErrUnknownReferral):
		writeProblem(w, http.StatusNotFound, "not-found", "no such referral for this participant")
	case errors.Is(err, notifiedpull.ErrNotAwaiting):
		writeProblem(w, http.StatusConflict, "not-awaiting", err.Error())
	case errors.Is(err, notifiedpull.ErrNoUser):
		writeProblem(w, http.StatusBadRequest, "invalid-body", err.Error())
	case errors.Is(err, notifiedpull.ErrUnknownParticipant):
		writeProblem(w, http.StatusNotFound, "not-found", "unknown participant")
	default:
		n.log.Error("internal API", "err", err)
		writeProblem(w, http.StatusBadGateway, "exchange-failed", exchangeError(err))
	}
}

// exchangeError keeps what the participant's system needs to know about a
// failed exchange with a partner (which step failed and the partner's answer).
func exchangeError(err error) string {
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeProblem answers with RFC 9457 problem details.
func writeProblem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "https://schakel.dev/problems/" + typ, "title": http.StatusText(status), "status": status, "detail": detail,
	})
}

// consultHolder serves POST /internal/consult: retrieve a patient's data
// directly from another organisation (Direct Pull), which asks the
// patient's consent before answering.
func (n *Node) consultHolder(w http.ResponseWriter, r *http.Request, p *participant) {
	var req consult.Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN, "holder": URA, "application": "bgz", "userId": UZI, "userRole": role code}`)
		return
	}
	start := time.Now()
	res, err := n.consult.Consult(r.Context(), p.URA, req)
	app := applicationLabel(req.Application, consult.ApplicationBgZ, err)
	n.metrics.exchange(app, patternDirectPull, roleRequester, err)
	if err == nil {
		n.metrics.exchangeTook(app, patternDirectPull, roleRequester, time.Since(start))
	}
	if err != nil {
		n.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
