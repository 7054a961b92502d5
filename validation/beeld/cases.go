// Package beeld holds the validation kit's cases for Beeldbeschikbaarheid
// (image availability): the node as holder, the kit as a requester that
// searches a patient's studies on the holder's FHIR R4 endpoint and
// queries and retrieves them over DICOMweb (QIDO-RS, WADO-RS) through the
// node. They live here rather than in the beeld package because the node
// imports beeld: the kit's machinery stays out of the node's packages.
package beeld

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
)

// Name is the care application's name and its OAuth scope.
const Name = beeld.Application

// Sources the cases cite.
const (
	srcDP      = "Twiin Direct Pull, targeted query (SPEC §4); RFC 8707 resource indicator"
	srcImaging = "Beeldbeschikbaarheid: ImagingStudy (FHIR R4) of the patient's studies, images over DICOMweb (SPEC §5)"
	srcQIDO    = "DICOM PS3.18 §10.6 (QIDO-RS) and F.2 (DICOM JSON)"
	srcWADO    = "DICOM PS3.18 §10.4 (WADO-RS, multipart/related; type=\"application/dicom\") and PS3.10 (file format)"
	srcConsent = "Consent: no exchange without the patient's consent (Mitz closed question, SPEC §6, §9)"
	srcPatient = "Direct Pull: the holder answers about the patient the access token was issued for only (SPEC §4, §6)"
	srcAudit   = "NEN 7513 logging, every plateau: refusals logged too (seed 000; SPEC §6, §8)"
	srcRFC6750 = "RFC 6750 §3 (bearer token use: 401 with WWW-Authenticate)"
)

// The user the kit asks images for: an internist (UZI role 01.016, among
// the roles beeld's policy admits at every plateau) with a test UZI number.
const (
	kitUserID   = "900012345"
	kitUserRole = "01.016"
)

// otherBSN is a valid test BSN of no patient the kit is told about: no
// consent is registered for it.
const otherBSN = "999990020"

// Application is Beeldbeschikbaarheid as the kit needs it: the node's
// ImagingStudy and DICOMweb endpoints in the addressbook, and the kit's
// own (Serve, KitEndpoints) where it plays the holder. Its record is a
// demo patient whose studies the kit's PACS stand-in holds; it has no FHIR
// bundles, the studies are DICOM.
func Application() validation.Application {
	return validation.Application{Name: Name, Title: "Beeldbeschikbaarheid (ImagingStudy R4, DICOMweb)",
		Endpoints: []validation.Endpoint{{PayloadType: beeld.PayloadImagingStudy, FHIRVersion: "4.0"}, {PayloadType: beeld.PayloadDICOMweb}},
		Serve:     serve, KitEndpoints: kitEndpoints,
		Record: func() (string, [][]byte, error) {
			ps, err := demo.Generate(demo.Options{Count: 1, Seed: 9513, GPName: "Twiin validatieservice", IDPrefix: "kit"})
			if err != nil {
				return "", nil, err
			}
			return ps[0].BSN, nil, nil
		}}
}

// Cases returns every Beeldbeschikbaarheid case: the node as holder, then
// as requester.
func Cases() []validation.Case { return append(holderCases(), requesterCases()...) }

// Register adds Beeldbeschikbaarheid and its cases to reg.
func Register(reg *validation.Registry) error { return reg.AddApplication(Application(), Cases()...) }

var holder = []validation.Role{validation.RoleHolder}

// endpoints are the holder's imaging endpoints from the addressbook.
func endpoints(p *validation.Probe) (r4, dicomweb string, err error) {
	t := p.Env().Target
	r4, dicomweb = t.Endpoints[beeld.PayloadImagingStudy], t.Endpoints[beeld.PayloadDICOMweb]
	if r4 == "" || dicomweb == "" {
		return r4, dicomweb, fmt.Errorf("the addressbook lists no %s (FHIR R4) or no %s endpoint for URA %s", beeld.PayloadImagingStudy, beeld.PayloadDICOMweb, t.URA)
	}
	return r4, dicomweb, nil
}

// tokenRequest is an imaging token request for patient at the holder's
// R4 base; withUser false leaves the user out, an empty patient the
// patient.
func tokenRequest(resource, patient string, withUser bool) oauth.TokenRequest {
	claims := map[string]any{"requester_type": "Z3"}
	if withUser {
		claims["user_id"], claims["user_id_system"] = kitUserID, "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers"
		claims["user_role"], claims["user_role_system"] = kitUserRole, "http://fhir.nl/fhir/NamingSystem/uzi-rolcode"
	}
	if patient != "" {
		claims[beeld.AssertionPatient] = patient
	}
	return oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{Name}, Resource: resource, AssertionClaims: claims}
}

// imagingToken is the kit's imaging token for patient at the holder, asked
// once per patient and run.
func imagingToken(p *validation.Probe, patient string) (string, error) {
	v, err := p.Once("beeld.holder.token."+patient, func(p *validation.Probe) (any, error) {
		r4, _, err := endpoints(p)
		if err != nil {
			return "", err
		}
		tok, resp, err := p.Token(p.Env().HTTP, tokenRequest(r4, patient, true))
		if err != nil {
			return "", err
		}
		if tok == "" {
			return "", fmt.Errorf("no imaging token: HTTP %d %s", resp.Status, resp.OAuthError())
		}
		return tok, nil
	})
	s, _ := v.(string)
	return s, err
}

// patient is the BSN of the run's patient: the node holds studies of it
// and the patient permits the kit to see them.
func patient(p *validation.Probe) (string, error) {
	bsn := p.Env().Config.Patient
	if bsn == "" {
		return "", errors.New("no patient: give the BSN of a patient whose studies the node's PACS holds, with consent for the kit (--patient)")
	}
	return bsn, nil
}

// dicomGet is a DICOMweb GET with an Accept and an optional token.
func dicomGet(p *validation.Probe, client *http.Client, u, accept, token string) (*validation.Response, error) {
	req, err := http.NewRequestWithContext(p.Context(), http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return p.Do(client, req)
}

// found is what the kit's lookup of the patient's images brought: the
// ImagingStudy search, then QIDO-RS of the first study's series and of the
// first series' instances.
type found struct {
	search    *validation.Response
	studies   []studyRef
	study     string // the first study's UID
	series    string // its first series' UID
	instance  string // that series' first instance's UID
	searchPs  validation.Problems
	qido      map[string]*validation.Response
	qidoPs    map[string]validation.Problems
	qidoSeen  map[string][]string
	searchErr error
}

// studyRef is one ImagingStudy of the search as the kit read it.
type studyRef struct {
	uid       string
	series    map[string][]string // series UID → instance UIDs
	instances int
	endpoint  string
}

// access is what a request about the run's patient needs: the patient,
// the holder's R4 and DICOMweb bases, and an imaging token for the patient.
type access struct{ bsn, r4, dicomweb, token string }

func patientAccess(p *validation.Probe) (access, error) {
	var a access
	var err error
	if a.bsn, err = patient(p); err != nil {
		return a, err
	}
	if a.r4, a.dicomweb, err = endpoints(p); err != nil {
		return a, err
	}
	if a.token, err = imagingToken(p, a.bsn); err != nil {
		return a, fmt.Errorf("no imaging token to try: %w", err)
	}
	return a, nil
}

// lookup runs the patient's ImagingStudy search and the QIDO-RS queries
// once per run; the cases judge what came back.
func lookup(p *validation.Probe) (*found, error) {
	v, err := p.Once("beeld.holder.lookup", func(p *validation.Probe) (any, error) {
		a, err := patientAccess(p)
		if err != nil {
			return nil, err
		}
		bsn, r4, dicomweb, tok := a.bsn, a.r4, a.dicomweb, a.token
		f := &found{qido: map[string]*validation.Response{}, qidoPs: map[string]validation.Problems{}, qidoSeen: map[string][]string{}}
		f.search, f.searchErr = p.Get(p.Env().HTTP, r4+"/ImagingStudy?"+url.Values{"patient.identifier": {beeld.SystemBSN + "|" + bsn}}.Encode(), tok)
		if f.searchErr == nil {
			f.studies = judgeSearch(&f.searchPs, f.search, bsn)
		}
		query := func(level, rel string, keys ...string) {
			resp, err := dicomGet(p, p.Env().HTTP, dicomweb+"/"+rel, beeld.MediaDICOMJSON, tok)
			ps := validation.Problems{}
			if err != nil {
				ps.Add("%s: %v", rel, err)
			} else {
				f.qido[level] = resp
				f.qidoSeen[level] = judgeQIDO(&ps, resp, bsn, keys...)
			}
			f.qidoPs[level] = ps
		}
		query("studies", "studies?"+url.Values{"PatientID": {bsn}}.Encode(), beeld.TagStudyInstanceUID)
		switch {
		case len(f.qidoSeen["studies"]) > 0:
			f.study = f.qidoSeen["studies"][0]
		case len(f.studies) > 0:
			f.study = f.studies[0].uid
		default:
			return f, nil
		}
		query("series", "studies/"+url.PathEscape(f.study)+"/series", beeld.TagSeriesInstanceUID, beeld.TagModality)
		if len(f.qidoSeen["series"]) == 0 {
			return f, nil
		}
		f.series = f.qidoSeen["series"][0]
		query("instances", "studies/"+url.PathEscape(f.study)+"/series/"+url.PathEscape(f.series)+"/instances", beeld.TagSOPInstanceUID, beeld.TagSOPClassUID)
		if len(f.qidoSeen["instances"]) > 0 {
			f.instance = f.qidoSeen["instances"][0]
		}
		return f, nil
	})
	f, _ := v.(*found)
	return f, err
}

func holderCases() []validation.Case {
	return []validation.Case{
		{ID: "beeld.holder.endpoints", Title: "The holder's imaging endpoints are in the addressbook", Roles: holder, Mandatory: true,
			Requirement: "The addressbook lists, for the participant's URA, an active https FHIR R4 endpoint of payload type " + beeld.PayloadImagingStudy +
				" (the ImagingStudy search) and an https DICOMweb base of payload type " + beeld.PayloadDICOMweb + ".",
			Source: "Addressing: the GtK endpoint listed in the addressbook (SPEC §9 payload types); " + srcImaging,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				r4, dicomweb, err := endpoints(p)
				if err != nil {
					return validation.Fail("%v", err)
				}
				var ps validation.Problems
				ps.Check(strings.HasPrefix(r4, "https://"), "the ImagingStudy endpoint is not https: %s", r4)
				ps.Check(strings.HasPrefix(dicomweb, "https://"), "the DICOMweb endpoint is not https: %s", dicomweb)
				return ps.Verdict(fmt.Sprintf("ImagingStudy %s, DICOMweb %s", r4, dicomweb))
			}},
		{ID: "beeld.holder.token", Title: "An imaging token for the holder's R4 endpoint", Roles: holder, Mandatory: true,
			Requirement: "A jwt-bearer token request without authorization_base, naming the holder's FHIR R4 base as RFC 8707 resource, scope " + Name +
				", the patient (" + beeld.AssertionPatient + ") and the requesting user (UZI number, role code), gets a token for that endpoint, bound to the requester's certificate, living at most an hour.",
			Source: srcDP + "; RFC 7523 §2.1; RFC 8705",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				bsn, err := patient(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				tok, err := imagingToken(p, bsn)
				p.Record(p.ScenarioExchanges("beeld.holder.token." + bsn)...)
				if err != nil {
					return validation.Fail("%v", err)
				}
				c, err := validation.UnverifiedClaims(tok)
				if err != nil {
					return validation.Fail("the token is not a JWT: %v", err)
				}
				r4, _, _ := endpoints(p)
				var ps validation.Problems
				ps.Check(validation.AudienceHas(c["aud"], r4), "aud %v is not the R4 base %s", c["aud"], r4)
				cnf, _ := c["cnf"].(map[string]any)
				ps.Check(cnf != nil && cnf["x5t#S256"] != "", "the token carries no cnf x5t#S256")
				exp, _ := c["exp"].(float64)
				ps.Check(exp > 0 && time.Unix(int64(exp), 0).Before(time.Now().Add(time.Hour+time.Minute)), "the token lives more than an hour")
				return ps.Verdict("imaging token granted")
			}},
		{ID: "beeld.holder.imagingstudy-search", Title: "ImagingStudy search by patient on the R4 endpoint", Roles: holder, Mandatory: true,
			Requirement: "GET [R4 base]/ImagingStudy?patient.identifier=" + beeld.SystemBSN + "|<BSN> with the imaging token answers 200 with a searchset Bundle of valid R4 ImagingStudy resources of that patient, at least one, each identified by its Study Instance UID (urn:dicom:uid) and pointing at a DICOMweb (dicom-wado-rs) endpoint.",
			Source:      srcImaging + "; " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				f, err := lookup(p)
				p.Record(p.ScenarioExchanges("beeld.holder.lookup")...)
				if f == nil {
					return validation.Fail("%v", err)
				}
				if f.searchErr != nil {
					return validation.Fail("%v", f.searchErr)
				}
				ps := f.searchPs
				ps.Check(len(f.studies) > 0, "the search found no study of the patient: give a patient whose studies the PACS holds (--patient)")
				return ps.Verdict(fmt.Sprintf("%d studies", len(f.studies)))
			}},
		qidoCase("studies", "QIDO-RS: the patient's studies",
			"GET [DICOMweb]/studies?PatientID=<BSN> (Accept application/dicom+json) answers 200 with DICOM JSON datasets, each with a Study Instance UID and of the token's patient (PatientID the BSN), and the same studies as the ImagingStudy search."),
		qidoCase("series", "QIDO-RS: a study's series",
			"GET [DICOMweb]/studies/{study}/series answers 200 with DICOM JSON datasets, each with a Series Instance UID and a Modality, and the same series as the study's ImagingStudy lists."),
		qidoCase("instances", "QIDO-RS: a series' instances",
			"GET [DICOMweb]/studies/{study}/series/{series}/instances answers 200 with DICOM JSON datasets, each with an SOP Instance UID and an SOP Class UID, and the same instances as the ImagingStudy lists."),
		{ID: "beeld.holder.wado-instance", Title: "WADO-RS: an instance in the right media type", Roles: holder, Mandatory: true,
			Requirement: "GET [DICOMweb]/studies/{study}/series/{series}/instances/{instance} with Accept " + beeld.MediaStudy +
				" answers 200 as multipart/related; type=\"application/dicom\" with one part: a DICOM Part 10 file of that instance, study and series, of the token's patient.",
			Source: srcWADO,
			Run:    wadoInstance},
		{ID: "beeld.holder.other-patient-study", Title: "A study of another patient than the token's is refused", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "WADO-RS of a study of one patient with an imaging token issued for another patient is refused with 403 and an OperationOutcome, and nothing of the study is sent.",
			Source:      srcPatient,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				f, err := lookup(p)
				if f == nil || f.study == "" {
					return validation.Error("no study of the patient to try (%v)", err)
				}
				_, dicomweb, _ := endpoints(p)
				tok, err := imagingToken(p, otherBSN)
				if err != nil {
					return validation.Error("no imaging token for another patient: %v", err)
				}
				resp, err := dicomGet(p, p.Env().HTTP, dicomweb+"/studies/"+url.PathEscape(f.study), beeld.MediaStudy, tok)
				if err != nil {
					return validation.Fail("%v", err)
				}
				return refusal(resp, http.StatusForbidden)
			}},
		{ID: "beeld.holder.other-patient-search", Title: "A search naming another patient than the token's is refused", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "An ImagingStudy search whose patient.identifier is not the patient the imaging token was issued for is refused with 403 and an OperationOutcome.",
			Source:      srcPatient,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				a, err := patientAccess(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				resp, err := p.Get(p.Env().HTTP, a.r4+"/ImagingStudy?"+url.Values{"patient.identifier": {beeld.SystemBSN + "|" + otherBSN}}.Encode(), a.token)
				if err != nil {
					return validation.Fail("%v", err)
				}
				return refusal(resp, http.StatusForbidden)
			}},
		{ID: "beeld.holder.no-token", Title: "A WADO-RS retrieval without a token is refused", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "A DICOMweb request without an access token gets 401 with a WWW-Authenticate Bearer challenge and an OperationOutcome.",
			Source:      srcRFC6750,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				_, dicomweb, err := endpoints(p)
				if err != nil {
					return validation.Fail("%v", err)
				}
				study := "1.2.3.4"
				if f, _ := lookup(p); f != nil && f.study != "" {
					study = f.study
				}
				resp, err := dicomGet(p, p.Env().HTTP, dicomweb+"/studies/"+url.PathEscape(study), beeld.MediaStudy, "")
				if err != nil {
					return validation.Fail("%v", err)
				}
				v := refusal(resp, http.StatusUnauthorized)
				if !strings.HasPrefix(strings.ToLower(resp.Header.Get("WWW-Authenticate")), "bearer") {
					return validation.Fail("no WWW-Authenticate: Bearer challenge (%s)", v.Detail)
				}
				return v
			}},
		{ID: "beeld.holder.consent-absent", Title: "No images without the patient's consent", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "An ImagingStudy search, and a QIDO-RS query, for a patient who registered no consent for this exchange are refused with 403 and an OperationOutcome.",
			Source:      srcConsent,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				r4, dicomweb, err := endpoints(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				tok, err := imagingToken(p, otherBSN)
				if err != nil {
					return validation.Error("no imaging token to try: %v", err)
				}
				resp, err := p.Get(p.Env().HTTP, r4+"/ImagingStudy?"+url.Values{"patient.identifier": {beeld.SystemBSN + "|" + otherBSN}}.Encode(), tok)
				if err != nil {
					return validation.Fail("%v", err)
				}
				search := refusal(resp, http.StatusForbidden)
				resp, err = dicomGet(p, p.Env().HTTP, dicomweb+"/studies?"+url.Values{"PatientID": {otherBSN}}.Encode(), beeld.MediaDICOMJSON, tok)
				if err != nil {
					return validation.Fail("%v", err)
				}
				qido := refusal(resp, http.StatusForbidden)
				if search.Status != validation.Passed || qido.Status != validation.Passed {
					return validation.Fail("ImagingStudy search: %s; QIDO-RS: %s", search.Detail, qido.Detail)
				}
				return validation.Pass("ImagingStudy search and QIDO-RS refused with 403")
			}},
		{ID: "beeld.holder.no-user", Title: "An imaging token without a named user is refused", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "An imaging token request that names no user (UZI number and role) is refused: the patient's consent cannot be asked without one.",
			Source:      srcConsent + "; " + srcDP,
			Run:         tokenRefused(func(r4, bsn string) oauth.TokenRequest { return tokenRequest(r4, bsn, false) })},
		{ID: "beeld.holder.no-patient", Title: "An imaging token without a patient is refused", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "An imaging token request that names no patient (" + beeld.AssertionPatient + ") is refused: an imaging token opens one patient's studies.",
			Source:      srcPatient + "; " + srcDP,
			Run:         tokenRefused(func(r4, _ string) oauth.TokenRequest { return tokenRequest(r4, "", true) })},
		{ID: "beeld.holder.wrong-resource", Title: "An imaging token for another endpoint is refused", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "An imaging token request whose resource is not a FHIR R4 endpoint of the holder is refused.",
			Source:      "RFC 8707 §2; " + srcDP,
			Run: tokenRefused(func(_, bsn string) oauth.TokenRequest {
				return tokenRequest("https://elsewhere.invalid/fhir/r4", bsn, true)
			})},
		{ID: "beeld.holder.token-binding", Title: "The imaging token is useless over another certificate", Roles: holder, Mandatory: true, Negative: true,
			Requirement: "The imaging token presented over a connection with another certificate of the same organisation is refused with 401.",
			Source:      "RFC 8705 §3",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				a, err := patientAccess(p)
				if err != nil {
					return validation.Error("%v", err)
				}
				resp, err := dicomGet(p, p.Env().AltHTTP, a.dicomweb+"/studies?"+url.Values{"PatientID": {a.bsn}}.Encode(), beeld.MediaDICOMJSON, a.token)
				if err != nil {
					return validation.Pass("refused on the connection: %v", err)
				}
				if resp.Status != http.StatusUnauthorized {
					return validation.Fail("HTTP %d, want 401", resp.Status)
				}
				return validation.Pass("refused with 401")
			}},
		{ID: "beeld.holder.refusals-audited", Title: "The refused retrieval of another patient's study is audited", Roles: holder, Mandatory: true, Final: true,
			Requirement: "The node's NEN 7513 log holds, since the run began, the kit's refused retrieval of a study with a token of another patient (a refused AuditEvent of the kit naming the study) and the kit's successful retrievals.",
			Source:      srcAudit,
			Run:         refusalsAudited},
	}
}

// qidoCase judges one QIDO-RS level of the lookup.
func qidoCase(level, title, req string) validation.Case {
	return validation.Case{ID: "beeld.holder.qido-" + level, Title: title, Roles: holder, Mandatory: true, Requirement: req, Source: srcQIDO + "; " + srcImaging,
		Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
			f, err := lookup(p)
			if f == nil {
				return validation.Fail("%v", err)
			}
			resp := f.qido[level]
			if resp == nil {
				if ps := f.qidoPs[level]; len(ps) > 0 {
					return ps.Verdict("")
				}
				return validation.Fail("not asked: the level above it found nothing")
			}
			p.Record(exchangesFor(p, level)...)
			ps := f.qidoPs[level]
			seen := f.qidoSeen[level]
			ps.Check(len(seen) > 0, "no %s", level)
			if f.searchErr == nil && len(f.studies) > 0 {
				var want []string
				for _, st := range f.studies {
					switch level {
					case "studies":
						want = append(want, st.uid)
					case "series":
						if st.uid == f.study {
							for se := range st.series {
								want = append(want, se)
							}
						}
					case "instances":
						if st.uid == f.study {
							want = st.series[f.series]
						}
					}
				}
				ps.Check(sameSet(seen, want), "QIDO-RS found %s %v, the ImagingStudy search %v", level, seen, want)
			}
			return ps.Verdict(fmt.Sprintf("%d %s", len(seen), level))
		}}
}

// exchangesFor are the lookup's exchanges of one QIDO-RS level.
func exchangesFor(p *validation.Probe, level string) []validation.Exchange {
	var out []validation.Exchange
	for _, ex := range p.ScenarioExchanges("beeld.holder.lookup") {
		path := ex.URL
		if u, err := url.Parse(ex.URL); err == nil {
			path = u.Path
		}
		switch {
		case level == "studies" && strings.HasSuffix(path, "/studies"),
			level != "studies" && strings.HasSuffix(path, "/"+level):
			out = append(out, ex)
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s] == 0 {
			return false
		}
		seen[s]--
	}
	return true
}

func wadoInstance(_ context.Context, p *validation.Probe) validation.Verdict {
	f, err := lookup(p)
	if f == nil || f.instance == "" {
		return validation.Error("no instance of the patient to retrieve (%v)", err)
	}
	bsn, _ := patient(p)
	_, dicomweb, _ := endpoints(p)
	tok, err := imagingToken(p, bsn)
	if err != nil {
		return validation.Error("%v", err)
	}
	u := dicomweb + "/studies/" + url.PathEscape(f.study) + "/series/" + url.PathEscape(f.series) + "/instances/" + url.PathEscape(f.instance)
	resp, err := dicomGet(p, p.Env().HTTP, u, beeld.MediaStudy, tok)
	if err != nil {
		return validation.Fail("%v", err)
	}
	var ps validation.Problems
	judgeInstance(&ps, resp, bsn, f.study, f.series, f.instance)
	return ps.Verdict(fmt.Sprintf("instance %s retrieved as %s (%d bytes)", f.instance, resp.Header.Get("Content-Type"), len(resp.Body)))
}

// refusal judges a refused DICOMweb or FHIR request: the status and an
// OperationOutcome, and nothing of the images.
func refusal(resp *validation.Response, status int) validation.Verdict {
	var ps validation.Problems
	ps.Check(resp.Status == status, "HTTP %d, want %d", resp.Status, status)
	ps.Check(resp.IsOutcome(), "the refusal is not an OperationOutcome")
	return ps.Verdict(fmt.Sprintf("refused: HTTP %d", resp.Status))
}

// tokenRefused asks the token req makes and passes when the node refuses
// it with an RFC 6749 error and gives no token.
func tokenRefused(req func(r4, bsn string) oauth.TokenRequest) func(context.Context, *validation.Probe) validation.Verdict {
	return func(_ context.Context, p *validation.Probe) validation.Verdict {
		bsn, err := patient(p)
		if err != nil {
			return validation.Error("%v", err)
		}
		r4, _, err := endpoints(p)
		if err != nil {
			return validation.Error("%v", err)
		}
		tok, resp, err := p.Token(p.Env().HTTP, req(r4, bsn))
		if err != nil {
			return validation.Error("%v", err)
		}
		var ps validation.Problems
		ps.Check(tok == "", "a token was issued (HTTP %d)", resp.Status)
		ps.Check(resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden,
			"HTTP %d, want a refusal (RFC 6749 §5.2)", resp.Status)
		ps.Check(resp.OAuthError() != "", "the refusal is not an RFC 6749 error")
		return ps.Verdict(fmt.Sprintf("refused: HTTP %d %s", resp.Status, resp.OAuthError()))
	}
}

// readAll reads a part of a multipart answer.
func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(io.LimitReader(r, 64<<20)) }
