package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

type tokenKey struct{}

func tokenFrom(ctx context.Context) *oauth.AccessToken {
	t, _ := ctx.Value(tokenKey{}).(*oauth.AccessToken)
	return t
}

// publicRoutes are what peers reach over mTLS.
func (n *Node) publicRoutes() http.Handler {
	mux := http.NewServeMux()
	n.as.Routes(mux)
	mux.HandleFunc("GET /jwks/{ura}", n.serveClientJWKS)
	mux.HandleFunc("POST /consent/notifications/{ura}", n.consentNotification)
	mux.HandleFunc("GET "+audit.ExportPath, n.serveAuditExport)
	mux.HandleFunc("GET "+audit.ExportKeysPath, n.serveAuditKeys)
	n.hostedPublicRoutes(mux)
	data := rest.New(n.dataConfig(n.stu3, fhir.STU3))
	fhirAPI := func(w http.ResponseWriter, r *http.Request) {
		ura, path := r.PathValue("ura"), r.PathValue("path")
		if _, ok := n.parts.get(ura); !ok {
			writeOutcome(w, fhir.Errorf(http.StatusNotFound, "not-found", "no participant %s on this node", ura))
			return
		}
		if path == "$process-message" {
			n.push.HandleMessage(w, r, ura)
			return
		}
		if path == "Task" && (r.Method == http.MethodPost || (r.Method == http.MethodPut && r.URL.Query().Has("identifier"))) {
			n.np.HandleNotification(w, r, ura)
			return
		}
		n.serveData(w, r, data, ura, n.fhirBase(ura), path)
	}
	// The base itself takes transactions and batches; ServeMux would redirect it to ".../{ura}/".
	mux.HandleFunc("/fhir/stu3/{ura}", fhirAPI)
	mux.HandleFunc("/fhir/stu3/{ura}/{path...}", fhirAPI)
	n.mountPublicR4(mux, data)
	return unmatched(mux)
}

// dataConfig is the configuration of a public data endpoint over st: every
// request passes the plateau enforcer, the care application's policy and
// the exchange's own policy (referral or consult), and is audited before
// its answer leaves.
func (n *Node) dataConfig(st store.Store, v fhir.Version) rest.Config {
	return rest.Config{
		Store: st, Version: v, MaxBodyBytes: n.cfg.MaxBodyBytes, Logger: n.log,
		Authorize: func(ctx context.Context, req *rest.Request) error {
			if err := versionWrites(v, req); err != nil {
				return err
			}
			if err := n.applicationVersion(v, tokenFrom(ctx), req); err != nil {
				return err
			}
			tok := tokenFrom(ctx)
			authn, user, role := plateau.TokenUser(tok.Claims)
			app := ""
			if len(tok.Scope) > 0 {
				app = tok.Scope[0]
			}
			if err := n.plateaus.CheckAccess(ctx, plateau.AccessContext{PartnerURA: tok.Subject, Authenticated: authn,
				UserID: user, UserRole: role, Application: app, Interaction: req.Interaction, ResourceType: req.Type,
				Operation: req.Operation, Params: req.Params, Patient: n.queryBSN(req),
				Tenant: req.Tenant, DirectPull: consult.IsConsult(tok), TLS: req.HTTP.TLS, Token: tok.Claims}); err != nil {
				if r := plateau.AsRefusal(err); r != nil {
					return r.FHIRError()
				}
				return err
			}
			if consult.IsConsult(tok) {
				// The patient a consult names is identified before consent is
				// asked about them; only for a token issued for this participant.
				if bsn := n.queryBSN(req); bsn != "" && tok.StringClaim(consult.ClaimConsult) == req.Tenant {
					if err := n.identifyHeld(ctx, req.Tenant, tok.Subject, bsn); err != nil {
						return err
					}
				}
				return n.consult.AuthorizeData(ctx, tok, req)
			}
			return n.np.AuthorizeData(ctx, tok, req)
		},
		// The answer leaves only after its audit record is committed, and
		// a receiver's status report only once the exchange state follows
		// it: taken beside the record, so the report waits for neither
		// twice.
		Commit: func(ctx context.Context, req *rest.Request, res rest.Result) error {
			tok := tokenFrom(ctx)
			if tok != nil && req.Interaction == rest.InteractionUpdate && res.Err == nil {
				kept := make(chan struct{})
				go func() {
					defer close(kept)
					n.np.AfterData(ctx, tok, req, res.Status)
				}()
				defer func() { <-kept }()
			}
			if tok == nil {
				// Only metadata is served without a token: the peer is known by its certificate alone.
				peer, _ := n.trust.PeerURA(req.HTTP.TLS)
				return n.auditFHIR(ctx, req, res, actor{ura: peer, protocol: "no access token",
					checks: []string{"mtls: TLS 1.3 client certificate verified against the trust list"}})
			}
			_, user, role := plateau.TokenUser(tok.Claims)
			who := actor{ura: tok.Subject, system: tok.ClientID, user: user, role: role,
				protocol: "Twiin TA Notified Pull; access token " + strings.Join(tok.Scope, " "),
				checks:   n.dataChecks(tok, res.Status < 400)}
			if consult.IsConsult(tok) {
				who.protocol = "Twiin Direct Pull; access token " + strings.Join(tok.Scope, " ")
				if c, ok := consult.CheckFrom(ctx); ok {
					who.consent = c.ConsentProfile
				}
			}
			return n.auditFHIR(ctx, req, res, who)
		},
	}
}

// serveData serves a data request on a public FHIR base: metadata to any
// trusted peer, everything else with a valid access token for this
// participant's data (audience: its FHIR base, dataAudiences).
func (n *Node) serveData(w http.ResponseWriter, r *http.Request, data *rest.Server, ura, base, path string) {
	if path == "metadata" {
		data.Serve(w, r, ura, base, path)
		return
	}
	tok, err := n.verifyData(r, ura, base)
	if err != nil {
		peer, _ := n.trust.PeerURA(r.TLS)
		if aerr := n.auditAppender().Append(r.Context(), audit.Record{Action: actionFor(r.Method), Interaction: "access", Outcome: http.StatusUnauthorized,
			OutcomeText: "no valid access token", Tenant: ura, ActorURA: peer, Address: r.RemoteAddr, Query: path}); aerr != nil {
			writeOutcome(w, auditUnavailable(aerr))
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOutcome(w, &fhir.Error{Status: http.StatusUnauthorized, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "login",
			Diagnostics: "a valid access token for this endpoint, bound to your client certificate, is required"}}})
		return
	}
	ctx := context.WithValue(r.Context(), tokenKey{}, tok)
	if consult.IsConsult(tok) {
		ctx = consult.WithCheck(ctx)
	}
	data.Serve(w, r.WithContext(ctx), ura, base, path)
}

// serveClientJWKS publishes the keys a participant signs its client
// assertions with; peers find this address in the addressbook.
func (n *Node) serveClientJWKS(w http.ResponseWriter, r *http.Request) {
	p, ok := n.parts.get(r.PathValue("ura"))
	if !ok {
		http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
		return
	}
	set, err := pki.PublicJWKS(p.signing)
	if err != nil {
		n.log.Error("publish JWKS", "err", err)
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=300")
	_ = json.NewEncoder(w).Encode(set)
}

// actor is who made a request, as the audit record names them, and what
// was checked before it was answered.
type actor struct {
	ura, system, user, role, protocol, consent string
	checks                                     []string
}

// dataChecks names, for the audit record, what was checked before a
// peer's data request was answered: the transport and token checks every
// request passed to get this far, and, when it was answered with data, the
// agreement, policy and exchange checks too.
func (n *Node) dataChecks(tok *oauth.AccessToken, answered bool) []string {
	checks := []string{
		"mtls: TLS 1.3 client certificate verified against the trust list",
		"token: access token signature, issuer, audience and expiry (RFC 9068)",
		"token-binding: cnf x5t#S256 matches the client certificate (RFC 8705)",
	}
	if !answered {
		return checks // the refusal's reason is the record's outcome text
	}
	if a, ok := n.plateaus.Agreement(tok.Subject); ok {
		name := a.Name
		if a.Default {
			name = "default agreement"
		}
		checks = append(checks, fmt.Sprintf("plateau: agreement %q, authentication %d, authorization %d, consent %d",
			name, a.Plateau(plateau.Authentication), a.Plateau(plateau.Authorization), a.Plateau(plateau.Consent)))
		if p := a.Plateau(plateau.Identification); p >= verifyFrom && consult.IsConsult(tok) {
			checks = append(checks, fmt.Sprintf("identification: plateau %d, the patient's BSN verified at the BSN verification service", p))
		}
	}
	if len(tok.Scope) > 0 {
		checks = append(checks, "policy: care application "+tok.Scope[0]+" allows this interaction for the requester's role")
	}
	if consult.IsConsult(tok) {
		return append(checks, "consult: patient of the question, consent asked per answer")
	}
	return append(checks, "referral: query listed in the workflow Task, patient of the referral, referral active")
}

// confidentiality orders HL7 v3 Confidentiality codes, least to most
// restricted.
var confidentiality = map[string]int{"U": 1, "L": 2, "M": 3, "N": 4, "R": 5, "V": 6}

// sensitivity is the most restricted confidentiality code among the
// resources' meta.security labels; N (normal health data) when none
// carries one.
func sensitivity(resources []store.Resource) string {
	best := "N"
	for _, r := range resources {
		// Nearly every resource carries no such label: skip the decoding.
		if !bytes.Contains(r.Body, []byte("Confidentiality")) {
			continue
		}
		var m struct {
			Meta struct {
				Security []struct{ System, Code string } `json:"security"`
			} `json:"meta"`
		}
		if json.Unmarshal(r.Body, &m) != nil {
			continue
		}
		for _, sec := range m.Meta.Security {
			if sec.System == "http://hl7.org/fhir/v3/Confidentiality" || sec.System == "http://terminology.hl7.org/CodeSystem/v3-Confidentiality" {
				if confidentiality[sec.Code] > confidentiality[best] {
					best = sec.Code
				}
			}
		}
	}
	return best
}

// auditFHIR records one FHIR interaction on patient data. An error means
// the record was not written: the caller must not answer with the data.
func (n *Node) auditFHIR(ctx context.Context, req *rest.Request, res rest.Result, who actor) error {
	if req == nil || req.Interaction == rest.InteractionCapabilities {
		return nil
	}
	rec := audit.Record{Action: actionFor(req.HTTP.Method), Interaction: req.Interaction, Type: "rest", Outcome: res.Status,
		Tenant: req.Tenant, ActorURA: who.ura, ActorSystem: who.system, ActorUser: who.user, ActorRole: who.role,
		Address: req.HTTP.RemoteAddr, Query: queryText(req), AuthzProtocol: who.protocol, PurposeOfUse: "TREAT",
		ConsentProfile: who.consent, Checks: who.checks, Sensitivity: sensitivity(res.Resources)}
	if res.Err != nil {
		if fe := fhir.AsError(res.Err); fe != nil && len(fe.Issues) > 0 {
			rec.OutcomeText = fe.Issues[0].Diagnostics
		} else {
			rec.OutcomeText = "error"
		}
	}
	if req.Type != "" || len(res.Resources) > 0 {
		rec.Types = make([]string, 0, len(res.Resources)+1)
		rec.Resources = make([]string, 0, len(res.Resources))
	}
	if req.Type != "" {
		rec.Types = append(rec.Types, req.Type)
	}
	for _, r := range res.Resources {
		rec.Types = append(rec.Types, r.Type)
		rec.Resources = append(rec.Resources, r.Type+"/"+r.ID)
		if r.Type == "Patient" && rec.Patient == "" {
			rec.Patient, _, _ = nl.Patient(r.Body)
		}
	}
	if rec.Patient == "" {
		rec.Patient = n.queryBSN(req)
	}
	if tok := tokenFrom(ctx); tok != nil {
		rec.Task = tok.StringClaim("twiin_task")
		if rec.Patient == "" {
			rec.Patient = n.referralPatient(ctx, req.Tenant, tok)
		}
	}
	return n.auditAppender().Append(ctx, rec)
}

// appendAudit writes a record whose failure cannot change the answer any
// more (it has been given); the failure is logged.
func (n *Node) appendAudit(ctx context.Context, rec audit.Record) {
	if err := n.auditLog.Append(context.WithoutCancel(ctx), rec); err != nil {
		n.log.Error("audit append failed", "interaction", rec.Interaction, "err", err)
	}
}

// auditUnavailable is the answer when the audit log cannot record an access:
// the node refuses rather than serve unlogged.
func auditUnavailable(err error) *fhir.Error {
	return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "transient",
		Diagnostics: "the audit log is unavailable; nothing was returned"}}}
}

func actionFor(method string) string {
	switch method {
	case http.MethodPost:
		return audit.ActionCreate
	case http.MethodPut, http.MethodPatch:
		return audit.ActionUpdate
	case http.MethodDelete:
		return audit.ActionDelete
	}
	return audit.ActionRead
}

func queryText(req *rest.Request) string {
	s := req.Type
	if req.ID != "" {
		s += "/" + req.ID
	}
	if req.Operation != "" {
		s += "/" + req.Operation
	}
	if len(req.Params) > 0 {
		s += "?" + req.Params.Encode()
	}
	return s
}

func writeOutcome(w http.ResponseWriter, fe *fhir.Error) {
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	w.WriteHeader(fe.Status)
	_, _ = w.Write(fhir.OperationOutcome(fe.Issues...))
}

// queryBSN is the patient a search is about, or the patient of
// Patient/[id]/$everything, for the policy and the audit record.
func (n *Node) queryBSN(req *rest.Request) string {
	bsn := n.patientBSN(req.Params)
	if bsn == "" && req.Patient != nil {
		bsn, _, _ = nl.Patient(req.Patient.Body)
	}
	return bsn
}

// unmatched answers a request no route serves (404, or 405 with its Allow
// header) in the shape its clients read: an OperationOutcome under a FHIR
// base, problem+json elsewhere. ServeMux's own answers are plain text. The
// mux routes once; its fallback handlers are told apart from the routes'
// own 404s by the pattern it records on the request (empty: no route).
func unmatched(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(&unmatchedWriter{ResponseWriter: w, r: r}, r)
		setRoute(r.Context(), r.Pattern)
	})
}

// unmatchedWriter replaces ServeMux's plain-text 404 and 405.
type unmatchedWriter struct {
	http.ResponseWriter
	r       *http.Request
	decided bool
	shaped  bool // the answer was replaced; the mux's body is dropped
}

func (u *unmatchedWriter) WriteHeader(code int) {
	if u.decided {
		return
	}
	u.decided = true
	if u.r.Pattern != "" || (code != http.StatusNotFound && code != http.StatusMethodNotAllowed) {
		u.ResponseWriter.WriteHeader(code)
		return
	}
	u.shaped = true
	r, allow := u.r, u.Header().Get("Allow")
	text := fmt.Sprintf("no endpoint at %s %s on this node", r.Method, r.URL.Path)
	issue := "not-found"
	if code == http.StatusMethodNotAllowed {
		text = fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
		issue = "not-supported"
	}
	if strings.HasPrefix(r.URL.Path, "/fhir/") || strings.HasPrefix(r.URL.Path, "/internal/fhir") {
		writeOutcome(u.ResponseWriter, fhir.Errorf(code, issue, "%s", text))
		return
	}
	writeProblem(u.ResponseWriter, code, issue, text)
}

func (u *unmatchedWriter) Write(b []byte) (int, error) {
	if !u.decided {
		u.WriteHeader(http.StatusOK)
	}
	if u.shaped {
		return len(b), nil
	}
	return u.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (u *unmatchedWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }
