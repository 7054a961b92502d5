package beeld

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Attribute is one attribute of the DICOM JSON model (PS3.18 F.2.2): its
// VR and values; a PN value is an object with an Alphabetic name, bulk data
// is referenced by BulkDataURI.
type Attribute struct {
	VR          string `json:"vr"`
	Value       []any  `json:"Value,omitempty"`
	BulkDataURI string `json:"BulkDataURI,omitempty"`
}

// Dataset is a DICOM JSON object: attributes keyed by their tag as eight
// upper-case hexadecimal digits.
type Dataset map[string]Attribute

// Tags of the DICOM JSON answers, as DICOM JSON keys.
const (
	TagSpecificCharacterSet   = "00080005"
	TagSOPClassUID            = "00080016"
	TagSOPInstanceUID         = "00080018"
	TagStudyDate              = "00080020"
	TagStudyTime              = "00080030"
	TagAccessionNumber        = "00080050"
	TagModality               = "00080060"
	TagModalitiesInStudy      = "00080061"
	TagReferringPhysician     = "00080090"
	TagRetrieveURL            = "00081190"
	TagStudyDescription       = "00081030"
	TagSeriesDescription      = "0008103E"
	TagPatientName            = "00100010"
	TagPatientID              = "00100020"
	TagIssuerOfPatientID      = "00100021"
	TagPatientBirthDate       = "00100030"
	TagPatientSex             = "00100040"
	TagStudyInstanceUID       = "0020000D"
	TagSeriesInstanceUID      = "0020000E"
	TagStudyID                = "00200010"
	TagSeriesNumber           = "00200011"
	TagInstanceNumber         = "00200013"
	TagNumberOfStudySeries    = "00201206"
	TagNumberOfStudyInstances = "00201208"
	TagNumberOfSeriesInstance = "00201209"
	TagSamplesPerPixel        = "00280002"
	TagPhotometric            = "00280004"
	TagRows                   = "00280010"
	TagColumns                = "00280011"
	TagBitsAllocated          = "00280100"
	TagPixelData              = "7FE00010"
)

// keywords maps the attribute keywords a QIDO-RS query may use to tags.
var keywords = map[string]string{
	"StudyDate": TagStudyDate, "StudyTime": TagStudyTime, "AccessionNumber": TagAccessionNumber,
	"ModalitiesInStudy": TagModalitiesInStudy, "Modality": TagModality, "PatientName": TagPatientName,
	"PatientID": TagPatientID, "IssuerOfPatientID": TagIssuerOfPatientID, "StudyInstanceUID": TagStudyInstanceUID,
	"SeriesInstanceUID": TagSeriesInstanceUID, "SOPInstanceUID": TagSOPInstanceUID, "StudyID": TagStudyID,
	"SeriesNumber": TagSeriesNumber, "InstanceNumber": TagInstanceNumber, "SOPClassUID": TagSOPClassUID,
	"ReferringPhysicianName": TagReferringPhysician, "StudyDescription": TagStudyDescription,
	"PatientBirthDate": TagPatientBirthDate, "PatientSex": TagPatientSex,
}

// TagOf returns the DICOM JSON key of a QIDO-RS attribute named by keyword
// or by tag (eight hexadecimal digits); "" when it is neither.
func TagOf(name string) string {
	if t, ok := keywords[name]; ok {
		return t
	}
	if len(name) == 8 {
		if _, err := strconv.ParseUint(name, 16, 32); err == nil {
			return strings.ToUpper(name)
		}
	}
	return ""
}

func str(vr string, v string) Attribute {
	if v == "" {
		return Attribute{VR: vr}
	}
	return Attribute{VR: vr, Value: []any{v}}
}

func strs(vr string, vs []string) Attribute {
	a := Attribute{VR: vr}
	for _, v := range vs {
		a.Value = append(a.Value, v)
	}
	return a
}

func num(vr string, n int) Attribute { return Attribute{VR: vr, Value: []any{n}} }

func pn(v string) Attribute {
	if v == "" {
		return Attribute{VR: "PN"}
	}
	return Attribute{VR: "PN", Value: []any{map[string]string{"Alphabetic": v}}}
}

// String returns the attribute's first value as text: a string, a number,
// or a PN's Alphabetic name; "" when it has none.
func (d Dataset) String(tag string) string {
	a, ok := d[tag]
	if !ok || len(a.Value) == 0 {
		return ""
	}
	switch v := a.Value[0].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		return strconv.Itoa(v)
	case json.Number:
		return v.String()
	case map[string]any:
		s, _ := v["Alphabetic"].(string)
		return s
	case map[string]string:
		return v["Alphabetic"]
	}
	return ""
}

// Strings returns every value of the attribute as text.
func (d Dataset) Strings(tag string) []string {
	a, ok := d[tag]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(a.Value))
	for i := range a.Value {
		out = append(out, Dataset{tag: Attribute{Value: a.Value[i : i+1]}}.String(tag))
	}
	return out
}

// Int returns the attribute's first value as a number; 0 when it has none.
func (d Dataset) Int(tag string) int {
	n, _ := strconv.Atoi(d.String(tag))
	return n
}

// studyDataset is the study-level answer of QIDO-RS for st.
func studyDataset(st *Study, base string) Dataset {
	return Dataset{
		TagSpecificCharacterSet:   str("CS", "ISO_IR 192"),
		TagStudyDate:              str("DA", st.Date),
		TagStudyTime:              str("TM", st.Time),
		TagAccessionNumber:        str("SH", st.Accession),
		TagModalitiesInStudy:      strs("CS", st.Modalities()),
		TagReferringPhysician:     pn(st.Referring),
		TagStudyDescription:       str("LO", st.Description),
		TagPatientName:            pn(st.Patient.dicomName()),
		TagPatientID:              str("LO", st.Patient.BSN),
		TagIssuerOfPatientID:      str("LO", OIDBSN),
		TagPatientBirthDate:       str("DA", st.Patient.BirthDate),
		TagPatientSex:             str("CS", st.Patient.Sex),
		TagStudyInstanceUID:       str("UI", st.UID),
		TagStudyID:                str("SH", st.ID),
		TagNumberOfStudySeries:    num("IS", len(st.Series)),
		TagNumberOfStudyInstances: num("IS", st.InstanceCount()),
		TagRetrieveURL:            str("UR", base+"/studies/"+st.UID),
	}
}

// seriesDataset is the series-level answer of QIDO-RS for se of st.
func seriesDataset(st *Study, se *Series, base string) Dataset {
	return Dataset{
		TagSpecificCharacterSet:   str("CS", "ISO_IR 192"),
		TagModality:               str("CS", se.Modality),
		TagSeriesDescription:      str("LO", se.Description),
		TagSeriesInstanceUID:      str("UI", se.UID),
		TagSeriesNumber:           num("IS", se.Number),
		TagNumberOfSeriesInstance: num("IS", len(se.Instances)),
		TagStudyInstanceUID:       str("UI", st.UID),
		TagPatientID:              str("LO", st.Patient.BSN),
		TagIssuerOfPatientID:      str("LO", OIDBSN),
		TagRetrieveURL:            str("UR", base+"/studies/"+st.UID+"/series/"+se.UID),
	}
}

// instanceDataset is the instance-level answer of QIDO-RS for in.
func instanceDataset(st *Study, se *Series, in *Instance, base string) Dataset {
	return Dataset{
		TagSpecificCharacterSet: str("CS", "ISO_IR 192"),
		TagSOPClassUID:          str("UI", in.SOPClassUID),
		TagSOPInstanceUID:       str("UI", in.SOPInstanceUID),
		TagInstanceNumber:       num("IS", in.Number),
		TagRows:                 num("US", in.Rows),
		TagColumns:              num("US", in.Columns),
		TagStudyInstanceUID:     str("UI", st.UID),
		TagSeriesInstanceUID:    str("UI", se.UID),
		TagModality:             str("CS", se.Modality),
		TagPatientID:            str("LO", st.Patient.BSN),
		TagIssuerOfPatientID:    str("LO", OIDBSN),
		TagRetrieveURL:          str("UR", base+"/studies/"+st.UID+"/series/"+se.UID+"/instances/"+in.SOPInstanceUID),
	}
}

// metadataDataset is the WADO-RS metadata of in: every attribute of the
// instance, the pixel data by reference (BulkDataURI).
func metadataDataset(st *Study, se *Series, in *Instance, base string) Dataset {
	d := studyDataset(st, base)
	delete(d, TagRetrieveURL)
	delete(d, TagModalitiesInStudy)
	delete(d, TagNumberOfStudySeries)
	delete(d, TagNumberOfStudyInstances)
	for k, v := range seriesDataset(st, se, base) {
		d[k] = v
	}
	for k, v := range instanceDataset(st, se, in, base) {
		d[k] = v
	}
	delete(d, TagNumberOfSeriesInstance)
	delete(d, TagRetrieveURL)
	d[TagSamplesPerPixel] = num("US", 1)
	d[TagPhotometric] = str("CS", "MONOCHROME2")
	d[TagBitsAllocated] = num("US", 8)
	d[TagPixelData] = Attribute{VR: "OW", BulkDataURI: base + "/studies/" + st.UID + "/series/" + se.UID + "/instances/" + in.SOPInstanceUID + "/bulkdata/" + TagPixelData}
	return d
}
