package beeld

import (
	"context"
	"errors"
	"testing"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/validation"
)

// TestKitGrantsAsAHolder: the kit's holder grants an imaging token only
// for what a Schakel holder node grants it for, and the token names the
// patient.
func TestKitGrantsAsAHolder(t *testing.T) {
	cp := &validation.Counterpart{URL: "https://127.0.0.1:9", URA: "90000995", PatientBSN: "999990019"}
	svc, err := serve(cp)
	if err != nil {
		t.Fatal(err)
	}
	h := svc.(*holding)
	if h.r4 != "https://127.0.0.1:9/fhir/r4/90000995" || h.dicomweb != "https://127.0.0.1:9/dicomweb/90000995" {
		t.Fatalf("bases %s, %s", h.r4, h.dicomweb)
	}
	eps := kitEndpoints(cp.URL, cp.URA)
	if len(eps) != 2 || eps[0].Address != h.r4 || eps[0].PayloadType != beeld.PayloadImagingStudy || eps[1].Address != h.dicomweb {
		t.Errorf("the addressbook lists %+v", eps)
	}
	good := func() oauth.GrantRequest {
		return oauth.GrantRequest{ClientID: "90000001", GrantType: consult.GrantTypeJWT, Scope: []string{beeld.Application}, Resource: h.r4,
			Assertion: map[string]any{beeld.AssertionPatient: cp.PatientBSN, "user_id": kitUserID, "user_id_system": "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers",
				"user_role": kitUserRole, "user_role_system": "http://fhir.nl/fhir/NamingSystem/uzi-rolcode"}}
	}
	g, err := h.ResolveGrant(context.Background(), good())
	if err != nil {
		t.Fatal(err)
	}
	if g.Audience != h.r4 || g.Claims[beeld.ClaimPatient] != cp.PatientBSN || g.Claims[consult.ClaimConsult] != cp.URA {
		t.Errorf("grant %+v", g)
	}
	for name, spoil := range map[string]func(*oauth.GrantRequest){
		"client_credentials": func(r *oauth.GrantRequest) { r.GrantType = oauth.GrantTypeClientCredentials },
		"another scope":      func(r *oauth.GrantRequest) { r.Scope = []string{"bgz"} },
		"two scopes":         func(r *oauth.GrantRequest) { r.Scope = []string{beeld.Application, "bgz"} },
		"another resource":   func(r *oauth.GrantRequest) { r.Resource = h.dicomweb },
		"no patient":         func(r *oauth.GrantRequest) { delete(r.Assertion, beeld.AssertionPatient) },
		"invalid BSN":        func(r *oauth.GrantRequest) { r.Assertion[beeld.AssertionPatient] = "123456789" },
		"no user":            func(r *oauth.GrantRequest) { delete(r.Assertion, "user_id") },
	} {
		req := good()
		spoil(&req)
		if _, err := h.ResolveGrant(context.Background(), req); err == nil {
			t.Errorf("%s: a token was granted", name)
		} else if !errors.Is(err, oauth.ErrInvalidGrant) && !errors.Is(err, oauth.ErrInvalidScope) && !errors.Is(err, oauth.ErrInvalidTarget) {
			t.Errorf("%s: %v is not an RFC 6749 refusal", name, err)
		}
	}
}

// TestKitMisfiledStudy: the study with a misfiled image keeps the study's
// UID and lists the other patient's instance, whose file says so.
func TestKitMisfiledStudy(t *testing.T) {
	svc, err := serve(&validation.Counterpart{URL: "https://127.0.0.1:9", URA: "90000995", PatientBSN: "999990019"})
	if err != nil {
		t.Fatal(err)
	}
	h := svc.(*holding)
	st := h.firstStudy()
	mixed, ok := h.mixed.Study(st.UID)
	if !ok {
		t.Fatal("no misfiled study under the study's UID")
	}
	foreign := h.foreignUIDs(st.UID)
	if len(foreign) != 1 || mixed.InstanceCount() != st.InstanceCount()+1 {
		t.Fatalf("%d foreign instances, %d in the misfiled study, %d in the study", len(foreign), mixed.InstanceCount(), st.InstanceCount())
	}
	for _, se := range mixed.Series {
		for _, in := range se.Instances {
			info, err := beeld.ParseInstance(in.File)
			if err != nil {
				t.Fatal(err)
			}
			if info.StudyInstanceUID != st.UID {
				t.Errorf("instance %s is of study %s", in.SOPInstanceUID, info.StudyInstanceUID)
			}
			if want := h.patient.BSN; in.SOPInstanceUID == foreign[0] {
				want = otherBSN
				if info.PatientID != want {
					t.Errorf("the misfiled instance is of patient %s, want %s", info.PatientID, want)
				}
			} else if info.PatientID != want {
				t.Errorf("instance %s is of patient %s, want %s", in.SOPInstanceUID, info.PatientID, want)
			}
		}
	}
	if h.current() != h.archive {
		t.Error("the kit answers from the misfiled studies by default")
	}
	restore := h.answering(retrieveOtherPatient)
	if h.current() != h.mixed {
		t.Error("the misfiled mode answers from the kit's own studies")
	}
	restore()
	if h.current() != h.archive {
		t.Error("the mode was not restored")
	}
}

func TestAcceptsMedia(t *testing.T) {
	for accept, want := range map[string]bool{
		`multipart/related; type="application/dicom"`:                         true,
		`multipart/related; type="application/dicom"; transfer-syntax=*`:      true,
		`application/dicom+json, multipart/related; type="application/dicom"`: true,
		// A parameter value with a "/" is quoted (RFC 9110 §5.6.6).
		`multipart/related; type=application/dicom`:          false,
		`multipart/related; type="application/octet-stream"`: false,
		`multipart/related`:                                  false,
		``:                                                   false,
	} {
		if got := acceptsMedia(accept, "multipart/related", beeld.MediaDICOM); got != want {
			t.Errorf("%q: %v, want %v", accept, got, want)
		}
	}
}
