package beeld

import (
	"runtime"
	"strings"
	"testing"
)

var testPatient = Patient{BSN: "999990019", Family: "de Vries", Given: "Anna", BirthDate: "19800101", Sex: "F"}

func TestDemoStudiesParseBack(t *testing.T) {
	studies, err := DemoStudies(testPatient)
	if err != nil {
		t.Fatal(err)
	}
	if len(studies) != 2 || studies[0].InstanceCount() != 2 || studies[1].InstanceCount() != 3 {
		t.Fatalf("unexpected demo studies: %d", len(studies))
	}
	seen := map[string]bool{}
	for _, st := range studies {
		if !strings.HasPrefix(st.UID, "2.25.") || len(st.UID) > 64 {
			t.Errorf("study UID %q is not a 2.25 UID of at most 64 characters", st.UID)
		}
		for _, se := range st.Series {
			for _, in := range se.Instances {
				info, err := ParseInstance(in.File)
				if err != nil {
					t.Fatalf("instance %s does not parse back: %v", in.SOPInstanceUID, err)
				}
				want := InstanceInfo{SOPClassUID: SOPClassSecondaryCapture, SOPInstanceUID: in.SOPInstanceUID,
					StudyInstanceUID: st.UID, SeriesUID: se.UID, PatientID: testPatient.BSN, IssuerOfPatientID: OIDBSN,
					TransferSyntaxUID: TransferSyntaxExplicitLE, MediaStorageSOPInstanceUID: in.SOPInstanceUID,
					Rows: 16, Columns: 16, PixelDataBytes: 256}
				if info != want {
					t.Errorf("parsed %+v\nwant   %+v", info, want)
				}
				if seen[in.SOPInstanceUID] {
					t.Errorf("SOP instance UID %s twice", in.SOPInstanceUID)
				}
				seen[in.SOPInstanceUID] = true
			}
		}
	}
	again, err := DemoStudies(testPatient)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].UID != studies[0].UID {
		t.Error("the same patient's studies got other UIDs on a second run")
	}
}

func TestParseInstanceRefusesGarbage(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":     nil,
		"no DICM":   make([]byte, 200),
		"truncated": append(append(make([]byte, 128), "DICM"...), 2, 0, 1),
	} {
		if _, err := ParseInstance(b); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

// TestParseInstanceRefusesHugeLengths: a value length past the end of the
// file is refused before anything is allocated for it.
func TestParseInstanceRefusesHugeLengths(t *testing.T) {
	studies, err := DemoStudies(testPatient)
	if err != nil {
		t.Fatal(err)
	}
	f := studies[0].Series[0].Instances[0].File
	info, err := ParseInstance(f)
	if err != nil {
		t.Fatal(err)
	}
	// The pixel data's 4-byte length sits just before its value, at the end.
	at := len(f) - info.PixelDataBytes - 4
	b := append([]byte(nil), f[:at]...)
	b = append(b, 0xF0, 0xFF, 0xFF, 0xFF)
	b = append(b, make([]byte, 64)...)
	allocs := testing.AllocsPerRun(1, func() { _, err = ParseInstance(b) })
	if err == nil {
		t.Fatal("a file declaring a 4 GiB value was parsed")
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	before := m.TotalAlloc
	_, _ = ParseInstance(b)
	runtime.ReadMemStats(&m)
	if grown := m.TotalAlloc - before; grown > 1<<20 {
		t.Errorf("refusing the file allocated %d bytes (%v allocations)", grown, allocs)
	}
}
