package beeld

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
	"github.com/schakel-nl/schakel/validation"
)

// The kit's imaging endpoints, under its counterpart's https base: the
// paths a Schakel node serves them on.
func kitR4Base(url, ura string) string { return strings.TrimSuffix(url, "/") + "/fhir/r4/" + ura }
func kitDICOMwebBase(url, ura string) string {
	return strings.TrimSuffix(url, "/") + "/dicomweb/" + ura
}

// kitEndpoints are the kit's imaging endpoints as its addressbook entry
// lists them, shaped as a node lists a participant's (an R4 ImagingStudy
// endpoint and a DICOMweb base of connection type dicom-wado-rs).
func kitEndpoints(url, ura string) []addressbook.EndpointSpec {
	return []addressbook.EndpointSpec{
		{ID: "ep-" + ura + "-imagingstudy", PayloadType: beeld.PayloadImagingStudy, Address: kitR4Base(url, ura), FHIRVersion: "4.0"},
		{ID: "ep-" + ura + "-dicomweb", PayloadType: beeld.PayloadDICOMweb, Address: kitDICOMwebBase(url, ura), ConnectionType: addressbook.ConnectionTypeDICOMWADORS},
	}
}

// retrieval is how the kit's holder answers a WADO-RS retrieval; the
// cases that play a holder answering wrongly set it and restore it.
type retrieval int

const (
	retrieveStudy        retrieval = iota // the study's instances
	retrieveRefused                       // 403 with an OperationOutcome
	retrieveOtherPatient                  // the study's instances and one of another patient
)

// holding is the kit as Beeldbeschikbaarheid holder: the studies of its
// record's patient in a PACS stand-in (beeld.PACS: the DICOM files the
// repository generates), served as a Schakel holder node serves them: an
// R4 ImagingStudy search and DICOMweb, behind its imaging tokens.
type holding struct {
	cp       *validation.Counterpart
	r4       string
	dicomweb string
	patient  beeld.Patient
	archive  *beeld.Archive
	pacs     http.Handler
	// mixedPACS serves mixed.
	mixedPACS http.Handler
	// foreign is, per study of the patient, a study with the same UID of
	// another patient; mixed the patient's study with the other patient's
	// instances filed in it: what a holder with a misfiled image lists and
	// sends.
	foreign map[string]*beeld.Study
	mixed   *beeld.Archive

	mu   sync.Mutex
	mode retrieval
}

// serve builds the kit's holding for a run (validation.Application.Serve).
func serve(cp *validation.Counterpart) (validation.Service, error) {
	p := beeld.Patient{BSN: cp.PatientBSN, Family: "Validatie", Given: "Kit", BirthDate: "19700101", Sex: "O"}
	studies, err := beeld.DemoStudies(p)
	if err != nil {
		return nil, err
	}
	h := &holding{cp: cp, r4: kitR4Base(cp.URL, cp.URA), dicomweb: kitDICOMwebBase(cp.URL, cp.URA), patient: p,
		archive: beeld.NewArchive(studies...), foreign: map[string]*beeld.Study{}, mixed: beeld.NewArchive()}
	other := beeld.Patient{BSN: otherBSN, Family: "Ander", Given: "Patient", BirthDate: "19800101", Sex: "O"}
	for i, st := range studies {
		f, err := beeld.NewStudy(other, i+1, beeld.StudySpec{UID: st.UID, Description: st.Description, Date: st.Date, Time: st.Time,
			Series: []beeld.SeriesSpec{{Modality: st.Series[0].Modality, Instances: 1}}})
		if err != nil {
			return nil, err
		}
		h.foreign[st.UID] = f
		m := *st
		m.Series = append(slices.Clone(st.Series), f.Series...)
		h.mixed.Add(&m)
	}
	prefix := strings.TrimPrefix(h.dicomweb, cp.URL)
	h.pacs = http.StripPrefix(prefix, (&beeld.PACS{Archive: h.archive, Prefix: prefix}).Handler())
	h.mixedPACS = http.StripPrefix(prefix, (&beeld.PACS{Archive: h.mixed, Prefix: prefix}).Handler())
	return h, nil
}

// Routes are the ImagingStudy search on the kit's R4 base and its
// DICOMweb base.
func (h *holding) Routes(mux *http.ServeMux) {
	r4, dicomweb := strings.TrimPrefix(h.r4, h.cp.URL), strings.TrimPrefix(h.dicomweb, h.cp.URL)
	mux.HandleFunc("GET "+r4+"/ImagingStudy", h.serveSearch)
	mux.HandleFunc(r4+"/{path...}", func(w http.ResponseWriter, r *http.Request) {
		validation.WriteOutcome(w, http.StatusBadRequest, "not-supported", "this R4 endpoint answers the ImagingStudy search by patient.identifier only")
	})
	mux.HandleFunc(dicomweb+"/{path...}", h.serveDICOMweb)
}

// ResolveGrant decides an imaging token request as a Schakel holder node
// does (beeld.Holder.ResolveGrant): jwt-bearer without
// authorization_base, exactly the scope beeld, the kit's R4 base as RFC
// 8707 resource, the patient and the requesting user in the assertion.
func (h *holding) ResolveGrant(_ context.Context, req oauth.GrantRequest) (oauth.Grant, error) {
	if req.GrantType != consult.GrantTypeJWT {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token is asked with the jwt-bearer grant", nil)
	}
	if len(req.Scope) != 1 || req.Scope[0] != beeld.Application {
		return oauth.Grant{}, fmt.Errorf("%w: an imaging token asks for exactly the scope %s", oauth.ErrInvalidScope, beeld.Application)
	}
	if req.Resource != h.r4 {
		return oauth.Grant{}, oauth.RefuseTarget("resource must be this holder's FHIR R4 endpoint "+h.r4, nil)
	}
	bsn, _ := req.Assertion[beeld.AssertionPatient].(string)
	if nl.ValidateBSN(bsn) != nil {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token request names the patient: "+beeld.AssertionPatient+" must be a valid BSN", nil)
	}
	if !namesUser(req) {
		return oauth.Grant{}, oauth.RefuseGrant("an imaging token request must name the requesting user (user_id, user_role): the consent question needs them", nil)
	}
	return oauth.Grant{Audience: h.r4, Scope: []string{beeld.Application},
		Claims: map[string]any{consult.ClaimConsult: h.cp.URA, beeld.ClaimPatient: bsn}}, nil
}

func namesUser(req oauth.GrantRequest) bool {
	if req.User != nil && req.User.UZI != "" && req.User.RoleCode != "" {
		return true
	}
	u, err := plateau.UserFromClaims(req.Assertion)
	return err == nil && u != nil && u.ID != "" && u.Role != ""
}

// authorize checks a request's imaging token (bound to the client
// certificate, for the kit's R4 base) and returns its patient; it answers
// a refusal itself.
func (h *holding) authorize(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok, err := h.cp.Verify(r, h.r4)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		validation.WriteOutcome(w, http.StatusUnauthorized, "login", "a valid imaging token of this holder, bound to your client certificate, is required")
		return "", false
	}
	bsn := tok.StringClaim(beeld.ClaimPatient)
	if tok.StringClaim(consult.ClaimConsult) != h.cp.URA || nl.ValidateBSN(bsn) != nil {
		validation.WriteOutcome(w, http.StatusForbidden, "forbidden", "the access token was not issued for this holder's images")
		return "", false
	}
	return bsn, true
}

// serveSearch answers GET [R4 base]/ImagingStudy?patient.identifier=
// <BSN system>|<BSN> with the patient's studies.
func (h *holding) serveSearch(w http.ResponseWriter, r *http.Request) {
	bsn, ok := h.authorize(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	system, value, _ := strings.Cut(q.Get("patient.identifier"), "|")
	switch {
	case len(q["patient.identifier"]) != 1 || system != beeld.SystemBSN && system != "urn:oid:"+beeld.OIDBSN:
		validation.WriteOutcome(w, http.StatusBadRequest, "value", "give exactly one patient.identifier="+beeld.SystemBSN+"|<BSN>")
		return
	case value != bsn:
		validation.WriteOutcome(w, http.StatusForbidden, "forbidden", "the search names another patient than the access token's")
		return
	}
	var docs []json.RawMessage
	if bsn == h.patient.BSN {
		for _, st := range h.current().Studies() {
			doc, err := beeld.ImagingStudy(beeld.ViewOf(st, h.dicomweb), h.dicomweb)
			if err != nil {
				validation.WriteOutcome(w, http.StatusInternalServerError, "exception", err.Error())
				return
			}
			docs = append(docs, doc)
		}
	}
	body, err := beeld.SearchBundle(h.r4, h.r4+"/ImagingStudy?"+r.URL.RawQuery, docs)
	if err != nil {
		validation.WriteOutcome(w, http.StatusInternalServerError, "exception", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json; fhirVersion=4.0; charset=utf-8")
	_, _ = w.Write(body)
}

// serveDICOMweb answers QIDO-RS and WADO-RS from the PACS stand-in, for
// the token's patient's studies only; a retrieval as the run's mode says.
func (h *holding) serveDICOMweb(w http.ResponseWriter, r *http.Request) {
	bsn, ok := h.authorize(w, r)
	if !ok {
		return
	}
	path := r.PathValue("path")
	segs := strings.Split(path, "/")
	if len(segs) >= 2 && segs[0] == "studies" {
		st, found := h.archive.Study(segs[1])
		if found && st.Patient.BSN != bsn {
			validation.WriteOutcome(w, http.StatusForbidden, "forbidden", "the study is not of the access token's patient")
			return
		}
		h.mu.Lock()
		refused := h.mode == retrieveRefused
		h.mu.Unlock()
		if found && len(segs) == 2 && refused {
			validation.WriteOutcome(w, http.StatusForbidden, "forbidden", "the validation kit refuses this retrieval")
			return
		}
	} else if q := r.URL.Query(); len(segs) == 1 && q.Get("PatientID") != bsn {
		validation.WriteOutcome(w, http.StatusForbidden, "forbidden", "a search must name the access token's patient (PatientID)")
		return
	}
	if h.current() == h.mixed {
		h.mixedPACS.ServeHTTP(w, r)
		return
	}
	h.pacs.ServeHTTP(w, r)
}

// current is the archive the kit's holder answers from: with the other
// patient's instances filed in the patient's studies in the mode that
// plays a holder with a misfiled image.
func (h *holding) current() *beeld.Archive {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mode == retrieveOtherPatient {
		return h.mixed
	}
	return h.archive
}

// answering makes the kit's holder answer retrievals as mode says until
// the returned func restores it.
func (h *holding) answering(mode retrieval) func() {
	h.mu.Lock()
	h.mode = mode
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		h.mode = retrieveStudy
		h.mu.Unlock()
	}
}

// firstStudy is the kit's first study, which a requester retrieves when
// it names none.
func (h *holding) firstStudy() *beeld.Study { return h.archive.Studies()[0] }

// foreignUIDs are the SOP Instance UIDs of the other patient's instances
// the kit mixes into a study.
func (h *holding) foreignUIDs(study string) []string {
	f := h.foreign[study]
	if f == nil {
		return nil
	}
	return beeld.SortedUIDs(f)
}
