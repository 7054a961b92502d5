package beeld

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/fhir"
)

// TestRequesterSendsTokenToHolderOnly: a study whose endpoint is not on
// the holder's node is not retrieved; the token goes nowhere else.
func TestRequesterSendsTokenToHolderOnly(t *testing.T) {
	var hits atomic.Int32
	elsewhere := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer elsewhere.Close()
	q := NewRequester(RequesterConfig{})
	base, _ := url.Parse("https://127.0.0.1:1/fhir/r4/90000002")
	party := &consult.Party{HTTP: elsewhere.Client()}
	studies := []StudySummary{{UID: "2.25.1", Endpoint: elsewhere.URL + "/dicomweb/90000002"}}
	_, err := q.retrieve(context.Background(), party, "secret", base, Request{PatientBSN: testPatient.BSN}, studies)
	if err == nil || !strings.Contains(err.Error(), "not on the holder's node") {
		t.Fatalf("retrieval from another host: %v", err)
	}
	if hits.Load() != 0 {
		t.Error("the token was sent to another host")
	}
	if _, err := q.retrieve(context.Background(), party, "secret", base, Request{PatientBSN: testPatient.BSN, Study: "2.25.2"}, studies); err == nil {
		t.Error("a study the holder did not list was retrieved")
	}
}

func TestSummariesRefuseAnotherPatient(t *testing.T) {
	studies, err := DemoStudies(otherPatient)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ImagingStudy(StudyView{Study: studyDataset(studies[0], "http://pacs")}, "https://node/dicomweb/90000002")
	if err != nil {
		t.Fatal(err)
	}
	body, err := SearchBundle("https://node/fhir/r4/90000002", "https://node/fhir/r4/90000002/ImagingStudy", []json.RawMessage{doc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := summaries(body, testPatient.BSN); err == nil {
		t.Error("a searchset with another patient's study was accepted")
	}
	got, err := summaries(body, otherPatient.BSN)
	if err != nil || len(got) != 1 || got[0].Endpoint != "https://node/dicomweb/90000002" || got[0].Instances != 2 {
		t.Errorf("summaries: %+v, %v", got, err)
	}
	if _, err := summaries([]byte(`{"resourceType":"OperationOutcome"}`), testPatient.BSN); err == nil {
		t.Error("an OperationOutcome was read as a searchset")
	}
}

// TestRequesterRefusesAnotherPatientsInstance: a retrieval whose answer
// holds an instance of another patient, filed under the study's UID and
// listed by the holder, reaches the system with none of its images.
func TestRequesterRefusesAnotherPatientsInstance(t *testing.T) {
	studies, err := DemoStudies(testPatient)
	if err != nil {
		t.Fatal(err)
	}
	st := studies[0]
	misfiled, err := NewStudy(otherPatient, 1, StudySpec{UID: st.UID, Series: []SeriesSpec{{Modality: "CR", Instances: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	mixed := *st
	mixed.Series = append(append([]*Series(nil), st.Series...), misfiled.Series...)
	pacs := &PACS{Archive: NewArchive(&mixed), Prefix: "/dicomweb/90000002"}
	srv := httptest.NewTLSServer(http.StripPrefix(pacs.Prefix, pacs.Handler()))
	defer srv.Close()
	base, _ := url.Parse(srv.URL + "/fhir/r4/90000002")
	party := &consult.Party{HTTP: srv.Client()}
	listed := []StudySummary{{UID: st.UID, Endpoint: srv.URL + pacs.Prefix, SOPInstanceUIDs: SortedUIDs(&mixed)}}
	q := NewRequester(RequesterConfig{})
	got, err := q.retrieve(context.Background(), party, "secret", base, Request{PatientBSN: testPatient.BSN}, listed)
	if err == nil || !strings.Contains(err.Error(), "patient "+otherPatient.BSN) {
		t.Fatalf("a retrieval with another patient's instance: %+v, %v", got, err)
	}
	if got != nil {
		t.Errorf("the system got %d instances", len(got.Instances))
	}
	// The study as listed, of the patient only, arrives whole.
	pacs.Archive = NewArchive(st)
	listed[0].SOPInstanceUIDs = SortedUIDs(st)
	if got, err = q.retrieve(context.Background(), party, "secret", base, Request{PatientBSN: testPatient.BSN}, listed); err != nil || !got.Verified || len(got.Instances) != 2 {
		t.Errorf("the patient's own study: %+v, %v", got, err)
	}
}

// TestRequesterPassesOnRefusedRetrieval: a holder's 403 on the WADO-RS
// retrieval reaches the system as a refusal (403, naming it), as a refused
// search does; any other failure of the holder is a 502.
func TestRequesterPassesOnRefusedRetrieval(t *testing.T) {
	for _, tc := range []struct{ holder, want int }{{http.StatusForbidden, http.StatusForbidden}, {http.StatusInternalServerError, http.StatusBadGateway}} {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(tc.holder)
			_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden","diagnostics":"no consent"}]}`))
		}))
		base, _ := url.Parse(srv.URL + "/fhir/r4/90000002")
		listed := []StudySummary{{UID: "2.25.1", Endpoint: srv.URL + "/dicomweb/90000002", SOPInstanceUIDs: []string{"2.25.2"}}}
		got, err := NewRequester(RequesterConfig{}).retrieve(context.Background(), &consult.Party{HTTP: srv.Client()}, "secret", base,
			Request{PatientBSN: testPatient.BSN}, listed)
		srv.Close()
		fe := fhir.AsError(err)
		if got != nil || fe == nil || fe.Status != tc.want || !strings.Contains(err.Error(), "no consent") {
			t.Errorf("holder %d: %+v, %v; want %d naming the holder's reason", tc.holder, got, err, tc.want)
		}
	}
}
