package beeld

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// DICOM UIDs the generator uses.
const (
	// SOPClassSecondaryCapture is Secondary Capture Image Storage: a small
	// image of any modality, which needs no acquisition attributes.
	SOPClassSecondaryCapture = "1.2.840.10008.5.1.4.1.1.7"
	// TransferSyntaxExplicitLE is Explicit VR Little Endian.
	TransferSyntaxExplicitLE = "1.2.840.10008.1.2.1"
	// implementationClassUID identifies the generating implementation: a
	// UUID-derived UID (2.25, ISO/IEC 9834-8) fixed for Schakel.
	implementationClassUID = "2.25.216086564733916356838420358102734530241"
	implementationVersion  = "SCHAKEL_1"
)

// Patient is whom generated studies are of.
type Patient struct {
	BSN       string
	Family    string // e.g. "de Vries"
	Given     string // e.g. "Anna"
	BirthDate string // YYYYMMDD; may be empty
	Sex       string // DICOM: F, M or O; may be empty
}

// dicomName is the patient's name as a DICOM PN (family^given).
func (p Patient) dicomName() string { return p.Family + "^" + p.Given }

// StudySpec describes a study to generate.
type StudySpec struct {
	// UID is the Study Instance UID; empty: derived from the patient and
	// the study's number.
	UID         string
	Description string
	Date        string // YYYYMMDD
	Time        string // HHMMSS
	Accession   string
	// Series lists, per series, its modality (CR, US, CT, MR, ...) and the
	// number of instances.
	Series []SeriesSpec
	// Rows and Columns of every image (8-bit monochrome); default 16×16.
	Rows, Columns int
}

// SeriesSpec is one series of a StudySpec.
type SeriesSpec struct {
	Modality    string
	Description string
	Instances   int
}

// Study is a generated study: its attributes and its DICOM files.
type Study struct {
	UID         string
	ID          string
	Date, Time  string
	Accession   string
	Description string
	Referring   string
	Patient     Patient
	Series      []*Series
}

// Series is one series of a Study.
type Series struct {
	UID         string
	Number      int
	Modality    string
	Description string
	Instances   []*Instance
}

// Instance is one SOP instance: its identifiers and its DICOM Part 10 file.
type Instance struct {
	SOPClassUID    string
	SOPInstanceUID string
	Number         int
	Rows, Columns  int
	// File is the complete DICOM Part 10 file (preamble, file meta, data set).
	File []byte
}

// Modalities are the distinct modalities of the study's series, in order.
func (s *Study) Modalities() []string {
	var out []string
	for _, se := range s.Series {
		if !containsString(out, se.Modality) {
			out = append(out, se.Modality)
		}
	}
	return out
}

// InstanceCount is the number of instances in the study.
func (s *Study) InstanceCount() int {
	n := 0
	for _, se := range s.Series {
		n += len(se.Instances)
	}
	return n
}

// DemoStudies are the studies the PACS stand-in holds of a demo patient: a
// chest X-ray (one series, two views) and an abdominal ultrasound (two
// series), tiny images.
func DemoStudies(p Patient) ([]*Study, error) {
	specs := []StudySpec{
		{Description: "X-thorax", Date: "20260312", Time: "101500", Accession: "ACC" + p.BSN[len(p.BSN)-4:] + "01",
			Series: []SeriesSpec{{Modality: "CR", Description: "Thorax PA en lateraal", Instances: 2}}},
		{Description: "Echo abdomen", Date: "20260915", Time: "143000", Accession: "ACC" + p.BSN[len(p.BSN)-4:] + "02",
			Series: []SeriesSpec{{Modality: "US", Description: "Lever en galblaas", Instances: 2}, {Modality: "US", Description: "Nieren", Instances: 1}}},
	}
	out := make([]*Study, 0, len(specs))
	for i, s := range specs {
		st, err := NewStudy(p, i+1, s)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// NewStudy generates study number n of patient p: UIDs derived from the
// patient and n (the same on every run), and a valid DICOM Part 10 file per
// instance.
func NewStudy(p Patient, n int, spec StudySpec) (*Study, error) {
	if len(p.BSN) != 9 {
		return nil, fmt.Errorf("beeld: patient BSN %q: nine digits expected", p.BSN)
	}
	if spec.Rows <= 0 {
		spec.Rows = 16
	}
	if spec.Columns <= 0 {
		spec.Columns = 16
	}
	key := fmt.Sprintf("%s/%d", p.BSN, n)
	uid := spec.UID
	if uid == "" {
		uid = uidOf("study", key)
	}
	st := &Study{UID: uid, ID: fmt.Sprintf("S%d", n), Date: spec.Date, Time: spec.Time,
		Accession: spec.Accession, Description: spec.Description, Referring: "Huisarts^Demo", Patient: p}
	for i, ss := range spec.Series {
		se := &Series{UID: uidOf("series", fmt.Sprintf("%s/%d", key, i+1)), Number: i + 1, Modality: ss.Modality, Description: ss.Description}
		for j := 0; j < ss.Instances; j++ {
			in := &Instance{SOPClassUID: SOPClassSecondaryCapture, SOPInstanceUID: uidOf("instance", fmt.Sprintf("%s/%d/%d", key, i+1, j+1)),
				Number: j + 1, Rows: spec.Rows, Columns: spec.Columns}
			f, err := writeInstance(st, se, in)
			if err != nil {
				return nil, fmt.Errorf("beeld: generate instance %s: %w", in.SOPInstanceUID, err)
			}
			in.File = f
			se.Instances = append(se.Instances, in)
		}
		st.Series = append(st.Series, se)
	}
	return st, nil
}

// uidOf derives a DICOM UID from a UUID (2.25 arc, ISO/IEC 9834-8): the
// UUID is a version 8 (name-based, custom hash) UUID of kind and key.
func uidOf(kind, key string) string {
	h := sha256.Sum256([]byte("schakel-beeld/" + kind + "/" + key))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return "2.25." + new(big.Int).SetBytes(b).String()
}

// writeInstance encodes one instance as a DICOM Part 10 file, Explicit VR
// Little Endian, 8-bit monochrome pixel data.
func writeInstance(st *Study, se *Series, in *Instance) ([]byte, error) {
	pixels := make([]byte, in.Rows*in.Columns)
	seed := int(st.UID[len(st.UID)-1]) + se.Number*7 + in.Number*13
	for y := 0; y < in.Rows; y++ {
		for x := 0; x < in.Columns; x++ {
			pixels[y*in.Columns+x] = byte((x*255/max(in.Columns-1, 1) + y*3 + seed) & 0xff)
		}
	}
	var elems []*dicom.Element
	add := func(t tag.Tag, v any) error {
		e, err := dicom.NewElement(t, v)
		if err != nil {
			return fmt.Errorf("element %s: %w", t, err)
		}
		elems = append(elems, e)
		return nil
	}
	strs := func(s ...string) []string { return s }
	steps := []struct {
		t tag.Tag
		v any
	}{
		{tag.FileMetaInformationVersion, []byte{0, 1}},
		{tag.MediaStorageSOPClassUID, strs(in.SOPClassUID)},
		{tag.MediaStorageSOPInstanceUID, strs(in.SOPInstanceUID)},
		{tag.TransferSyntaxUID, strs(TransferSyntaxExplicitLE)},
		{tag.ImplementationClassUID, strs(implementationClassUID)},
		{tag.ImplementationVersionName, strs(implementationVersion)},
		{tag.SpecificCharacterSet, strs("ISO_IR 192")},
		{tag.SOPClassUID, strs(in.SOPClassUID)},
		{tag.SOPInstanceUID, strs(in.SOPInstanceUID)},
		{tag.StudyDate, strs(st.Date)},
		{tag.StudyTime, strs(st.Time)},
		{tag.AccessionNumber, strs(st.Accession)},
		{tag.Modality, strs(se.Modality)},
		{tag.ConversionType, strs("WSD")},
		{tag.ReferringPhysicianName, strs(st.Referring)},
		{tag.StudyDescription, strs(st.Description)},
		{tag.SeriesDescription, strs(se.Description)},
		{tag.PatientName, strs(st.Patient.dicomName())},
		{tag.PatientID, strs(st.Patient.BSN)},
		{tag.IssuerOfPatientID, strs(OIDBSN)},
		{tag.PatientBirthDate, strs(st.Patient.BirthDate)},
		{tag.PatientSex, strs(st.Patient.Sex)},
		{tag.StudyInstanceUID, strs(st.UID)},
		{tag.SeriesInstanceUID, strs(se.UID)},
		{tag.StudyID, strs(st.ID)},
		{tag.SeriesNumber, strs(fmt.Sprint(se.Number))},
		{tag.InstanceNumber, strs(fmt.Sprint(in.Number))},
		{tag.SamplesPerPixel, []int{1}},
		{tag.PhotometricInterpretation, strs("MONOCHROME2")},
		{tag.Rows, []int{in.Rows}},
		{tag.Columns, []int{in.Columns}},
		{tag.BitsAllocated, []int{8}},
		{tag.BitsStored, []int{8}},
		{tag.HighBit, []int{7}},
		{tag.PixelRepresentation, []int{0}},
		{tag.PixelData, dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: pixels}},
	}
	for _, s := range steps {
		if err := add(s.t, s.v); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(pixels) + 1024)
	if err := dicom.Write(&buf, dicom.Dataset{Elements: elems}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// InstanceInfo is what a received DICOM file says about itself.
type InstanceInfo struct {
	SOPClassUID, SOPInstanceUID   string
	StudyInstanceUID, SeriesUID   string
	PatientID, IssuerOfPatientID  string
	TransferSyntaxUID             string
	MediaStorageSOPInstanceUID    string
	Rows, Columns, PixelDataBytes int
}

// ParseInstance parses a DICOM Part 10 file and returns its identifying
// attributes; it fails for anything that is not a complete, consistent file.
func ParseInstance(b []byte) (info InstanceInfo, err error) {
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return InstanceInfo{}, fmt.Errorf("%w: not a DICOM Part 10 file (no DICM preamble)", ErrBadQuery)
	}
	// The file meta starts with its group length: (0002,0000) UL, 4 bytes.
	if len(b) < 144 || binary.LittleEndian.Uint32(b[132:]) != 0x00000002 || string(b[136:138]) != "UL" || binary.LittleEndian.Uint16(b[138:]) != 4 {
		return InstanceInfo{}, fmt.Errorf("%w: the file meta information does not start with its group length", ErrBadQuery)
	}
	if err := checkLengths(b); err != nil {
		return InstanceInfo{}, err
	}
	// The files come from another organisation: whatever they hold, a fault
	// of the parser on them is a refused file, not a crashed node.
	defer func() {
		if v := recover(); v != nil {
			info, err = InstanceInfo{}, fmt.Errorf("%w: the DICOM file could not be parsed (%v)", ErrBadQuery, v)
		}
	}()
	ds, err := dicom.Parse(bytes.NewReader(b), int64(len(b)), nil, dicom.SkipProcessingPixelDataValue())
	if err != nil {
		return InstanceInfo{}, fmt.Errorf("parse DICOM: %w", err)
	}
	str := func(t tag.Tag) string {
		e, err := ds.FindElementByTag(t)
		if err != nil {
			return ""
		}
		if v, ok := e.Value.GetValue().([]string); ok && len(v) > 0 {
			return strings.TrimRight(v[0], " \x00")
		}
		return ""
	}
	num := func(t tag.Tag) int {
		e, err := ds.FindElementByTag(t)
		if err != nil {
			return 0
		}
		if v, ok := e.Value.GetValue().([]int); ok && len(v) > 0 {
			return v[0]
		}
		return 0
	}
	info = InstanceInfo{SOPClassUID: str(tag.SOPClassUID), SOPInstanceUID: str(tag.SOPInstanceUID),
		StudyInstanceUID: str(tag.StudyInstanceUID), SeriesUID: str(tag.SeriesInstanceUID),
		PatientID: str(tag.PatientID), IssuerOfPatientID: str(tag.IssuerOfPatientID),
		TransferSyntaxUID: str(tag.TransferSyntaxUID), MediaStorageSOPInstanceUID: str(tag.MediaStorageSOPInstanceUID),
		Rows: num(tag.Rows), Columns: num(tag.Columns)}
	if e, err := ds.FindElementByTag(tag.PixelData); err == nil {
		if p, ok := e.Value.GetValue().(dicom.PixelDataInfo); ok {
			info.PixelDataBytes = len(p.UnprocessedValueData)
		}
	}
	switch {
	case info.SOPInstanceUID == "" || info.StudyInstanceUID == "" || info.SeriesUID == "":
		return info, fmt.Errorf("%w: the file lacks its SOP, study or series instance UID", ErrBadQuery)
	case info.MediaStorageSOPInstanceUID != info.SOPInstanceUID:
		return info, fmt.Errorf("%w: file meta names SOP instance %s, the data set %s", ErrBadQuery, info.MediaStorageSOPInstanceUID, info.SOPInstanceUID)
	}
	return info, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Transfer syntaxes checkLengths can walk.
const (
	transferSyntaxImplicitLE = "1.2.840.10008.1.2"
	transferSyntaxDeflated   = "1.2.840.10008.1.2.1.99"
	transferSyntaxExplicitBE = "1.2.840.10008.1.2.2"
)

// checkLengths walks the file's elements and refuses one whose value length
// runs past the end of the file, before the DICOM library sees it: the
// library allocates a value's buffer from its declared length, so a file
// of a few bytes could otherwise make it allocate gigabytes. Undefined
// lengths (sequences, encapsulated pixel data) are walked into: their items
// and delimiters are checked as they come.
func checkLengths(b []byte) error {
	const undefined = 0xFFFFFFFF
	bad := func(pos int, what string) error {
		return fmt.Errorf("%w: %s at byte %d", ErrBadQuery, what, pos)
	}
	explicit := true
	pos := 132
	for pos < len(b) {
		if len(b)-pos < 8 {
			return bad(pos, "truncated element header")
		}
		group := binary.LittleEndian.Uint16(b[pos:])
		elem := binary.LittleEndian.Uint16(b[pos+2:])
		var vl uint32
		switch {
		case group == 0xFFFE: // item and delimiters: tag and a 4-byte length, no VR
			vl = binary.LittleEndian.Uint32(b[pos+4:])
			pos += 8
			if elem != 0xE000 || vl == undefined {
				continue // a delimiter, or an item whose elements follow
			}
		case explicit || group == 0x0002:
			vr := string(b[pos+4 : pos+6])
			switch vr {
			case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
				if len(b)-pos < 12 {
					return bad(pos, "truncated element header")
				}
				vl = binary.LittleEndian.Uint32(b[pos+8:])
				pos += 12
			default:
				if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
					return bad(pos, "not a value representation")
				}
				vl = uint32(binary.LittleEndian.Uint16(b[pos+6:]))
				pos += 8
			}
			if vl == undefined {
				continue
			}
		default:
			vl = binary.LittleEndian.Uint32(b[pos+4:])
			pos += 8
			if vl == undefined {
				continue
			}
		}
		if uint64(vl) > uint64(len(b)-pos) {
			return bad(pos, fmt.Sprintf("element (%04x,%04x) declares %d bytes, %d remain", group, elem, vl, len(b)-pos))
		}
		if group == 0x0002 && elem == 0x0010 {
			switch ts := strings.TrimRight(string(b[pos:pos+int(vl)]), " \x00"); ts {
			case transferSyntaxDeflated, transferSyntaxExplicitBE:
				return fmt.Errorf("%w: transfer syntax %s is not supported", ErrBadQuery, ts)
			case transferSyntaxImplicitLE:
				explicit = false
			}
		}
		pos += int(vl)
	}
	return nil
}
