package beeld

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/validation"
)

const bsn = "999990019"

func testStudy(t *testing.T, who string) *beeld.Study {
	t.Helper()
	st, err := beeld.NewStudy(beeld.Patient{BSN: who, Family: "Test", Given: "Patiënt"}, 1, beeld.StudySpec{Description: "X-thorax", Date: "20261101",
		Series: []beeld.SeriesSpec{{Modality: "DX", Description: "Thorax", Instances: 2}}, Rows: 4, Columns: 4})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func response(status int, ct string, body []byte) *validation.Response {
	return &validation.Response{Status: status, Header: http.Header{"Content-Type": {ct}}, Body: body}
}

func TestJudgeSearch(t *testing.T) {
	st := testStudy(t, bsn)
	view := beeld.StudyView{Study: beeld.Dataset{
		beeld.TagStudyInstanceUID: {VR: "UI", Value: []any{st.UID}},
		beeld.TagPatientID:        {VR: "LO", Value: []any{bsn}},
	}}
	doc, err := beeld.ImagingStudy(view, "https://node.example/dicomweb/90000002")
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := beeld.SearchBundle("https://node.example/fhir/r4/90000002", "https://node.example/fhir/r4/90000002/ImagingStudy", []json.RawMessage{doc})
	var ps validation.Problems
	got := judgeSearch(&ps, response(200, "application/fhir+json", bundle), bsn)
	if len(ps) != 0 || len(got) != 1 || got[0].uid != st.UID || got[0].endpoint == "" {
		t.Fatalf("a conformant search: %v %+v", ps, got)
	}
	// The same answer judged for another patient fails.
	ps = nil
	judgeSearch(&ps, response(200, "application/fhir+json", bundle), "999990020")
	if len(ps) == 0 || !strings.Contains(ps[0], "not the patient") {
		t.Errorf("a study of another patient passed: %v", ps)
	}
	// Neither a refusal nor something else than a searchset passes.
	for _, r := range []*validation.Response{response(403, "application/fhir+json", []byte(`{"resourceType":"OperationOutcome"}`)),
		response(200, "application/fhir+json", []byte(`{"resourceType":"Bundle","type":"collection"}`))} {
		ps = nil
		if judgeSearch(&ps, r, bsn); len(ps) == 0 {
			t.Errorf("%d %s passed", r.Status, r.Body)
		}
	}
	// An ImagingStudy without its Study Instance UID and endpoint fails.
	ps = nil
	judgeSearch(&ps, response(200, "application/fhir+json", []byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":
		{"resourceType":"ImagingStudy","status":"available","subject":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"`+bsn+`"}}},"search":{"mode":"match"}}]}`)), bsn)
	if len(ps) < 2 {
		t.Errorf("an ImagingStudy without identifier and endpoint: %v", ps)
	}
}

func TestJudgeQIDO(t *testing.T) {
	body := []byte(`[{"0020000D":{"vr":"UI","Value":["1.2.3"]},"00100020":{"vr":"LO","Value":["` + bsn + `"]}},
		{"0020000D":{"vr":"UI","Value":["1.2.4"]},"00100020":{"vr":"LO","Value":["999990020"]}}]`)
	var ps validation.Problems
	got := judgeQIDO(&ps, response(200, beeld.MediaDICOMJSON, body), bsn, beeld.TagStudyInstanceUID)
	if len(got) != 2 || len(ps) != 1 || !strings.Contains(ps[0], "999990020") {
		t.Errorf("a dataset of another patient: %v %v", got, ps)
	}
	ps = nil
	judgeQIDO(&ps, response(200, beeld.MediaDICOMJSON, []byte(`[{"00100020":{"vr":"LO","Value":["`+bsn+`"]}}]`)), bsn, beeld.TagStudyInstanceUID)
	if len(ps) == 0 {
		t.Error("a study without its UID passed")
	}
	if !sameSet([]string{"a", "b"}, []string{"b", "a"}) || sameSet([]string{"a", "a"}, []string{"a", "b"}) {
		t.Error("sameSet")
	}
}

func TestJudgeInstance(t *testing.T) {
	st := testStudy(t, bsn)
	in := st.Series[0].Instances[0]
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	part, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {beeld.MediaDICOM}})
	_, _ = part.Write(in.File)
	_ = mw.Close()
	ct := beeld.MediaStudy + "; boundary=" + mw.Boundary()
	var ps validation.Problems
	judgeInstance(&ps, response(200, ct, buf.Bytes()), bsn, st.UID, st.Series[0].UID, in.SOPInstanceUID)
	if len(ps) != 0 {
		t.Fatalf("the instance asked: %v", ps)
	}
	for name, c := range map[string]struct {
		ct, bsn, instance string
	}{
		"another instance":     {ct, bsn, st.Series[0].Instances[1].SOPInstanceUID},
		"another patient":      {ct, "999990020", in.SOPInstanceUID},
		"not multipart":        {beeld.MediaDICOM, bsn, in.SOPInstanceUID},
		"multipart of another": {`multipart/related; type="application/octet-stream"; boundary=` + mw.Boundary(), bsn, in.SOPInstanceUID},
	} {
		ps = nil
		if judgeInstance(&ps, response(200, c.ct, buf.Bytes()), c.bsn, st.UID, st.Series[0].UID, c.instance); len(ps) == 0 {
			t.Errorf("%s passed", name)
		}
	}
}

func TestStudyEvents(t *testing.T) {
	since := time.Now().Add(-time.Minute)
	q := base64.StdEncoding.EncodeToString([]byte("DICOMweb studies/1.2.3"))
	b := []byte(`{"resourceType":"Bundle","entry":[
		{"resource":{"outcome":"4","recorded":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","entity":[{"query":"` + q + `"}]}},
		{"resource":{"outcome":"0","recorded":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","entity":[{"what":{"reference":"ImagingStudy/1.2.3"}}]}},
		{"resource":{"outcome":"4","recorded":"` + since.Add(-time.Hour).UTC().Format(time.RFC3339Nano) + `","entity":[{"query":"` + q + `"}]}},
		{"resource":{"outcome":"4","recorded":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","entity":[{"what":{"reference":"ImagingStudy/9.9"}}]}}]}`)
	refused, ok, err := studyEvents(b, "1.2.3", since)
	if err != nil || refused != 1 || ok != 1 {
		t.Errorf("refused %d, ok %d, %v; want 1, 1", refused, ok, err)
	}
	if _, _, err := studyEvents([]byte(`{"resourceType":"OperationOutcome"}`), "1.2.3", since); err == nil {
		t.Error("an OperationOutcome read as an audit trail")
	}
}
