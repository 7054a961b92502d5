package beeld

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// testPACS serves the demo studies of testPatient and of a second patient.
func testPACS(t testing.TB) (*httptest.Server, []*Study, []*Study) {
	t.Helper()
	mine, err := DemoStudies(testPatient)
	if err != nil {
		t.Fatal(err)
	}
	other, err := DemoStudies(Patient{BSN: "999990020", Family: "Jansen", Given: "Piet", Sex: "M"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&PACS{Archive: NewArchive(append(mine, other...)...)}).Handler())
	t.Cleanup(srv.Close)
	return srv, mine, other
}

func getJSON(t *testing.T, url string) []Dataset {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != MediaDICOMJSON {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: %d %s: %s", url, res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	var out []Dataset
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestQIDOShapes(t *testing.T) {
	srv, mine, _ := testPACS(t)
	studies := getJSON(t, srv.URL+"/studies?PatientID="+testPatient.BSN+"&IssuerOfPatientID="+OIDBSN)
	if len(studies) != 2 {
		t.Fatalf("studies of the patient: %d, want 2", len(studies))
	}
	s := studies[0]
	if s.String(TagStudyInstanceUID) != mine[0].UID || s[TagStudyInstanceUID].VR != "UI" ||
		s.String(TagPatientName) != "de Vries^Anna" || s[TagPatientName].VR != "PN" ||
		s.Int(TagNumberOfStudyInstances) != 2 || s.String(TagRetrieveURL) != srv.URL+"/studies/"+mine[0].UID {
		t.Errorf("study attributes: %+v", s)
	}
	if got := getJSON(t, srv.URL+"/studies?00100020="+testPatient.BSN+"&ModalitiesInStudy=US"); len(got) != 1 || got[0].String(TagStudyInstanceUID) != mine[1].UID {
		t.Errorf("tag and modality matching: %d studies", len(got))
	}
	if got := getJSON(t, srv.URL+"/studies?StudyDate=20260101-20260630&PatientID="+testPatient.BSN); len(got) != 1 {
		t.Errorf("date range matching: %d studies, want 1", len(got))
	}
	if got := getJSON(t, srv.URL+"/studies?PatientName=de*&limit=1"); len(got) != 1 {
		t.Errorf("wildcard with limit: %d studies, want 1", len(got))
	}
	series := getJSON(t, srv.URL+"/studies/"+mine[1].UID+"/series")
	if len(series) != 2 || series[0].String(TagModality) != "US" || series[1].Int(TagNumberOfSeriesInstance) != 1 {
		t.Errorf("series: %+v", series)
	}
	inst := getJSON(t, srv.URL+"/studies/"+mine[1].UID+"/series/"+mine[1].Series[0].UID+"/instances")
	if len(inst) != 2 || inst[0].String(TagSOPClassUID) != SOPClassSecondaryCapture {
		t.Errorf("instances: %+v", inst)
	}
	meta := getJSON(t, srv.URL+"/studies/"+mine[0].UID+"/metadata")
	if len(meta) != 2 || meta[0][TagPixelData].BulkDataURI == "" || len(meta[0][TagPixelData].Value) != 0 {
		t.Errorf("metadata: %+v", meta)
	}
	for _, bad := range []string{"/studies?NoSuchAttribute=1", "/studies?limit=x"} {
		res, err := http.Get(srv.URL + bad)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, res.StatusCode)
		}
	}
	res, err := http.Get(srv.URL + "/studies/2.25.1/series")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("series of an unknown study: %d, want 404", res.StatusCode)
	}
}

func TestWADOShapes(t *testing.T) {
	srv, mine, _ := testPACS(t)
	st := mine[1]
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/studies/"+st.UID, nil)
	req.Header.Set("Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), MediaStudy) {
		t.Fatalf("WADO-RS study: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// The length is announced (no chunked framing) and is the body's.
	if res.ContentLength <= 0 || len(res.TransferEncoding) > 0 {
		t.Errorf("WADO-RS study: Content-Length %d, Transfer-Encoding %v", res.ContentLength, res.TransferEncoding)
	}
	var got []string
	err = ReadMultipart(res.Header.Get("Content-Type"), res.Body, func(part io.Reader) error {
		b, err := io.ReadAll(part)
		if err != nil {
			return err
		}
		info, err := ParseInstance(b)
		if err != nil {
			return err
		}
		if info.StudyInstanceUID != st.UID || info.PatientID != testPatient.BSN {
			t.Errorf("part of study %s, patient %s", info.StudyInstanceUID, info.PatientID)
		}
		got = append(got, info.SOPInstanceUID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := SortedUIDs(st); !slices.Equal(got, want) {
		t.Errorf("instances %v, want %v", got, want)
	}

	in := st.Series[1].Instances[0]
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/studies/"+st.UID+"/series/"+st.Series[1].UID+"/instances/"+in.SOPInstanceUID, nil)
	req.Header.Set("Accept", "image/jpeg")
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusNotAcceptable {
		t.Errorf("WADO-RS asked for image/jpeg: %d, want 406", res2.StatusCode)
	}
}
