package beeld

import (
	"encoding/json"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// TestImagingStudyIsValidR4 checks the mapping against the R4 definitions:
// every element known, every type and cardinality right.
func TestImagingStudyIsValidR4(t *testing.T) {
	studies, err := DemoStudies(testPatient)
	if err != nil {
		t.Fatal(err)
	}
	st := studies[1]
	v := StudyView{Study: roundTrip(t, studyDataset(st, "http://pacs"))}
	for _, se := range st.Series {
		sv := SeriesView{Series: roundTrip(t, seriesDataset(st, se, "http://pacs"))}
		for _, in := range se.Instances {
			sv.Instances = append(sv.Instances, roundTrip(t, instanceDataset(st, se, in, "http://pacs")))
		}
		v.Series = append(v.Series, sv)
	}
	doc, err := ImagingStudy(v, "https://node/dicomweb/90000002")
	if err != nil {
		t.Fatal(err)
	}
	if issues := validate.Resource(fhir.R4, doc); len(issues) > 0 {
		t.Fatalf("not a valid R4 ImagingStudy: %+v\n%s", issues, doc)
	}
	bundle, err := SearchBundle("https://node/fhir/r4/90000002", "https://node/fhir/r4/90000002/ImagingStudy", []json.RawMessage{doc})
	if err != nil {
		t.Fatal(err)
	}
	if issues := validate.Resource(fhir.R4, bundle); len(issues) > 0 {
		t.Fatalf("not a valid R4 Bundle: %+v", issues)
	}
	if _, err := ImagingStudy(StudyView{Study: Dataset{TagStudyInstanceUID: str("UI", "not a uid!")}}, "x"); err == nil {
		t.Error("a study without a usable UID was mapped")
	}
}

// roundTrip passes a dataset through JSON, as it arrives from a PACS.
func roundTrip(t *testing.T, d Dataset) Dataset {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var out Dataset
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestImagingStudyWithoutPatientName: a PACS that answers no PatientName
// still gives a valid R4 ImagingStudy (no empty subject.display).
func TestImagingStudyWithoutPatientName(t *testing.T) {
	v := StudyView{Study: Dataset{TagStudyInstanceUID: {VR: "UI", Value: []any{"1.2.3"}}, TagPatientID: {VR: "LO", Value: []any{testPatient.BSN}}}}
	doc, err := ImagingStudy(v, "https://node/dicomweb/90000002")
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range validate.Resource(fhir.R4, doc) {
		if is.Severity == "error" || is.Severity == "fatal" {
			t.Errorf("%s: %s", is.Expression, is.Diagnostics)
		}
	}
}

// TestViewOfGivenUID: a study generated under a given UID keeps it, and
// its view lists every series and instance as QIDO-RS would.
func TestViewOfGivenUID(t *testing.T) {
	st, err := NewStudy(testPatient, 1, StudySpec{UID: "2.25.42", Series: []SeriesSpec{{Modality: "CR", Instances: 2}, {Modality: "CR", Instances: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if st.UID != "2.25.42" {
		t.Fatalf("study UID %s", st.UID)
	}
	info, err := ParseInstance(st.Series[0].Instances[0].File)
	if err != nil || info.StudyInstanceUID != "2.25.42" {
		t.Fatalf("the file's study %q, %v", info.StudyInstanceUID, err)
	}
	v := ViewOf(st, "https://pacs/dicomweb")
	if v.Study.String(TagStudyInstanceUID) != "2.25.42" || len(v.Series) != 2 || len(v.Series[0].Instances) != 2 || len(v.Series[1].Instances) != 1 {
		t.Fatalf("view %+v", v)
	}
	doc, err := ImagingStudy(v, "https://node/dicomweb/90000002")
	if err != nil {
		t.Fatal(err)
	}
	got, err := summaries([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":`+string(doc)+`}]}`), testPatient.BSN)
	if err != nil || len(got) != 1 || len(got[0].SOPInstanceUIDs) != 3 {
		t.Errorf("summaries: %+v, %v", got, err)
	}
}
