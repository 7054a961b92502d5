package beeld

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
)

var requester = []validation.Role{validation.RoleRequester}

// maxRetrievals is how often a requester may ask a refused retrieval again
// within one request of its system before it must report the refusal.
const maxRetrievals = 3

// imageRequest is what the node did when its system asked for the kit's
// patient's images: its requests to the kit, and what the driver says the
// system received.
type imageRequest struct {
	inbound []validation.Inbound
	images  validation.Images
	err     error // the driver's: the node's answer to its system
}

// holdingOf is the kit's holder of this run.
func holdingOf(p *validation.Probe) (*holding, error) {
	h, ok := p.Env().Counterpart.Service().(*holding)
	if !ok {
		return nil, errors.New("the kit's counterpart serves no images in this run")
	}
	return h, nil
}

// requestImages makes the node's system ask for the kit's patient's
// images, with the kit's holder answering retrievals as mode says.
func requestImages(p *validation.Probe, mode retrieval) (*imageRequest, error) {
	env := p.Env()
	cp := env.Counterpart
	h, err := holdingOf(p)
	if err != nil {
		return nil, err
	}
	ir, ok := env.Driver.(validation.ImageRequester)
	if !ok {
		return nil, fmt.Errorf("%w: the driver cannot make the node request images", validation.ErrNotDriven)
	}
	defer h.answering(mode)()
	mark := cp.Mark()
	out := &imageRequest{}
	out.images, out.err = ir.RequestImages(p.Context(), cp.PatientBSN, cp.URA, kitUserID, kitUserRole)
	// A driver that does not wait for the node (a person at its system)
	// leaves the kit to wait for the retrieval on the wire.
	dicomweb := strings.TrimPrefix(h.dicomweb, cp.URL)
	cp.Await(p.Context(), mark, env.Config.Wait, func(ins []validation.Inbound) bool {
		return out.err == nil || !errors.Is(out.err, validation.ErrNotDriven) ||
			slices.ContainsFunc(ins, func(in validation.Inbound) bool { return strings.HasPrefix(in.Path, dicomweb+"/studies/") })
	})
	out.inbound = cp.Inbound(mark)
	p.Record(cp.Exchanges(out.inbound)...)
	return out, nil
}

// lookedUp is the node's image request of the run against the kit's
// holder answering as a holder should, made once.
func lookedUp(p *validation.Probe) (*imageRequest, error) {
	v, err := p.Once("beeld.requester.images", func(p *validation.Probe) (any, error) { return requestImages(p, retrieveStudy) })
	p.Record(p.ScenarioExchanges("beeld.requester.images")...)
	r, _ := v.(*imageRequest)
	return r, err
}

// notDriven is the verdict of a case the driver cannot run.
func notDriven(err error) validation.Verdict {
	if errors.Is(err, validation.ErrNotDriven) {
		return validation.Skip("%v", err)
	}
	return validation.Error("%v", err)
}

// imagingRequests are the node's requests to the kit's imaging endpoints.
func imagingRequests(h *holding, ins []validation.Inbound) []validation.Inbound {
	r4, dicomweb := strings.TrimPrefix(h.r4, h.cp.URL), strings.TrimPrefix(h.dicomweb, h.cp.URL)
	var out []validation.Inbound
	for _, in := range ins {
		if strings.HasPrefix(in.Path, r4+"/") || strings.HasPrefix(in.Path, dicomweb+"/") {
			out = append(out, in)
		}
	}
	return out
}

// retrievals are the WADO-RS retrievals of a whole study among ins.
func retrievals(h *holding, ins []validation.Inbound) []validation.Inbound {
	dicomweb := strings.TrimPrefix(h.dicomweb, h.cp.URL)
	var out []validation.Inbound
	for _, in := range ins {
		rel, ok := strings.CutPrefix(in.Path, dicomweb+"/studies/")
		if ok && in.Method == http.MethodGet && rel != "" && !strings.Contains(rel, "/") {
			out = append(out, in)
		}
	}
	return out
}

// acceptsMedia reports whether an Accept header asks for media type mt,
// with the type parameter typ where typ is not empty.
func acceptsMedia(accept, mt, typ string) bool {
	for _, a := range strings.Split(accept, ",") {
		m, params, err := mime.ParseMediaType(strings.TrimSpace(a))
		if err == nil && m == mt && (typ == "" || params["type"] == typ) {
			return true
		}
	}
	return false
}

func requesterCases() []validation.Case {
	return []validation.Case{
		{ID: "beeld.requester.token-request", Title: "The requester asks an imaging token for the holder's R4 endpoint", Roles: requester, Mandatory: true,
			Requirement: "The requester asks the holder's authorization server (from the addressbook) for a jwt-bearer token with exactly the scope " + Name +
				", the holder's FHIR R4 ImagingStudy endpoint (" + beeld.PayloadImagingStudy + ") as RFC 8707 resource, no authorization_base, and in its grant assertion the patient (" +
				beeld.AssertionPatient + ") and the requesting user (user_id, user_role).",
			Source: srcDP + "; RFC 7523 §2.1; " + srcImaging,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := lookedUp(p)
				if c == nil {
					return notDriven(err)
				}
				h, _ := holdingOf(p)
				for _, in := range c.inbound {
					if !validation.IsToken(in) {
						continue
					}
					f := validation.FormOf(in)
					var ps validation.Problems
					ps.Check(f.Get("grant_type") == oauth.GrantTypeJWTBearer, "grant_type %q, want jwt-bearer", f.Get("grant_type"))
					ps.Check(f.Get("scope") == Name, "scope %q, want exactly %s", f.Get("scope"), Name)
					ps.Check(f.Get("resource") == h.r4, "resource %q, want the holder's R4 endpoint %s", f.Get("resource"), h.r4)
					ps.Check(f.Get("authorization_base") == "", "an authorization_base was sent: that is a Notified Pull")
					claims, _ := validation.UnverifiedClaims(f.Get("assertion"))
					ps.Check(claims[beeld.AssertionPatient] == h.patient.BSN, "the grant assertion names patient %v, want %s", claims[beeld.AssertionPatient], h.patient.BSN)
					ps.Check(claims["user_id"] == kitUserID && claims["user_role"] == kitUserRole, "the grant assertion does not name the user (user_id %v, user_role %v)", claims["user_id"], claims["user_role"])
					ps.Check(in.Status == http.StatusOK, "the kit refused the request (HTTP %d): %s", in.Status, in.Answer)
					return ps.Verdict("imaging token requested")
				}
				return validation.Fail("the requester asked the kit's authorization server for no token (driver: %v)", c.err)
			}},
		{ID: "beeld.requester.client-assertion", Title: "The imaging token request is an RFC 7523 client assertion", Roles: requester, Mandatory: true,
			Requirement: "The requester authenticates with a signed JWT client assertion (iss = sub = its URA, aud = the token endpoint, exp, iat, jti, kid, an allowed algorithm) over its own certificate; its grant assertion is signed likewise.",
			Source:      "RFC 7523 §2.1–2.2, §3",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := lookedUp(p)
				if c == nil {
					return notDriven(err)
				}
				for _, in := range c.inbound {
					if validation.IsToken(in) {
						return validation.CheckTokenRequest(in, p.Env().Target.URA, p.Env().Counterpart.URL+oauth.TokenPath).Verdict("client and grant assertions conform")
					}
				}
				return validation.Fail("no token request arrived")
			}},
		{ID: "beeld.requester.bound-token", Title: "Every imaging request over mTLS with the bound token", Roles: requester, Mandatory: true,
			Requirement: "Every request of the requester to the holder's ImagingStudy and DICOMweb endpoints comes over TLS with its own client certificate and carries, as Bearer token, the imaging token the holder issued for that patient, bound to that certificate.",
			Source:      "RFC 8705 §3; RFC 6750 §2.1; " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := lookedUp(p)
				if c == nil {
					return notDriven(err)
				}
				h, _ := holdingOf(p)
				reqs := imagingRequests(h, c.inbound)
				if len(reqs) == 0 {
					return validation.Fail("the requester made no request to the kit's imaging endpoints (driver: %v)", c.err)
				}
				var ps validation.Problems
				for _, in := range reqs {
					ps.Check(in.PeerURA == p.Env().Target.URA, "%s %s came over a certificate of URA %q, not %s", in.Method, in.Path, in.PeerURA, p.Env().Target.URA)
					ps.Check(strings.HasPrefix(in.Authorization, "Bearer "), "%s %s carries no Bearer token", in.Method, in.Path)
					if in.Token == nil {
						ps.Add("%s %s: the token was refused: %s", in.Method, in.Path, in.TokenErr)
						continue
					}
					ps.Check(in.Token.StringClaim(beeld.ClaimPatient) == h.patient.BSN, "%s %s: a token of patient %q", in.Method, in.Path, in.Token.StringClaim(beeld.ClaimPatient))
				}
				return ps.Verdict(fmt.Sprintf("%d requests, each over mTLS with the bound imaging token", len(reqs)))
			}},
		{ID: "beeld.requester.imagingstudy-search", Title: "The requester searches ImagingStudy by the patient's BSN", Roles: requester, Mandatory: true,
			Requirement: "The requester searches GET [R4 base]/ImagingStudy?patient.identifier=" + beeld.SystemBSN + "|<BSN> of the patient its system asked for, on the endpoint the addressbook lists, accepting FHIR JSON.",
			Source:      srcImaging + "; FHIR R4 search (token parameters)",
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := lookedUp(p)
				if c == nil {
					return notDriven(err)
				}
				h, _ := holdingOf(p)
				path := strings.TrimPrefix(h.r4, h.cp.URL) + "/ImagingStudy"
				for _, in := range c.inbound {
					if in.Path != path {
						continue
					}
					var ps validation.Problems
					q, qerr := url.ParseQuery(in.Query)
					ps.Check(qerr == nil && len(q["patient.identifier"]) == 1 && q.Get("patient.identifier") == beeld.SystemBSN+"|"+h.patient.BSN,
						"the search is ?%s, want patient.identifier=%s|%s", in.Query, beeld.SystemBSN, h.patient.BSN)
					ps.Check(in.Accept == "" || acceptsMedia(in.Accept, "application/fhir+json", "") || acceptsMedia(in.Accept, "application/json", ""),
						"Accept %q does not take FHIR JSON", in.Accept)
					ps.Check(in.Status == http.StatusOK, "the kit answered %d: %s", in.Status, in.Answer)
					return ps.Verdict("ImagingStudy searched by the patient's BSN")
				}
				return validation.Fail("the requester did not search ImagingStudy on the kit's R4 endpoint (driver: %v)", c.err)
			}},
		{ID: "beeld.requester.dicomweb-requests", Title: "QIDO-RS and WADO-RS requests are well-formed", Roles: requester, Mandatory: true,
			Requirement: "The requester retrieves a study the ImagingStudy search listed with GET [DICOMweb]/studies/{uid} on the endpoint the ImagingStudy names, accepting " + beeld.MediaStudy +
				"; any QIDO-RS query accepts " + beeld.MediaDICOMJSON + "; it sends nothing but GET to the DICOMweb base.",
			Source: srcWADO + "; " + srcQIDO,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := lookedUp(p)
				if c == nil {
					return notDriven(err)
				}
				h, _ := holdingOf(p)
				dicomweb := strings.TrimPrefix(h.dicomweb, h.cp.URL)
				var ps validation.Problems
				wado := retrievals(h, c.inbound)
				ps.Check(len(wado) > 0, "the requester retrieved no study over WADO-RS (driver: %v)", c.err)
				for _, in := range wado {
					uid := strings.TrimPrefix(in.Path, dicomweb+"/studies/")
					_, listed := h.archive.Study(uid)
					ps.Check(listed, "it retrieved study %s, which the ImagingStudy search did not list", uid)
					ps.Check(acceptsMedia(in.Accept, "multipart/related", beeld.MediaDICOM), "WADO-RS Accept %q, want %s", in.Accept, beeld.MediaStudy)
					ps.Check(in.Status == http.StatusOK, "the kit answered the retrieval %d: %s", in.Status, in.Answer)
				}
				for _, in := range c.inbound {
					if !strings.HasPrefix(in.Path, dicomweb+"/") {
						continue
					}
					ps.Check(in.Method == http.MethodGet, "%s %s: DICOMweb takes GET", in.Method, in.Path)
					last := in.Path[strings.LastIndex(in.Path, "/")+1:]
					if last == "studies" || last == "series" || last == "instances" {
						ps.Check(acceptsMedia(in.Accept, beeld.MediaDICOMJSON, "") || acceptsMedia(in.Accept, "application/json", ""), "QIDO-RS %s: Accept %q, want %s", in.Path, in.Accept, beeld.MediaDICOMJSON)
					}
				}
				return ps.Verdict(fmt.Sprintf("%d WADO-RS retrievals accepting %s", len(wado), beeld.MediaStudy))
			}},
		{ID: "beeld.requester.instances-received", Title: "The system gets the instances the holder served", Roles: requester, Mandatory: true,
			Requirement: "The requester hands its system the study it retrieved: every DICOM instance the holder served (by SOP Instance UID), and no other.",
			Source:      srcWADO + "; " + srcImaging,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := lookedUp(p)
				if c == nil {
					return notDriven(err)
				}
				if c.err != nil {
					if errors.Is(c.err, validation.ErrNotDriven) {
						return validation.Skip("%v", c.err)
					}
					return validation.Fail("the node answered its system with an error: %v", c.err)
				}
				h, _ := holdingOf(p)
				st := h.firstStudy()
				want := beeld.SortedUIDs(st)
				got := slices.Clone(c.images.SOPInstanceUIDs)
				sort.Strings(got)
				var ps validation.Problems
				ps.Check(c.images.Study == st.UID, "the system got study %q, want %s", c.images.Study, st.UID)
				ps.Check(slices.Equal(got, want), "the system got instances %v, the kit served %v", got, want)
				ps.Check(c.images.Verified, "the node does not report the retrieval as complete")
				return ps.Verdict(fmt.Sprintf("study %s: %d instances, as served", st.UID, len(got)))
			}},
		{ID: "beeld.requester.retrieval-refused", Title: "A refused retrieval is reported to the system, not retried without end", Roles: requester, Mandatory: true, Negative: true,
			Requirement: fmt.Sprintf("When the holder answers the WADO-RS retrieval with 403 and an OperationOutcome, the requester reports the refusal to its system (an error that names it, no images) after at most %d attempts.", maxRetrievals),
			Source:      srcWADO + "; FHIR R4 http (OperationOutcome on 4xx); " + srcDP,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := requestImages(p, retrieveRefused)
				if c == nil {
					return notDriven(err)
				}
				h, _ := holdingOf(p)
				n := len(retrievals(h, c.inbound))
				if n == 0 {
					return validation.Fail("the requester retrieved nothing, so the refusal was not tried (driver: %v)", c.err)
				}
				if errors.Is(c.err, validation.ErrNotDriven) {
					return validation.Skip("%v", c.err)
				}
				var ps validation.Problems
				ps.Check(n <= maxRetrievals, "the requester asked the refused retrieval %d times", n)
				var apiErr *validation.APIError
				switch {
				case c.err == nil:
					ps.Add("the node answered its system with success after the refusal (%d instances)", len(c.images.SOPInstanceUIDs))
				case !errors.As(c.err, &apiErr):
					ps.Add("the node's answer is no refusal: %v", c.err)
				default:
					ps.Check(apiErr.Status >= 400, "HTTP %d", apiErr.Status)
					ps.Check(strings.Contains(string(apiErr.Body), "403") || strings.Contains(string(apiErr.Body), "refuses this retrieval"),
						"the node's answer does not name the holder's refusal: %s", apiErr.Body)
				}
				ps.Check(len(c.images.SOPInstanceUIDs) == 0, "the system got %d instances", len(c.images.SOPInstanceUIDs))
				return ps.Verdict(fmt.Sprintf("refusal reported after %d retrieval(s): %v", n, c.err))
			}},
		{ID: "beeld.requester.other-patient-instance", Title: "An instance of another patient is not handed to the system", Roles: requester, Mandatory: true, Negative: true,
			Requirement: "When the holder's WADO-RS answer holds a DICOM instance of another patient than asked (PatientID), the requester hands none of that patient's images to its system and does not report the retrieval as complete.",
			Source:      srcPatient + "; DICOM PS3.3 C.7.1.1 (Patient ID); " + srcWADO,
			Run: func(_ context.Context, p *validation.Probe) validation.Verdict {
				c, err := requestImages(p, retrieveOtherPatient)
				if c == nil {
					return notDriven(err)
				}
				h, _ := holdingOf(p)
				if len(retrievals(h, c.inbound)) == 0 {
					return validation.Fail("the requester retrieved nothing, so the other patient's instance was not tried (driver: %v)", c.err)
				}
				if errors.Is(c.err, validation.ErrNotDriven) {
					return validation.Skip("%v", c.err)
				}
				foreign := h.foreignUIDs(h.firstStudy().UID)
				var ps validation.Problems
				for _, uid := range c.images.SOPInstanceUIDs {
					ps.Check(!slices.Contains(foreign, uid), "the system got instance %s, of patient %s", uid, otherBSN)
				}
				ps.Check(c.err != nil || !c.images.Verified, "the node reports the retrieval as complete")
				return ps.Verdict(fmt.Sprintf("the other patient's instance was not handed over: %v", c.err))
			}},
	}
}
