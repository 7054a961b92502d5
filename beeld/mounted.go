package beeld

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/careapp/hosted"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

// mounted is Beeldbeschikbaarheid on one node: the holder side for
// participants with a PACS, the requester side for all.
type mounted struct {
	host      hosted.Host
	backends  map[string]Backend
	holder    *Holder
	requester *Requester
}

// r4Base is the public FHIR R4 base of a participant.
func (m *mounted) r4Base(tenant string) string { return m.host.PublicURL() + "/fhir/r4/" + tenant }

// dicomwebBase is the public DICOMweb base of a participant.
func (m *mounted) dicomwebBase(tenant string) string {
	return m.host.PublicURL() + "/dicomweb/" + tenant
}

// admit judges an imaging request against the partner's agreement:
// authentication plateau, the beeld policy for the user's role, and the
// generic functions' access checks, as a FHIR data request is judged.
func (m *mounted) admit(ctx context.Context, tok *oauth.AccessToken, a Access) error {
	authn, user, role := plateau.TokenUser(tok.Claims)
	params := a.Params
	if a.Interaction == "read" {
		params = nil // a retrieval names no search parameters
	}
	err := m.host.CheckAccess(ctx, plateau.AccessContext{PartnerURA: tok.Subject, Authenticated: authn,
		UserID: user, UserRole: role, Application: Application, Interaction: a.Interaction, ResourceType: "ImagingStudy",
		Params: policyParams(params), Patient: a.Patient, Tenant: a.Tenant, DirectPull: true, TLS: a.TLS, Token: tok.Claims})
	if r := plateau.AsRefusal(err); r != nil {
		return r.FHIRError()
	}
	return err
}

// policyParams are the search parameters the beeld policy judges: the
// ImagingStudy search's patient, not DICOMweb's own query keys.
func policyParams(p url.Values) url.Values {
	out := url.Values{}
	if v, ok := p["patient.identifier"]; ok {
		out["patient.identifier"] = v
	}
	return out
}

// PublicRoutes are the ImagingStudy search under the participants' FHIR
// R4 base and the DICOMweb proxy.
func (m *mounted) PublicRoutes() []careapp.Route {
	return []careapp.Route{
		{Pattern: routeImagingStudy, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.holder.ServeImagingStudies(w, r, r.PathValue("ura"))
		})},
		{Pattern: routeDICOMweb, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.holder.ServeDICOMweb(w, r, r.PathValue("ura"), r.PathValue("path"))
		})},
	}
}

// Endpoints are a participant's imaging endpoints for its addressbook
// entry: the ImagingStudy search (FHIR R4) and the DICOMweb base, when it
// has a PACS.
func (m *mounted) Endpoints(ura string) []addressbook.EndpointSpec {
	if _, ok := m.backends[ura]; !ok {
		return nil
	}
	return []addressbook.EndpointSpec{
		{ID: "ep-" + ura + "-imagingstudy", PayloadType: PayloadImagingStudy, Address: m.r4Base(ura), FHIRVersion: "4.0"},
		{ID: "ep-" + ura + "-dicomweb", PayloadType: PayloadDICOMweb, Address: m.dicomwebBase(ura), ConnectionType: addressbook.ConnectionTypeDICOMWADORS},
	}
}

// HandlesGrant reports whether a token request is for an imaging token.
func (m *mounted) HandlesGrant(req oauth.GrantRequest) bool { return Handles(req) }

// ResolveGrant decides an imaging token request (Holder.ResolveGrant).
func (m *mounted) ResolveGrant(ctx context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	return m.holder.ResolveGrant(ctx, req)
}

// GrantProtocol names the exchange in the token request's audit record.
func (m *mounted) GrantProtocol() string {
	return "Twiin Direct Pull (Beeldbeschikbaarheid); RFC 8707 resource"
}

// InternalRoutes are the internal API of Beeldbeschikbaarheid: a lookup
// (and retrieval) at one holder, announcing holdings at the referral
// index, and the lookup at every holder the index names.
func (m *mounted) InternalRoutes() []careapp.Route {
	return []careapp.Route{
		{Pattern: "POST /internal/imaging", Handler: m.host.Internal(m.lookup)},
		{Pattern: "POST /internal/imaging/holdings", Handler: m.host.Internal(m.announce)},
		{Pattern: "POST /internal/imaging/indexed-pull", Handler: m.host.Internal(m.indexed)},
	}
}

// lookup serves POST /internal/imaging: a participant's system looks a
// patient's images up at a holder and retrieves a study.
func (m *mounted) lookup(w http.ResponseWriter, r *http.Request, c hosted.Caller) {
	var req Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body",
			`expected JSON {"patient": BSN, "holder": URA, "user": {"id": UZI, "role": role code}, "retrieve": true, "study": UID (optional)}`)
		return
	}
	start := time.Now()
	res, err := m.requester.Lookup(r.Context(), c.URA, req)
	m.host.Exchange(Application, careapp.DirectPull, "requester", err, time.Since(start))
	if err != nil {
		m.host.WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// HoldingsRequest is a participant system's announcement that its PACS
// holds studies of a patient.
type HoldingsRequest struct {
	Patient string `json:"patient"`
}

// IndexedRequest asks for a patient's images at every holder the
// referral index names.
type IndexedRequest struct {
	Patient  string          `json:"patient"`
	User     *plateau.Caller `json:"user"`
	Retrieve bool            `json:"retrieve"`
}

// Indexed is the answer: per holder the index named, what its lookup (and
// retrieval) brought, or why not.
type Indexed struct {
	Patient string          `json:"patient"`
	Holders []HolderImaging `json:"holders"`
}

// HolderImaging is one holder of an Indexed answer.
type HolderImaging struct {
	URA    string  `json:"ura"`
	Result *Result `json:"result,omitempty"`
	Error  string  `json:"error,omitempty"`
	Status int     `json:"status"`
}

// announce serves POST /internal/imaging/holdings: the participant's
// system (its PACS or RIS, after a study is stored) announces that the
// participant holds images of a patient; the node checks the PACS holds
// studies of the patient and registers the holding at the referral index
// (care context imaging), so that others can find it.
func (m *mounted) announce(w http.ResponseWriter, r *http.Request, c hosted.Caller) {
	var req HoldingsRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil || nl.ValidateBSN(req.Patient) != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN} with a valid BSN`)
		return
	}
	if p, _ := m.host.Participant(c.URA); !p.Indexed {
		writeProblem(w, http.StatusNotImplemented, "no-localization", hosted.ErrNoIndex.Error())
		return
	}
	count, err := m.holder.Studies(r.Context(), c.URA, req.Patient)
	switch {
	case errors.Is(err, ErrNoPACS):
		writeProblem(w, http.StatusConflict, "no-pacs", "this participant has no PACS configured (participants[].pacs.url)")
		return
	case err != nil:
		m.host.Logger().Warn("PACS query failed", "participant", c.URA, "err", err)
		writeProblem(w, http.StatusBadGateway, "pacs-unavailable", "the PACS could not be queried")
		return
	case count == 0:
		writeProblem(w, http.StatusNotFound, "no-studies", "the PACS holds no studies of this patient")
		return
	}
	rec := audit.Record{Action: audit.ActionCreate, Interaction: "register", Type: "localization", Tenant: c.URA, ActorURA: c.URA,
		ActorSystem: c.SystemUZI, Address: r.RemoteAddr, Patient: req.Patient, Outcome: http.StatusOK,
		Query: fmt.Sprintf("imaging holding (%d studies) at the referral index", count)}
	err = m.host.Register(r.Context(), c.URA, req.Patient, Application)
	if err != nil {
		rec.Outcome, rec.OutcomeText = http.StatusBadGateway, "referral index unavailable"
	}
	if aerr := m.host.Audit().Append(r.Context(), rec); aerr != nil {
		writeProblem(w, http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable")
		return
	}
	if err != nil {
		m.host.Logger().Warn("registration at the referral index failed", "participant", c.URA, "err", err)
		writeProblem(w, http.StatusBadGateway, "localization-failed", "the referral index could not be reached")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"patient": req.Patient, "studies": count, "registered": true})
}

// indexed serves POST /internal/imaging/indexed-pull: the referral index
// names the organisations holding images of the patient (each
// consent-filtered), then each is asked as POST /internal/imaging asks one.
func (m *mounted) indexed(w http.ResponseWriter, r *http.Request, c hosted.Caller) {
	var req IndexedRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil || req.User == nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN, "user": {"id": UZI, "role": role code}, "retrieve": true}`)
		return
	}
	holders, err := m.host.Localize(r.Context(), c, hosted.LocalizeRequest{Patient: req.Patient, Role: req.User.Role, UZI: req.User.ID,
		Application: Application}, r.RemoteAddr)
	if err != nil {
		var p *hosted.Problem
		if errors.As(err, &p) {
			writeProblem(w, p.Status, p.Type, p.Detail)
			return
		}
		writeProblem(w, http.StatusBadGateway, "localization-failed", "the referral index could not be reached")
		return
	}
	out := Indexed{Patient: req.Patient, Holders: []HolderImaging{}}
	for _, h := range holders {
		if h == c.URA {
			continue // its own images it has
		}
		res, err := m.requester.Lookup(r.Context(), c.URA, Request{PatientBSN: req.Patient, HolderURA: h,
			User: req.User, Retrieve: req.Retrieve})
		hi := HolderImaging{URA: h, Status: http.StatusOK}
		if err != nil {
			hi.Status, hi.Error = http.StatusBadGateway, err.Error()
			if fe := fhir.AsError(err); fe != nil {
				hi.Status = fe.Status
			}
		} else {
			hi.Result = &res
		}
		out.Holders = append(out.Holders, hi)
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeProblem answers with RFC 9457 problem details, as the node's
// internal API does.
func writeProblem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "https://schakel.dev/problems/" + typ, "title": http.StatusText(status), "status": status, "detail": detail,
	})
}
