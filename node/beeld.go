package node

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/localization"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

// PACSConfig is a participant's PACS, for Beeldbeschikbaarheid: the node
// answers ImagingStudy searches from it (QIDO-RS) and proxies its
// DICOMweb (QIDO-RS, WADO-RS) to partners.
type PACSConfig struct {
	// URL is the PACS's DICOMweb base: QIDO-RS and WADO-RS live under it
	// (https, or http on a private network).
	URL string `koanf:"url"`
	// CAFiles verify the PACS's server certificate (system roots when empty).
	CAFiles []string `koanf:"cafiles"`
	// Timeout bounds the wait for the PACS's answer to start (default 30s);
	// images then stream without a bound.
	Timeout time.Duration `koanf:"timeout"`
}

// imagingService is the node's Beeldbeschikbaarheid: the holder side for
// participants with a PACS, the requester side for all.
type imagingService struct {
	backends  map[string]beeld.Backend
	holder    *beeld.Holder
	requester *beeld.Requester
}

// validatePACS checks participants[].pacs.
func (c *Config) validatePACS() []error {
	var errs []error
	for i, p := range c.Participants {
		if p.PACS.URL == "" {
			continue
		}
		u, err := url.Parse(p.PACS.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("participants[%d].pacs.url must be an absolute http(s) URL without query", i))
		}
		if p.PACS.Timeout < 0 {
			errs = append(errs, fmt.Errorf("participants[%d].pacs.timeout must not be negative", i))
		}
	}
	return errs
}

// r4Base is the public FHIR R4 base of a participant.
func (n *Node) r4Base(tenant string) string {
	return strings.TrimSuffix(n.publicURL, "/") + "/fhir/r4/" + tenant
}

// dicomwebBase is the public DICOMweb base of a participant.
func (n *Node) dicomwebBase(tenant string) string {
	return strings.TrimSuffix(n.publicURL, "/") + "/dicomweb/" + tenant
}

// setupImaging builds the PACS clients and both sides of Beeldbeschikbaarheid.
func (n *Node) setupImaging() error {
	im := &imagingService{backends: map[string]beeld.Backend{}}
	for i, p := range n.cfg.Participants {
		if p.PACS.URL == "" {
			continue
		}
		var roots *x509.CertPool
		if len(p.PACS.CAFiles) > 0 {
			var err error
			if roots, err = pki.LoadCertPool(p.PACS.CAFiles...); err != nil {
				return fmt.Errorf("participants[%d].pacs.cafiles: %w", i, err)
			}
		}
		timeout := p.PACS.Timeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		tr := &http.Transport{TLSClientConfig: pki.BackendClientTLSConfig(roots), MaxIdleConnsPerHost: 16,
			ResponseHeaderTimeout: timeout, DialContext: (&net.Dialer{Timeout: timeout}).DialContext, IdleConnTimeout: 90 * time.Second}
		im.backends[p.URA] = beeld.Backend{Base: strings.TrimSuffix(p.PACS.URL, "/"), HTTP: &http.Client{Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	}
	tenants := func() []string {
		var out []string
		for _, p := range n.parts.all() {
			out = append(out, p.URA)
		}
		return out
	}
	facility := func(ura string) string {
		if p, ok := n.parts.get(ura); ok {
			return p.FacilityType
		}
		return ""
	}
	im.holder = beeld.NewHolder(beeld.HolderConfig{
		Backend: func(t string) (beeld.Backend, bool) {
			b, ok := im.backends[t]
			return b, ok && n.parts.has(t)
		},
		Tenants: tenants, FHIRBase: n.r4Base, DICOMwebBase: n.dicomwebBase,
		Verify:  func(r *http.Request, aud string) (*oauth.AccessToken, error) { return n.verify(r, aud) },
		PeerURA: func(r *http.Request) string { u, _ := n.trust.PeerURA(r.TLS); return u },
		Admit:   n.admitImaging,
		Identify: func(ctx context.Context, tenant, partner, bsn string) error {
			return n.identifyHeld(ctx, tenant, partner, bsn)
		},
		FacilityType:  facility,
		ConsentSource: func(q consent.Question) (consent.Checker, string) { return n.observedConsentFor(q.RequesterURA) },
		Audit:         n.auditAppender(), Logger: n.log,
	})
	im.requester = beeld.NewRequester(beeld.RequesterConfig{
		Directory: n.dir,
		Parties: func(ura string) (*consult.Party, bool) {
			p, ok := n.parts.get(ura)
			if !ok {
				return nil, false
			}
			return p.party, true
		},
		FacilityType: facility, Admit: n.admitConsult, Present: n.present,
		Audit: n.auditAppender(), Logger: n.log,
	})
	n.imaging = im
	return nil
}

// admitImaging judges an imaging request against the partner's agreement:
// authentication plateau, the beeld policy for the user's role, and the
// generic functions' access checks, as a FHIR data request is judged.
func (n *Node) admitImaging(ctx context.Context, tok *oauth.AccessToken, a beeld.Access) error {
	authn, user, role := plateau.TokenUser(tok.Claims)
	params := a.Params
	if a.Interaction == "read" {
		params = nil // a retrieval names no search parameters
	}
	err := n.plateaus.CheckAccess(ctx, plateau.AccessContext{PartnerURA: tok.Subject, Authenticated: authn,
		UserID: user, UserRole: role, Application: beeld.Application, Interaction: a.Interaction, ResourceType: "ImagingStudy",
		Params: imagingParams(params), Patient: a.Patient, Tenant: a.Tenant, DirectPull: true, TLS: a.TLS, Token: tok.Claims})
	if r := plateau.AsRefusal(err); r != nil {
		return r.FHIRError()
	}
	return err
}

// imagingParams are the search parameters the beeld policy judges: the
// ImagingStudy search's patient, not DICOMweb's own query keys.
func imagingParams(p url.Values) url.Values {
	out := url.Values{}
	if v, ok := p["patient.identifier"]; ok {
		out["patient.identifier"] = v
	}
	return out
}

// imagingRoutes mounts the public routes of Beeldbeschikbaarheid: the
// ImagingStudy search under /fhir/r4/{ura} and the DICOMweb proxy under
// /dicomweb/{ura}.
func (n *Node) imagingRoutes(mux *http.ServeMux) { n.imaging.holder.Routes(mux) }

// imagingEndpoints are a participant's imaging endpoints for its
// addressbook entry: the ImagingStudy search (FHIR R4) and the DICOMweb
// base, when it has a PACS.
func (n *Node) imagingEndpoints(ura string) []addressbook.EndpointSpec {
	if _, ok := n.imaging.backends[ura]; !ok {
		return nil
	}
	return []addressbook.EndpointSpec{
		{ID: "ep-" + ura + "-imagingstudy", PayloadType: beeld.PayloadImagingStudy, Address: n.r4Base(ura), FHIRVersion: "4.0"},
		{ID: "ep-" + ura + "-dicomweb", PayloadType: beeld.PayloadDICOMweb, Address: n.dicomwebBase(ura), ConnectionType: addressbook.ConnectionTypeDICOMWADORS},
	}
}

// imagingInternal mounts POST /internal/imaging: a participant's system
// looks a patient's images up at a holder and retrieves a study.
func (n *Node) imagingInternal(mux *http.ServeMux) {
	n.imagingIndexRoutes(mux)
	mux.Handle("POST /internal/imaging", n.authInternal(func(w http.ResponseWriter, r *http.Request, p *participant) {
		var req beeld.Request
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			writeProblem(w, http.StatusBadRequest, "invalid-body",
				`expected JSON {"patient": BSN, "holder": URA, "user": {"id": UZI, "role": role code}, "retrieve": true, "study": UID (optional)}`)
			return
		}
		start := time.Now()
		res, err := n.imaging.requester.Lookup(r.Context(), p.URA, req)
		n.metrics.exchange(beeld.Application, patternDirectPull, roleRequester, err)
		if err != nil {
			n.internalError(w, err)
			return
		}
		n.metrics.exchangeTook(beeld.Application, patternDirectPull, roleRequester, time.Since(start))
		writeJSON(w, http.StatusOK, res)
	}))
}

// careContextImaging is imaging at the referral index.
var careContextImaging = index.Coding{System: beeld.CareContextSystem, Code: beeld.CareContextCode}

// careContextFor is the referral index's care context of a care application.
func careContextFor(app string) index.Coding {
	if app == beeld.Application {
		return careContextImaging
	}
	return careContextBgZ
}

// HoldingsRequest is a participant system's announcement that its PACS
// holds studies of a patient.
type HoldingsRequest struct {
	Patient string `json:"patient"`
}

// IndexedImagingRequest asks for a patient's images at every holder the
// referral index names.
type IndexedImagingRequest struct {
	Patient  string          `json:"patient"`
	User     *plateau.Caller `json:"user"`
	Retrieve bool            `json:"retrieve"`
}

// IndexedImaging is the answer: per holder the index named, what its
// lookup (and retrieval) brought, or why not.
type IndexedImaging struct {
	Patient string          `json:"patient"`
	Holders []HolderImaging `json:"holders"`
}

// HolderImaging is one holder of an IndexedImaging.
type HolderImaging struct {
	URA    string        `json:"ura"`
	Result *beeld.Result `json:"result,omitempty"`
	Error  string        `json:"error,omitempty"`
	Status int           `json:"status"`
}

// imagingIndexRoutes mounts the imaging routes of the referral index:
// announcing holdings, and the lookup at every holder it names.
func (n *Node) imagingIndexRoutes(mux *http.ServeMux) {
	mux.Handle("POST /internal/imaging/holdings", n.authInternal(n.announceImaging))
	mux.Handle("POST /internal/imaging/indexed-pull", n.authInternal(n.indexedImaging))
}

// announceImaging serves POST /internal/imaging/holdings: the participant's
// system (its PACS or RIS, after a study is stored) announces that the
// participant holds images of a patient; the node checks the PACS holds
// studies of the patient and registers the holding at the referral index
// (care context imaging), so that others can find it.
func (n *Node) announceImaging(w http.ResponseWriter, r *http.Request, p *participant) {
	var req HoldingsRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil || nl.ValidateBSN(req.Patient) != nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN} with a valid BSN`)
		return
	}
	if p.index == nil {
		writeProblem(w, http.StatusNotImplemented, "no-localization", "this node has no referral index configured")
		return
	}
	count, err := n.imaging.holder.Studies(r.Context(), p.URA, req.Patient)
	switch {
	case errors.Is(err, beeld.ErrNoPACS):
		writeProblem(w, http.StatusConflict, "no-pacs", "this participant has no PACS configured (participants[].pacs.url)")
		return
	case err != nil:
		n.log.Warn("PACS query failed", "participant", p.URA, "err", err)
		writeProblem(w, http.StatusBadGateway, "pacs-unavailable", "the PACS could not be queried")
		return
	case count == 0:
		writeProblem(w, http.StatusNotFound, "no-studies", "the PACS holds no studies of this patient")
		return
	}
	rec := audit.Record{Action: audit.ActionCreate, Interaction: "register", Type: "localization", Tenant: p.URA, ActorURA: p.URA,
		ActorSystem: p.SystemUZI, Address: r.RemoteAddr, Patient: req.Patient, Outcome: http.StatusOK,
		Query: fmt.Sprintf("imaging holding (%d studies) at the referral index", count)}
	_, _, err = p.index.Register(r.Context(), localization.Registration{BSN: req.Patient, CareContext: careContextImaging})
	if err != nil {
		rec.Outcome, rec.OutcomeText = http.StatusBadGateway, "referral index unavailable"
	}
	if aerr := n.auditLog.Append(r.Context(), rec); aerr != nil {
		writeProblem(w, http.StatusServiceUnavailable, "audit-unavailable", "the audit log is unavailable")
		return
	}
	if err != nil {
		n.log.Warn("registration at the referral index failed", "participant", p.URA, "err", err)
		writeProblem(w, http.StatusBadGateway, "localization-failed", "the referral index could not be reached")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"patient": req.Patient, "studies": count, "registered": true})
}

// indexedImaging serves POST /internal/imaging/indexed-pull: the referral
// index names the organisations holding images of the patient (each
// consent-filtered), then each is asked as POST /internal/imaging asks one.
func (n *Node) indexedImaging(w http.ResponseWriter, r *http.Request, p *participant) {
	var req IndexedImagingRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil || req.User == nil {
		writeProblem(w, http.StatusBadRequest, "invalid-body", `expected JSON {"patient": BSN, "user": {"id": UZI, "role": role code}, "retrieve": true}`)
		return
	}
	loc, lerr := n.runLocalize(r.Context(), p, LocalizeRequest{Patient: req.Patient, Role: req.User.Role, UZI: req.User.ID,
		Application: beeld.Application}, r.RemoteAddr)
	if lerr != nil {
		writeProblem(w, lerr.status, lerr.typ, lerr.detail)
		return
	}
	out := IndexedImaging{Patient: req.Patient, Holders: []HolderImaging{}}
	for _, h := range loc.Holders {
		if h.URA == p.URA {
			continue // its own images it has
		}
		res, err := n.imaging.requester.Lookup(r.Context(), p.URA, beeld.Request{PatientBSN: req.Patient, HolderURA: h.URA,
			User: req.User, Retrieve: req.Retrieve})
		hi := HolderImaging{URA: h.URA, Status: http.StatusOK}
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
