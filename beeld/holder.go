package beeld

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// Defaults of the holder side.
const (
	// MaxTokenLifetime bounds an imaging token, as a consult token's.
	MaxTokenLifetime    = consult.MaxTokenLifetime
	defaultMaxJSON      = 8 << 20
	defaultMaxStudies   = 100
	defaultPACSParallel = 4
	copyBuffer          = 256 << 10
)

// Backend is a participant's PACS as the node reaches it.
type Backend struct {
	// Base is the PACS's DICOMweb base URL (QIDO-RS and WADO-RS under it).
	Base string
	HTTP *http.Client
}

// Access is one request as the partner's agreement judges it.
type Access struct {
	Tenant      string
	Interaction string // search-type (ImagingStudy search, QIDO-RS) or read (WADO-RS)
	Patient     string
	Params      url.Values
	TLS         *tls.ConnectionState
}

// HolderConfig wires the holder side into a node.
type HolderConfig struct {
	// Backend is the PACS of a participant; ok is false when it has none.
	Backend func(tenant string) (Backend, bool)
	// Tenants lists the participants of this node.
	Tenants func() []string
	// FHIRBase is a participant's public FHIR R4 base: the resource an
	// imaging token is asked for (RFC 8707) and its audience.
	FHIRBase func(tenant string) string
	// DICOMwebBase is a participant's public DICOMweb base on this node:
	// what ImagingStudy.endpoint advertises.
	DICOMwebBase func(tenant string) string
	// Verify checks a request's access token for audience.
	Verify func(r *http.Request, audience string) (*oauth.AccessToken, error)
	// PeerURA is the URA of the request's client certificate.
	PeerURA func(r *http.Request) string
	// Admit judges the request against the partner's agreement (plateaus,
	// the care application's policy); its error is a *fhir.Error.
	Admit func(ctx context.Context, tok *oauth.AccessToken, a Access) error
	// Identify verifies the patient's BSN where the agreement asks it; its
	// error is a *fhir.Error. Optional.
	Identify func(ctx context.Context, tenant, partner, bsn string) error
	// FacilityType is a participant's facility type code (the consent
	// question's data holder type).
	FacilityType func(tenant string) string
	// RequesterType gives a partner's facility type when its token does not
	// carry one. Optional.
	RequesterType func(ctx context.Context, ura string) string
	// ConsentSource picks the consent service for a question and names it
	// for the audit record; a nil Checker refuses (503).
	ConsentSource func(q consent.Question) (consent.Checker, string)
	Audit         audit.Log
	Logger        *slog.Logger
	Now           func() time.Time
	// TokenLifetime of imaging tokens; default and maximum MaxTokenLifetime.
	TokenLifetime time.Duration
	// MaxJSONBytes bounds a DICOM JSON answer of the PACS (they are
	// rewritten; images are streamed and not bounded).
	MaxJSONBytes int64
	// MaxStudies bounds the studies one ImagingStudy search maps.
	MaxStudies int
	// StudyOwnerTTL is how long the node keeps whose a study is, as the
	// PACS answered it (QIDO-RS PatientID, IssuerOfPatientID), before it
	// asks again: a viewer retrieves one study in many requests (series,
	// instances, frames, metadata), each of which would otherwise query
	// the PACS first. Default 10s; negative asks the PACS every time.
	// Consent is asked per request whatever this says.
	StudyOwnerTTL time.Duration
}

// Holder is the holder side for every participant of a node.
type Holder struct {
	cfg    HolderConfig
	log    *slog.Logger
	owners owners
}

// defaultStudyOwnerTTL is HolderConfig.StudyOwnerTTL's default.
const defaultStudyOwnerTTL = 10 * time.Second

// maxOwners bounds the studies whose patient the holder keeps.
const maxOwners = 10000

// owners keeps, per participant and study, the PACS's answer to whose
// study it is, until it expires.
type owners struct {
	mu sync.Mutex
	m  map[ownerKey]ownerEntry
}

type ownerKey struct{ tenant, study string }

type ownerEntry struct {
	d       Dataset
	expires time.Time
}

func (o *owners) get(k ownerKey, now time.Time) (Dataset, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.m[k]
	if !ok || !now.Before(e.expires) {
		delete(o.m, k)
		return nil, false
	}
	return e.d, true
}

func (o *owners) put(k ownerKey, d Dataset, now, expires time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[ownerKey]ownerEntry{}
	}
	if len(o.m) >= maxOwners {
		// Full: drop what has expired, then arbitrary entries down to
		// half; they are only a shortcut.
		for key, e := range o.m {
			if !now.Before(e.expires) {
				delete(o.m, key)
			}
		}
		for key := range o.m {
			if len(o.m) < maxOwners/2 {
				break
			}
			delete(o.m, key)
		}
	}
	o.m[k] = ownerEntry{d: d, expires: expires}
}

// NewHolder builds the holder side.
func NewHolder(cfg HolderConfig) *Holder {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TokenLifetime <= 0 || cfg.TokenLifetime > MaxTokenLifetime {
		cfg.TokenLifetime = MaxTokenLifetime
	}
	if cfg.MaxJSONBytes <= 0 {
		cfg.MaxJSONBytes = defaultMaxJSON
	}
	if cfg.MaxStudies <= 0 {
		cfg.MaxStudies = defaultMaxStudies
	}
	if cfg.FacilityType == nil {
		cfg.FacilityType = func(string) string { return "" }
	}
	if cfg.Tenants == nil {
		cfg.Tenants = func() []string { return nil }
	}
	if cfg.StudyOwnerTTL == 0 {
		cfg.StudyOwnerTTL = defaultStudyOwnerTTL
	}
	return &Holder{cfg: cfg, log: cfg.Logger.With("component", "beeld")}
}

// Routes mounts the public routes: the ImagingStudy search under the
// participants' FHIR R4 base and the DICOMweb proxy.
func (h *Holder) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /fhir/r4/{ura}/ImagingStudy", func(w http.ResponseWriter, r *http.Request) {
		h.ServeImagingStudies(w, r, r.PathValue("ura"))
	})
	mux.HandleFunc("GET /dicomweb/{ura}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		h.ServeDICOMweb(w, r, r.PathValue("ura"), r.PathValue("path"))
	})
}

// Handles reports whether a token request is for an imaging token: the
// node's authorization server dispatches it here.
func Handles(req oauth.GrantRequest) bool {
	return slices.Contains(req.Scope, Application)
}

// ResolveGrant decides an imaging token request (jwt-bearer, RFC 7523 §2.1,
// without authorization_base): the RFC 8707 resource must be the FHIR R4
// base of a participant with a PACS, the scope exactly "beeld", the
// assertion must name the user and the patient. The token opens that
// patient's studies at that participant; consent is asked per request.
func (h *Holder) ResolveGrant(_ context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	if req.GrantType != consult.GrantTypeJWT {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token is asked with the jwt-bearer grant", nil)
	}
	if req.AuthorizationBase != "" {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token carries no authorization_base", nil)
	}
	if len(req.Scope) != 1 || req.Scope[0] != Application {
		return oauth.Grant{}, fmt.Errorf("%w: an imaging token asks for exactly the scope %s", oauth.ErrInvalidScope, Application)
	}
	if req.Resource == "" {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token request must name the holder's FHIR R4 endpoint in resource (RFC 8707)", nil)
	}
	tenant := ""
	for _, t := range h.cfg.Tenants() {
		if h.cfg.FHIRBase(t) == req.Resource {
			tenant = t
		}
	}
	if tenant == "" {
		return oauth.Grant{}, oauth.RefuseTarget("resource is not the FHIR R4 endpoint of a participant of this node", nil)
	}
	if _, ok := h.cfg.Backend(tenant); !ok {
		return oauth.Grant{}, oauth.RefuseTarget("this participant makes no images available", nil)
	}
	bsn, _ := req.Assertion[AssertionPatient].(string)
	if nl.ValidateBSN(bsn) != nil {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token request names the patient: "+AssertionPatient+" must be a valid BSN", nil)
	}
	if !namesUser(req) {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token request must name the requesting user (user_id, user_role): the consent question needs them", nil)
	}
	claims := map[string]any{consult.ClaimConsult: tenant, ClaimPatient: bsn}
	if v, ok := req.Assertion[consult.AssertionRequesterType]; ok {
		rt, isStr := v.(string)
		if !isStr || !validCode(rt) {
			return oauth.Grant{}, oauth.RefuseGrant("requester_type must be a facility type code", nil)
		}
		claims[consult.ClaimRequesterType] = rt
	}
	return oauth.Grant{Audience: req.Resource, Scope: []string{Application}, Subject: req.ClientID, Claims: claims,
		NotAfter: h.cfg.Now().Add(h.cfg.TokenLifetime)}, nil
}

func namesUser(req oauth.GrantRequest) bool {
	if req.User != nil && req.User.UZI != "" && req.User.RoleCode != "" {
		return true
	}
	u, err := plateau.UserFromClaims(req.Assertion)
	return err == nil && u != nil && u.ID != "" && u.Role != ""
}

// validCode accepts codes of 1..64 letters, digits, '.', '-' and '_'.
func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// request is one authorized request: who asked, for whom, and what was
// checked, for the audit record.
type request struct {
	r       *http.Request
	tenant  string
	tok     *oauth.AccessToken
	bsn     string
	query   string
	inter   string
	backend Backend
	consent string
	checks  []string
}

// record writes the audit record of a request's outcome; an error means
// nothing may be answered.
func (h *Holder) record(ctx context.Context, q *request, status int, text string, resources []string) error {
	rec := audit.Record{Action: audit.ActionRead, Type: "rest", Interaction: q.inter, Outcome: status, OutcomeText: text,
		Tenant: q.tenant, Address: q.r.RemoteAddr, Query: q.query, PurposeOfUse: "TREAT", Patient: q.bsn,
		Types: []string{"ImagingStudy"}, Resources: resources, ConsentProfile: q.consent, Checks: q.checks,
		AuthzProtocol: "Twiin Direct Pull (Beeldbeschikbaarheid); access token " + Application}
	if q.tok != nil {
		_, user, role := plateau.TokenUser(q.tok.Claims)
		rec.ActorURA, rec.ActorSystem, rec.ActorUser, rec.ActorRole = q.tok.Subject, q.tok.ClientID, user, role
	} else if h.cfg.PeerURA != nil {
		rec.ActorURA = h.cfg.PeerURA(q.r)
		rec.AuthzProtocol = "no access token"
	}
	if h.cfg.Audit == nil {
		return nil
	}
	return h.cfg.Audit.Append(ctx, rec)
}

// refuse audits a refusal and answers it as an OperationOutcome.
func (h *Holder) refuse(w http.ResponseWriter, q *request, fe *fhir.Error) {
	text := "refused"
	if len(fe.Issues) > 0 {
		text = fe.Issues[0].Diagnostics
	}
	if err := h.record(q.r.Context(), q, fe.Status, text, nil); err != nil {
		writeOutcome(w, auditUnavailable(err))
		return
	}
	writeOutcome(w, fe)
}

// authorize runs every check before a request touches the PACS: the
// participant's PACS, the access token (audience, binding), that it is an
// imaging token for this participant, the partner's agreement, and the
// patient. Consent is asked by consentFor, after the caller has checked
// what the request names. It answers refusals itself (audited).
func (h *Holder) authorize(w http.ResponseWriter, r *http.Request, tenant, inter, query string) (*request, bool) {
	q := &request{r: r, tenant: tenant, inter: inter, query: query}
	b, ok := h.cfg.Backend(tenant)
	if !ok {
		h.refuse(w, q, fhir.Errorf(http.StatusNotFound, "not-found", "participant %s makes no images available on this node", tenant))
		return nil, false
	}
	q.backend = b
	tok, err := h.cfg.Verify(r, h.cfg.FHIRBase(tenant))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		h.refuse(w, q, &fhir.Error{Status: http.StatusUnauthorized, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "login",
			Diagnostics: "a valid access token for this participant's imaging endpoint, bound to your client certificate, is required"}}})
		return nil, false
	}
	q.tok = tok
	q.checks = []string{
		"mtls: TLS 1.3 client certificate verified against the trust list",
		"token: access token signature, issuer, audience and expiry (RFC 9068)",
		"token-binding: cnf x5t#S256 matches the client certificate (RFC 8705)",
	}
	switch {
	case tok.StringClaim(consult.ClaimConsult) != tenant || !slices.Contains(tok.Scope, Application):
		h.refuse(w, q, forbidden("the access token was not issued for this participant's images"))
		return nil, false
	case nl.ValidateBSN(tok.StringClaim(ClaimPatient)) != nil:
		h.refuse(w, q, forbidden("the access token names no patient"))
		return nil, false
	}
	q.bsn = tok.StringClaim(ClaimPatient)
	if h.cfg.Admit != nil {
		if err := h.cfg.Admit(r.Context(), tok, Access{Tenant: tenant, Interaction: inter, Patient: q.bsn, Params: r.URL.Query(), TLS: r.TLS}); err != nil {
			h.refuse(w, q, asOutcome(err))
			return nil, false
		}
		q.checks = append(q.checks, "plateau: the agreement with the requester allows "+Application+" "+inter+" on ImagingStudy")
	}
	return q, true
}

// permit asks the patient's consent for the request (after identifying the
// patient where the agreement asks it); it answers refusals itself.
func (h *Holder) permit(w http.ResponseWriter, q *request) bool {
	return h.apply(w, q, h.decide(q.r.Context(), q))
}

// verdict is what decide found: the consent profile for the audit record,
// and the refusal, if any.
type verdict struct {
	consent string
	refusal *fhir.Error
	check   string
}

// apply records a verdict on the request; on a refusal it answers it.
func (h *Holder) apply(w http.ResponseWriter, q *request, v verdict) bool {
	q.consent = v.consent
	if v.refusal != nil {
		h.refuse(w, q, v.refusal)
		return false
	}
	q.checks = append(q.checks, v.check)
	return true
}

// decide identifies the patient where the agreement asks it and asks the
// patient's consent for the request. It changes nothing on q, so it can
// run beside the other checks of a request.
func (h *Holder) decide(ctx context.Context, q *request) verdict {
	if h.cfg.Identify != nil {
		if err := h.cfg.Identify(ctx, q.tenant, q.tok.Subject, q.bsn); err != nil {
			return verdict{refusal: asOutcome(err)}
		}
	}
	_, user, role := plateau.TokenUser(q.tok.Claims)
	rtype := q.tok.StringClaim(consult.ClaimRequesterType)
	if rtype == "" && h.cfg.RequesterType != nil {
		rtype = h.cfg.RequesterType(ctx, q.tok.Subject)
	}
	if user == "" || role == "" || rtype == "" {
		return verdict{refusal: forbidden("the access token names no user with an UZI role or no requester facility type; the patient's consent cannot be asked")}
	}
	question := consent.Question{PatientBSN: q.bsn, DataHolderURA: q.tenant, DataHolderType: h.cfg.FacilityType(q.tenant),
		RequesterURA: q.tok.Subject, RequesterType: rtype, RequesterRole: role, RequesterUZI: user, Purpose: consent.PurposeTreatment}
	var checker consent.Checker
	profile := "consent"
	if h.cfg.ConsentSource != nil {
		checker, profile = h.cfg.ConsentSource(question)
	}
	if checker == nil {
		return verdict{consent: profile + ": unavailable", refusal: consent.Outcome(fmt.Errorf("%w: no consent service configured", consent.ErrUnavailable))}
	}
	d, err := checker.Decide(ctx, question)
	if err != nil {
		if !errors.Is(err, consent.ErrUnavailable) && !errors.Is(err, consent.ErrInvalidQuestion) {
			err = fmt.Errorf("%w: %w", consent.ErrUnavailable, err)
		}
		return verdict{consent: profile + ": unavailable", refusal: consent.Outcome(err)}
	}
	v := verdict{consent: profile + ": " + string(d), check: "consent: asked for this request, " + string(d)}
	if !d.Permitted() {
		v.refusal = &fhir.Error{Status: http.StatusForbidden, Cause: &consent.DeniedError{Decision: d}, Issues: []fhir.Issue{{
			Severity: "error", Code: "forbidden",
			Diagnostics: fmt.Sprintf("the patient's consent does not permit this exchange: consent decision %s of the %s", d, profile)}}}
	}
	return v
}

// ServeImagingStudies answers GET {R4 base}/ImagingStudy?patient.identifier=
// <bsn system>|<bsn>: the patient's studies in the participant's PACS
// (QIDO-RS: studies, their series and instances) as R4 ImagingStudy
// resources in a searchset Bundle.
func (h *Holder) ServeImagingStudies(w http.ResponseWriter, r *http.Request, tenant string) {
	params := r.URL.Query()
	q0 := &request{r: r, tenant: tenant, inter: "search-type", query: "ImagingStudy?" + params.Encode()}
	for name := range params {
		if name != "patient.identifier" && name != "_format" {
			h.refuse(w, q0, fhir.Errorf(http.StatusBadRequest, "not-supported", "ImagingStudy is searched by patient.identifier (BSN) only; %s is not supported", name))
			return
		}
	}
	bsn, err := patientParam(params["patient.identifier"])
	if err != nil {
		h.refuse(w, q0, fhir.Errorf(http.StatusBadRequest, "value", "%v", err))
		return
	}
	q0.bsn = bsn
	q, ok := h.authorize(w, r, tenant, "search-type", q0.query)
	if !ok {
		return
	}
	if bsn != q.bsn {
		q.bsn = bsn
		h.refuse(w, q, forbidden("the search names another patient than the access token's"))
		return
	}
	if !h.permit(w, q) {
		return
	}
	views, err := h.studies(r.Context(), q.backend, bsn)
	if err != nil {
		h.log.Warn("PACS query failed", "participant", tenant, "err", err)
		h.refuse(w, q, &fhir.Error{Status: http.StatusBadGateway, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "transient",
			Diagnostics: "the participant's PACS could not be queried"}}})
		return
	}
	var resources []json.RawMessage
	var names []string
	for _, v := range views {
		doc, err := ImagingStudy(v, h.cfg.DICOMwebBase(tenant))
		if err != nil {
			h.log.Warn("PACS answered an unusable study", "participant", tenant, "err", err)
			continue
		}
		resources = append(resources, doc)
		names = append(names, "ImagingStudy/"+v.Study.String(TagStudyInstanceUID))
	}
	base := h.cfg.FHIRBase(tenant)
	body, err := SearchBundle(base, base+"/"+q.query, resources)
	if err != nil {
		h.refuse(w, q, &fhir.Error{Status: http.StatusInternalServerError, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: "internal error"}}})
		return
	}
	if err := h.record(r.Context(), q, http.StatusOK, "", names); err != nil {
		writeOutcome(w, auditUnavailable(err))
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion=4.0; charset=utf-8")
	_, _ = w.Write(body)
}

// patientParam reads patient.identifier: one BSN, in the URI or OID form of
// the naming system.
func patientParam(vals []string) (string, error) {
	if len(vals) != 1 {
		return "", errors.New("give exactly one patient.identifier=" + SystemBSN + "|<BSN>")
	}
	system, value, ok := strings.Cut(vals[0], "|")
	if !ok || (system != SystemBSN && system != "urn:oid:"+OIDBSN) {
		return "", errors.New("patient.identifier must be " + SystemBSN + "|<BSN>")
	}
	if err := nl.ValidateBSN(value); err != nil {
		return "", errors.New("patient.identifier: not a valid BSN")
	}
	return value, nil
}

// studies queries the PACS for the patient's studies with their series and
// instances (QIDO-RS), keeping only what the PACS says is the patient's.
func (h *Holder) studies(ctx context.Context, b Backend, bsn string) ([]StudyView, error) {
	q := url.Values{"PatientID": {bsn}, "IssuerOfPatientID": {OIDBSN}, "limit": {fmt.Sprint(h.cfg.MaxStudies)}}
	found, err := h.qido(ctx, b, "studies?"+q.Encode())
	if err != nil {
		return nil, err
	}
	var views []StudyView
	for _, s := range found {
		if !ofPatient(s, bsn) {
			continue
		}
		views = append(views, StudyView{Study: s})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(views))
	sem := make(chan struct{}, defaultPACSParallel)
	for i := range views {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			uid := views[i].Study.String(TagStudyInstanceUID)
			series, err := h.qido(ctx, b, "studies/"+url.PathEscape(uid)+"/series")
			if err != nil {
				errs[i] = err
				return
			}
			for _, se := range series {
				ins, err := h.qido(ctx, b, "studies/"+url.PathEscape(uid)+"/series/"+url.PathEscape(se.String(TagSeriesInstanceUID))+"/instances")
				if err != nil {
					errs[i] = err
					return
				}
				views[i].Series = append(views[i].Series, SeriesView{Series: se, Instances: ins})
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return views, nil
}

// ofPatient reports whether a QIDO-RS answer is of the patient: PatientID
// the BSN, and IssuerOfPatientID, when given, the BSN's OID.
func ofPatient(d Dataset, bsn string) bool {
	issuer := d.String(TagIssuerOfPatientID)
	return d.String(TagPatientID) == bsn && (issuer == "" || issuer == OIDBSN)
}

// qido runs one QIDO-RS query at the PACS.
func (h *Holder) qido(ctx context.Context, b Backend, rel string) ([]Dataset, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(b.Base, "/")+"/"+rel, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	req.Header.Set("Accept", MediaDICOMJSON)
	res, err := b.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNoContent:
		return nil, nil // PS3.18: no matches
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, rel)
	default:
		return nil, fmt.Errorf("%w: QIDO-RS %s answered %d", ErrUpstream, rel, res.StatusCode)
	}
	var out []Dataset
	if err := json.NewDecoder(io.LimitReader(res.Body, h.cfg.MaxJSONBytes)).Decode(&out); err != nil {
		return nil, fmt.Errorf("%w: QIDO-RS %s: %w", ErrUpstream, rel, err)
	}
	return out, nil
}

// uidPattern is a DICOM UID as a path segment.
var uidPattern = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)

// ServeDICOMweb proxies a DICOMweb request under a participant's public
// DICOMweb base to its PACS: QIDO-RS searches for the token's patient
// (studies, a study's series and instances) and WADO-RS retrieval of a
// study of that patient, its series, instances, metadata, frames and bulk
// data. A study of another patient is refused (403); every retrieval is
// audited before its first byte is sent, and images are streamed.
func (h *Holder) ServeDICOMweb(w http.ResponseWriter, r *http.Request, tenant, path string) {
	segs := strings.Split(path, "/")
	inter := "read"
	if isSearch(segs) {
		inter = "search-type"
	}
	query := "DICOMweb " + path
	if r.URL.RawQuery != "" {
		query += "?" + r.URL.RawQuery
	}
	q, ok := h.authorize(w, r, tenant, inter, query)
	if !ok {
		return
	}
	if len(segs) == 0 || segs[0] != "studies" {
		h.refuse(w, q, fhir.Errorf(http.StatusBadRequest, "not-supported", "through the node DICOMweb serves studies/… only (QIDO-RS of the patient's studies, WADO-RS of one study)"))
		return
	}
	// Below the study the PACS judges the path itself.
	if len(segs) > 1 && (!uidPattern.MatchString(segs[1]) || len(segs[1]) > 64) {
		h.refuse(w, q, fhir.Errorf(http.StatusBadRequest, "value", "%q is not a DICOM UID", segs[1]))
		return
	}
	upstream := url.Values{}
	for k, v := range r.URL.Query() {
		upstream[k] = v
	}
	var resources []string
	if len(segs) == 1 {
		// A search of studies: always the token's patient only.
		for _, k := range []string{"PatientID", "00100020"} {
			for _, v := range upstream[k] {
				if v != q.bsn {
					h.refuse(w, q, forbidden("the search names another patient than the access token's"))
					return
				}
			}
			delete(upstream, k)
		}
		for _, k := range []string{"IssuerOfPatientID", "00100021"} {
			delete(upstream, k)
		}
		upstream.Set("PatientID", q.bsn)
		upstream.Set("IssuerOfPatientID", OIDBSN)
		if !h.permit(w, q) {
			return
		}
	} else {
		// Whose study it is (a QIDO-RS query at the PACS) and the patient's
		// consent are asked at the same time; a study of another patient is
		// refused as such whatever the consent.
		study := segs[1]
		decided := make(chan verdict, 1)
		go func() { decided <- h.decide(r.Context(), q) }()
		owner, err := h.studyOwner(r.Context(), q.backend, tenant, study)
		v := <-decided
		switch {
		case err != nil:
			h.refuse(w, q, upstreamOutcome(err))
			return
		case owner == nil:
			h.refuse(w, q, fhir.Errorf(http.StatusNotFound, "not-found", "no study %s at this participant", study))
			return
		case !ofPatient(owner, q.bsn):
			h.refuse(w, q, forbidden("study %s is not of the access token's patient", study))
			return
		}
		resources = []string{"ImagingStudy/" + study}
		q.checks = append(q.checks, "patient: the study is of the access token's patient (QIDO-RS PatientID, IssuerOfPatientID)")
		if !h.apply(w, q, v) {
			return
		}
	}
	target := strings.TrimSuffix(q.backend.Base, "/") + "/" + path
	if enc := upstream.Encode(); enc != "" {
		target += "?" + enc
	}
	h.forward(w, q, target, resources)
}

// studyOwner is the PACS's QIDO-RS answer for a study (its PatientID and
// IssuerOfPatientID), nil when the PACS holds no such study; an answer
// is kept StudyOwnerTTL.
func (h *Holder) studyOwner(ctx context.Context, b Backend, tenant, study string) (Dataset, error) {
	k := ownerKey{tenant, study}
	now := h.cfg.Now()
	if h.cfg.StudyOwnerTTL > 0 {
		if d, ok := h.owners.get(k, now); ok {
			return d, nil
		}
	}
	found, err := h.qido(ctx, b, "studies?"+url.Values{"StudyInstanceUID": {study}}.Encode())
	if err != nil || len(found) == 0 {
		return nil, err
	}
	d := Dataset{}
	for _, tag := range []string{TagPatientID, TagIssuerOfPatientID} {
		if a, ok := found[0][tag]; ok {
			d[tag] = a
		}
	}
	if h.cfg.StudyOwnerTTL > 0 {
		h.owners.put(k, d, now, now.Add(h.cfg.StudyOwnerTTL))
	}
	return d, nil
}

// isSearch tells a QIDO-RS path (studies, …/series, …/instances) from a
// WADO-RS one.
func isSearch(segs []string) bool {
	last := segs[len(segs)-1]
	return len(segs)%2 == 1 && (last == "studies" || last == "series" || last == "instances")
}

// forward sends the request to the PACS and hands its answer on: DICOM
// JSON rewritten to the node's URLs (and to the token's patient), anything
// else (DICOM files, frames, bulk data) streamed as it arrives. The audit
// record is committed before the answer starts.
func (h *Holder) forward(w http.ResponseWriter, q *request, target string, resources []string) {
	ctx := q.r.Context()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		h.refuse(w, q, fhir.Errorf(http.StatusBadRequest, "value", "malformed DICOMweb path"))
		return
	}
	if a := q.r.Header.Get("Accept"); a != "" {
		req.Header.Set("Accept", a)
	}
	res, err := q.backend.HTTP.Do(req)
	if err != nil {
		h.refuse(w, q, upstreamOutcome(fmt.Errorf("%w: %w", ErrUpstream, err)))
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		detail, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		h.log.Info("PACS refused a DICOMweb request", "participant", q.tenant, "status", res.StatusCode, "detail", string(detail))
		h.refuse(w, q, pacsStatus(res.StatusCode))
		return
	}
	ct := res.Header.Get("Content-Type")
	if isJSON(ct) {
		body, err := h.rewrite(res.Body, q)
		if err != nil {
			h.refuse(w, q, upstreamOutcome(err))
			return
		}
		if err := h.record(ctx, q, http.StatusOK, "", resources); err != nil {
			writeOutcome(w, auditUnavailable(err))
			return
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(body)
		return
	}
	if err := h.record(ctx, q, http.StatusOK, "", resources); err != nil {
		writeOutcome(w, auditUnavailable(err))
		return
	}
	w.Header().Set("Content-Type", ct)
	if cl := res.Header.Get("Content-Length"); cl != "" {
		w.Header().Set("Content-Length", cl)
	}
	w.WriteHeader(http.StatusOK)
	if err := stream(w, res.Body); err != nil {
		// The record says 200: what left is what was asked; the requester
		// sees a truncated body and retries.
		h.log.Warn("DICOMweb answer cut off", "participant", q.tenant, "err", err)
	}
}

// buffers are stream's copy buffers, reused across retrievals.
var buffers = sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}

// stream copies the PACS's answer to the requester in writes of up to
// copyBuffer bytes: the PACS's answer arrives in whatever pieces the
// socket holds, and every write to the requester is a TLS record (and,
// without a Content-Length, a chunk), so filling the buffer first keeps
// the records large. Nothing is held beyond one buffer.
func stream(w io.Writer, r io.Reader) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	for {
		n, err := io.ReadAtLeast(r, buf, len(buf))
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return err
		}
	}
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(strings.ToLower(mt))
	return mt == MediaDICOMJSON || mt == "application/json"
}

// rewrite reads a DICOM JSON answer, drops every dataset that names another
// patient than the token's, and turns URLs of the PACS into URLs of the
// node's DICOMweb base for the participant.
func (h *Holder) rewrite(body io.Reader, q *request) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(body, h.cfg.MaxJSONBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	if int64(len(raw)) > h.cfg.MaxJSONBytes {
		return nil, fmt.Errorf("%w: a DICOM JSON answer over %d bytes", ErrUpstream, h.cfg.MaxJSONBytes)
	}
	var sets []Dataset
	if err := json.Unmarshal(raw, &sets); err != nil {
		return nil, fmt.Errorf("%w: DICOM JSON: %w", ErrUpstream, err)
	}
	from, to := strings.TrimSuffix(q.backend.Base, "/"), h.cfg.DICOMwebBase(q.tenant)
	out := make([]Dataset, 0, len(sets))
	for _, d := range sets {
		if id := d.String(TagPatientID); id != "" && !ofPatient(d, q.bsn) {
			continue
		}
		for tag, a := range d {
			if strings.HasPrefix(a.BulkDataURI, from) {
				a.BulkDataURI = to + strings.TrimPrefix(a.BulkDataURI, from)
			}
			if a.VR == "UR" || a.VR == "UT" {
				for i, v := range a.Value {
					if s, ok := v.(string); ok && strings.HasPrefix(s, from) {
						a.Value[i] = to + strings.TrimPrefix(s, from)
					}
				}
			}
			d[tag] = a
		}
		out = append(out, d)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func forbidden(format string, args ...any) *fhir.Error {
	msg := fmt.Sprintf(format, args...)
	return &fhir.Error{Status: http.StatusForbidden, Cause: fmt.Errorf("%w: %s", ErrForbidden, msg),
		Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: msg}}}
}

// asOutcome is err as the requester sees it: its *fhir.Error, or an
// internal error that shows nothing of its cause.
func asOutcome(err error) *fhir.Error {
	if fe := fhir.AsError(err); fe != nil {
		return fe
	}
	return &fhir.Error{Status: http.StatusInternalServerError, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: "internal error"}}}
}

func upstreamOutcome(err error) *fhir.Error {
	if errors.Is(err, ErrNotFound) {
		return &fhir.Error{Status: http.StatusNotFound, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "not-found", Diagnostics: "no such study at this participant"}}}
	}
	return &fhir.Error{Status: http.StatusBadGateway, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "transient",
		Diagnostics: "the participant's PACS could not be queried"}}}
}

// pacsStatus translates the PACS's refusal of a forwarded request.
func pacsStatus(status int) *fhir.Error {
	switch status {
	case http.StatusNotFound:
		return fhir.Errorf(http.StatusNotFound, "not-found", "the PACS holds no such series, instance or resource")
	case http.StatusNotAcceptable:
		return fhir.Errorf(http.StatusNotAcceptable, "not-supported", "the PACS cannot answer in the media type asked (Accept)")
	case http.StatusBadRequest:
		return fhir.Errorf(http.StatusBadRequest, "invalid", "the PACS refused the request as malformed")
	case http.StatusNoContent:
		return fhir.Errorf(http.StatusNotFound, "not-found", "no matches")
	}
	return fhir.Errorf(http.StatusBadGateway, "transient", "the PACS answered %d", status)
}

func writeOutcome(w http.ResponseWriter, fe *fhir.Error) {
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	w.WriteHeader(fe.Status)
	_, _ = w.Write(fhir.OperationOutcome(fe.Issues...))
}

func auditUnavailable(err error) *fhir.Error {
	return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "transient",
		Diagnostics: "the audit log is unavailable; nothing was returned"}}}
}

// Studies counts the patient's studies in a participant's PACS (QIDO-RS),
// for announcing the holding at the referral index.
func (h *Holder) Studies(ctx context.Context, tenant, bsn string) (int, error) {
	b, ok := h.cfg.Backend(tenant)
	if !ok {
		return 0, ErrNoPACS
	}
	q := url.Values{"PatientID": {bsn}, "IssuerOfPatientID": {OIDBSN}, "limit": {fmt.Sprint(h.cfg.MaxStudies)}}
	found, err := h.qido(ctx, b, "studies?"+q.Encode())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range found {
		if ofPatient(s, bsn) {
			n++
		}
	}
	return n, nil
}
