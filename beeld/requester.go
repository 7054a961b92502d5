package beeld

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// Defaults of the requester side.
const (
	defaultMaxBundle   = 16 << 20
	defaultMaxInstance = 256 << 20
	defaultMaxStudy    = 1 << 30
)

// Directory resolves a partner's endpoint (the addressbook client).
type Directory interface {
	Endpoint(ctx context.Context, ura, payloadType, fhirVersion string) (string, error)
}

// RequesterConfig wires the requester side into a node.
type RequesterConfig struct {
	Directory Directory
	Parties   func(ura string) (*consult.Party, bool)
	// FacilityType is a participant's facility type code, stated in the
	// grant assertion (the holder's consent question needs it).
	FacilityType func(tenant string) string
	// Admit decides whether tenant may ask the holder at all (the
	// localization plateau agreed with it) and returns claims for the grant
	// assertion; the consult's own admission is reused. Optional.
	Admit func(ctx context.Context, tenant string, req consult.Request) (map[string]any, error)
	// Present builds the user part of the grant assertion for the
	// authentication plateau agreed with the holder.
	Present plateau.PresentFunc
	Audit   audit.Log
	Logger  *slog.Logger
	// MaxStudyBytes bounds one retrieved study.
	MaxStudyBytes int64
	// Faults is nil but in the module's own tests.
	Faults *faults.Set
}

// Requester is the requesting side for every participant of a node.
type Requester struct {
	cfg RequesterConfig
	log *slog.Logger
}

// NewRequester builds the requester side.
func NewRequester(cfg RequesterConfig) *Requester {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FacilityType == nil {
		cfg.FacilityType = func(string) string { return "" }
	}
	if cfg.MaxStudyBytes <= 0 {
		cfg.MaxStudyBytes = defaultMaxStudy
	}
	if cfg.Present == nil {
		var none *plateau.Enforcer
		cfg.Present = func(ctx context.Context, from, partner, aud string, c *plateau.Caller) (plateau.Presentation, error) {
			return none.Present(ctx, nil, from, partner, aud, c)
		}
	}
	return &Requester{cfg: cfg, log: cfg.Logger.With("component", "beeld")}
}

// Request is a participant system's request for a patient's images at a
// holder.
type Request struct {
	PatientBSN string          `json:"patient"`
	HolderURA  string          `json:"holder"`
	User       *plateau.Caller `json:"user"`
	// Study is the Study Instance UID to retrieve; empty: the first study the
	// holder lists. Retrieve false only looks the studies up.
	Study    string `json:"study,omitempty"`
	Retrieve bool   `json:"retrieve"`
}

// Result is what the lookup and the retrieval brought.
type Result struct {
	Holder string `json:"holder"`
	// Base is the holder's FHIR R4 base the search ran on.
	Base    string         `json:"base"`
	Studies []StudySummary `json:"studies"`
	// Bundle is the holder's searchset of ImagingStudy resources.
	Bundle json.RawMessage `json:"bundle"`
	// Retrieved is the study fetched over WADO-RS, when asked.
	Retrieved *Retrieval `json:"retrieved,omitempty"`
}

// StudySummary is one ImagingStudy as the holder listed it.
type StudySummary struct {
	UID         string   `json:"uid"`
	Description string   `json:"description,omitempty"`
	Started     string   `json:"started,omitempty"`
	Modalities  []string `json:"modalities,omitempty"`
	Series      int      `json:"series"`
	Instances   int      `json:"instances"`
	// Endpoint is the DICOMweb base the study is retrieved from.
	Endpoint string `json:"endpoint"`
	// SOPInstanceUIDs the ImagingStudy lists, sorted.
	SOPInstanceUIDs []string `json:"sopInstanceUids,omitempty"`
}

// Retrieval is a study received over WADO-RS, every file parsed.
type Retrieval struct {
	Study     string          `json:"study"`
	URL       string          `json:"url"`
	Instances []ReceivedImage `json:"instances"`
	Bytes     int64           `json:"bytes"`
	// Verified is true when every listed instance arrived, each a DICOM
	// file of this study and patient, and nothing else did.
	Verified bool `json:"verified"`
}

// ReceivedImage is one DICOM file of a retrieval.
type ReceivedImage struct {
	SOPInstanceUID string `json:"sopInstanceUid"`
	SOPClassUID    string `json:"sopClassUid"`
	SeriesUID      string `json:"seriesUid"`
	Bytes          int    `json:"bytes"`
	Rows           int    `json:"rows"`
	Columns        int    `json:"columns"`
}

// Lookup looks the patient's studies up at the holder (an R4 ImagingStudy
// search through the holder's node) and, when asked, retrieves one study
// over WADO-RS from the DICOMweb endpoint the ImagingStudy names, parsing
// every DICOM file received. Errors are *fhir.Error.
func (q *Requester) Lookup(ctx context.Context, tenant string, req Request) (Result, error) {
	party, ok := q.cfg.Parties(tenant)
	if !ok {
		return Result{}, fhir.Errorf(http.StatusNotFound, "not-found", "%s is not a participant of this node", tenant)
	}
	if err := nl.ValidateBSN(req.PatientBSN); err != nil {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "value", "patient: not a valid BSN")
	}
	if err := nl.ValidateURA(req.HolderURA); err != nil {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "value", "holder: %v", err)
	}
	if req.User == nil || !validCode(req.User.ID) || !validCode(req.User.Role) {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "required", "user.id (UZI number) and user.role (UZI role code) are required: the holder asks the patient's consent for this user")
	}
	if req.Study != "" && (!uidPattern.MatchString(req.Study) || len(req.Study) > 64) {
		return Result{}, fhir.Errorf(http.StatusBadRequest, "value", "study: not a DICOM UID")
	}
	var admitted map[string]any
	if q.cfg.Admit != nil {
		var err error
		if admitted, err = q.cfg.Admit(ctx, tenant, consult.Request{PatientBSN: req.PatientBSN, HolderURA: req.HolderURA, Application: Application, User: req.User}); err != nil {
			return Result{}, q.refused(ctx, tenant, party, req, err)
		}
	}
	base, err := q.cfg.Directory.Endpoint(ctx, req.HolderURA, PayloadImagingStudy, "4.0")
	if err != nil {
		return Result{}, lookupError("the holder's ImagingStudy endpoint", err)
	}
	base = strings.TrimSuffix(base, "/")
	bu, err := url.Parse(base)
	if err != nil || bu.Scheme != "https" || bu.Host == "" {
		return Result{}, holderError("the holder's ImagingStudy endpoint in the addressbook is not an https URL", err)
	}
	issuer, err := q.cfg.Directory.Endpoint(ctx, req.HolderURA, consult.PayloadAuthServer, "")
	if err != nil {
		return Result{}, lookupError("the holder's authorization server", err)
	}
	md, err := party.OAuth.Metadata(ctx, issuer)
	if err != nil {
		return Result{}, holderError("the holder's authorization server could not be reached", err)
	}
	pres, err := q.cfg.Present(ctx, tenant, req.HolderURA, md.TokenEndpoint, req.User)
	if err != nil {
		if r := plateau.AsRefusal(err); r != nil && errors.Is(err, plateau.ErrCaller) {
			return Result{}, &fhir.Error{Status: http.StatusUnprocessableEntity, Cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "security", Diagnostics: r.Description()}}}
		}
		return Result{}, holderError("the user's signed identity could not be obtained", err)
	}
	claims := map[string]any{}
	for k, v := range pres.Claims {
		claims[k] = v
	}
	if ft := q.cfg.FacilityType(tenant); ft != "" {
		claims[consult.AssertionRequesterType] = ft
	}
	for k, v := range admitted {
		claims[k] = v
	}
	claims[AssertionPatient] = req.PatientBSN
	tok, err := party.OAuth.Token(ctx, md.TokenEndpoint, oauth.TokenRequest{GrantType: consult.GrantTypeJWT,
		Scope: []string{Application}, Resource: base, AssertionClaims: claims, UserIdentity: pres.UserIdentity})
	if err != nil {
		var refused *oauth.ErrorResponse
		if errors.As(err, &refused) {
			return Result{}, holderError(fmt.Sprintf("the holder refused the token: %s: %s", refused.Code, refused.Description), err)
		}
		return Result{}, holderError("no token from the holder's authorization server", err)
	}
	res := Result{Holder: req.HolderURA, Base: base}
	search := base + "/ImagingStudy?" + url.Values{"patient.identifier": {SystemBSN + "|" + req.PatientBSN}}.Encode()
	status, body, err := get(ctx, party.HTTP, search, tok.AccessToken, "application/fhir+json", defaultMaxBundle)
	if err != nil {
		return Result{}, holderError("the holder's ImagingStudy search failed", err)
	}
	if status != http.StatusOK {
		return Result{}, q.holderRefused(ctx, tenant, party, req, status, body)
	}
	res.Bundle = body
	if res.Studies, err = summaries(body, req.PatientBSN); err != nil {
		return Result{}, holderError("the holder's answer is not an ImagingStudy searchset", err)
	}
	if req.Retrieve {
		if res.Retrieved, err = q.retrieve(ctx, party, tok.AccessToken, bu, req, res.Studies); err != nil {
			_ = q.audit(ctx, tenant, party, req, http.StatusBadGateway, err.Error(), res)
			return Result{}, err
		}
	}
	if err := q.audit(ctx, tenant, party, req, http.StatusOK, "", res); err != nil {
		return Result{}, &fhir.Error{Status: http.StatusServiceUnavailable, Cause: err, Issues: []fhir.Issue{{Severity: "error",
			Code: "transient", Diagnostics: "the audit log is unavailable; nothing was returned"}}}
	}
	return res, nil
}

// retrieve fetches one study over WADO-RS from the endpoint its
// ImagingStudy names, which must be on the holder's node (the token goes
// nowhere else), and checks every file against the listing.
func (q *Requester) retrieve(ctx context.Context, party *consult.Party, token string, base *url.URL, req Request, studies []StudySummary) (*Retrieval, error) {
	if len(studies) == 0 {
		return nil, &fhir.Error{Status: http.StatusNotFound, Issues: []fhir.Issue{{Severity: "error", Code: "not-found",
			Diagnostics: "the holder lists no studies of this patient"}}}
	}
	st := studies[0]
	if req.Study != "" {
		i := slices.IndexFunc(studies, func(s StudySummary) bool { return s.UID == req.Study })
		if i < 0 {
			return nil, fhir.Errorf(http.StatusNotFound, "not-found", "the holder lists no study %s of this patient", req.Study)
		}
		st = studies[i]
	}
	eu, err := url.Parse(st.Endpoint)
	if err != nil || eu.Scheme != "https" || eu.Host != base.Host {
		return nil, holderError("the study's DICOMweb endpoint is not on the holder's node", err)
	}
	target := strings.TrimSuffix(st.Endpoint, "/") + "/studies/" + st.UID
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, holderError("malformed DICOMweb endpoint", err)
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	hr.Header.Set("Accept", MediaStudy+"; transfer-syntax=*")
	resp, err := party.HTTP.Do(hr)
	if err != nil {
		return nil, holderError("the WADO-RS retrieval failed", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		// A refusal is passed on as one, as for the search
		// (holderRefused); any other answer is the holder's failure.
		status, code := http.StatusBadGateway, "exception"
		if resp.StatusCode == http.StatusForbidden {
			status, code = http.StatusForbidden, "forbidden"
		}
		return nil, &fhir.Error{Status: status, Issues: []fhir.Issue{{Severity: "error", Code: code,
			Diagnostics: fmt.Sprintf("the holder answered the WADO-RS retrieval with %d: %s", resp.StatusCode, outcomeText(body))}}}
	}
	out := &Retrieval{Study: st.UID, URL: target}
	budget := q.cfg.MaxStudyBytes
	err = ReadMultipart(resp.Header.Get("Content-Type"), resp.Body, func(part io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(part, min(budget, defaultMaxInstance)+1))
		if err != nil {
			return err
		}
		if int64(len(b)) > budget || len(b) > defaultMaxInstance {
			return errors.New("the study exceeds the retrieval bound")
		}
		budget -= int64(len(b))
		info, err := ParseInstance(b)
		if err != nil {
			return err
		}
		// An instance of another study or patient than asked is the
		// holder's error: none of the retrieval reaches the system.
		if info.StudyInstanceUID != st.UID || info.PatientID != req.PatientBSN && !q.cfg.Faults.Has(faults.ImagingOtherPatientPassed) {
			return fmt.Errorf("instance %s is of study %s, patient %s: not what was asked", info.SOPInstanceUID, info.StudyInstanceUID, info.PatientID)
		}
		out.Instances = append(out.Instances, ReceivedImage{SOPInstanceUID: info.SOPInstanceUID, SOPClassUID: info.SOPClassUID,
			SeriesUID: info.SeriesUID, Bytes: len(b), Rows: info.Rows, Columns: info.Columns})
		out.Bytes += int64(len(b))
		return nil
	})
	if err != nil {
		return nil, holderError("the WADO-RS answer could not be read as DICOM: "+err.Error(), err)
	}
	var got []string
	for _, in := range out.Instances {
		got = append(got, in.SOPInstanceUID)
	}
	sort.Strings(got)
	out.Verified = len(got) > 0 && (len(st.SOPInstanceUIDs) == 0 || slices.Equal(got, st.SOPInstanceUIDs))
	if !out.Verified {
		return out, holderError(fmt.Sprintf("the study arrived with %d instances, the ImagingStudy lists %d", len(got), len(st.SOPInstanceUIDs)), nil)
	}
	return out, nil
}

// summaries reads an ImagingStudy searchset; a study of another patient in
// the answer is an error (the holder answered wrong).
func summaries(body []byte, bsn string) ([]StudySummary, error) {
	var b struct {
		ResourceType string
		Type         string
		Entry        []struct {
			Resource struct {
				ResourceType string
				ID           string
				Description  string
				Started      string
				Subject      struct {
					Identifier struct{ System, Value string }
				}
				Modality  []struct{ Code string }
				Contained []struct {
					ResourceType, ID, Address string
					ConnectionType            struct{ Code string }
				}
				Endpoint []struct{ Reference string }
				Series   []struct {
					UID      string
					Instance []struct{ UID string }
				}
				NumberOfInstances int
			}
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, err
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" {
		return nil, errors.New("not a searchset Bundle")
	}
	var out []StudySummary
	for _, e := range b.Entry {
		r := e.Resource
		if r.ResourceType != "ImagingStudy" {
			continue
		}
		if r.Subject.Identifier.Value != bsn {
			return nil, fmt.Errorf("ImagingStudy %s is of another patient", r.ID)
		}
		s := StudySummary{UID: r.ID, Description: r.Description, Started: r.Started, Series: len(r.Series), Instances: r.NumberOfInstances}
		for _, m := range r.Modality {
			s.Modalities = append(s.Modalities, m.Code)
		}
		for _, ep := range r.Endpoint {
			for _, c := range r.Contained {
				if "#"+c.ID == ep.Reference && c.ResourceType == "Endpoint" && c.ConnectionType.Code == ConnectionWADORS {
					s.Endpoint = c.Address
				}
			}
		}
		for _, se := range r.Series {
			for _, in := range se.Instance {
				s.SOPInstanceUIDs = append(s.SOPInstanceUIDs, in.UID)
			}
		}
		sort.Strings(s.SOPInstanceUIDs)
		out = append(out, s)
	}
	return out, nil
}

func get(ctx context.Context, hc *http.Client, u, token, accept string, limit int64) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", accept)
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return res.StatusCode, nil, err
	}
	if int64(len(body)) > limit {
		return res.StatusCode, nil, fmt.Errorf("answer over %d bytes", limit)
	}
	return res.StatusCode, body, nil
}

// holderRefused passes a holder's refusal on with its reason.
func (q *Requester) holderRefused(ctx context.Context, tenant string, party *consult.Party, req Request, status int, body []byte) error {
	text := outcomeText(body)
	_ = q.audit(ctx, tenant, party, req, status, text, Result{})
	code := http.StatusBadGateway
	if status == http.StatusForbidden {
		code = http.StatusForbidden
	}
	return &fhir.Error{Status: code, Issues: []fhir.Issue{{Severity: "error", Code: "forbidden",
		Diagnostics: fmt.Sprintf("the holder answered %d: %s", status, text)}}}
}

// refused audits a request the requester side does not send.
func (q *Requester) refused(ctx context.Context, tenant string, party *consult.Party, req Request, err error) error {
	r := plateau.AsRefusal(err)
	if r == nil {
		return err
	}
	fe := r.FHIRError()
	if aerr := q.audit(ctx, tenant, party, req, fe.Status, r.Description(), Result{}); aerr != nil {
		return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: aerr, Issues: []fhir.Issue{{Severity: "error",
			Code: "transient", Diagnostics: "the audit log is unavailable; nothing was done"}}}
	}
	return fe
}

func (q *Requester) audit(ctx context.Context, tenant string, party *consult.Party, req Request, status int, text string, res Result) error {
	if q.cfg.Audit == nil {
		return nil
	}
	rec := audit.Record{Action: audit.ActionRead, Type: "consult", Interaction: "imaging", Outcome: status, OutcomeText: text,
		Tenant: tenant, ActorURA: tenant, ActorSystem: party.SystemUZI, PurposeOfUse: "TREAT", Patient: req.PatientBSN,
		Types: []string{"ImagingStudy"}, AuthzProtocol: "Twiin Direct Pull (Beeldbeschikbaarheid); RFC 7523 jwt-bearer with RFC 8707 resource",
		Query: fmt.Sprintf("ImagingStudy at %s (%d studies)", req.HolderURA, len(res.Studies))}
	if req.User != nil {
		rec.ActorUser, rec.ActorRole = req.User.ID, req.User.Role
	}
	for _, s := range res.Studies {
		rec.Resources = append(rec.Resources, "ImagingStudy/"+s.UID)
	}
	if res.Retrieved != nil {
		rec.Query += fmt.Sprintf("; WADO-RS study %s: %d instances, %d bytes", res.Retrieved.Study, len(res.Retrieved.Instances), res.Retrieved.Bytes)
	}
	return q.cfg.Audit.Append(ctx, rec)
}

// outcomeText is the first diagnostics of an OperationOutcome, or the
// body's start.
func outcomeText(body []byte) string {
	var oo struct {
		ResourceType string
		Issue        []struct{ Diagnostics string }
	}
	if json.Unmarshal(body, &oo) == nil && oo.ResourceType == "OperationOutcome" && len(oo.Issue) > 0 {
		return oo.Issue[0].Diagnostics
	}
	body = bytes.TrimSpace(body)
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}

// lookupError tells a holder the addressbook does not list (422) from an
// addressbook that cannot be asked (502).
func lookupError(what string, err error) error {
	if errors.Is(err, addressbook.ErrNotFound) {
		return &fhir.Error{Status: http.StatusUnprocessableEntity, Cause: err,
			Issues: []fhir.Issue{{Severity: "error", Code: "not-found", Diagnostics: what + " is not in the addressbook"}}}
	}
	return holderError(what+" could not be looked up: the addressbook cannot be reached", err)
}

func holderError(msg string, cause error) error {
	if cause == nil {
		cause = errors.New(msg)
	}
	if fe := fhir.AsError(cause); fe != nil {
		return fe
	}
	return &fhir.Error{Status: http.StatusBadGateway, Cause: cause, Issues: []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: msg}}}
}
