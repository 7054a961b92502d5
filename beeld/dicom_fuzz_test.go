package beeld

import "testing"

// FuzzParseInstance: whatever a holder sends as a DICOM file, parsing it
// returns an error or an answer, never a panic.
func FuzzParseInstance(f *testing.F) {
	studies, err := DemoStudies(testPatient)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(studies[0].Series[0].Instances[0].File)
	f.Add(studies[0].Series[0].Instances[0].File[:200])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseInstance(b)
	})
}
