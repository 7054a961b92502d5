package beeld_test

import (
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/internal/kittest"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/validation"
	kitbeeld "github.com/schakel-nl/schakel/validation/beeld"
)

// TestKitValidatesHospitalAsHolder runs the kit against a real local
// network with the hospital's PACS stand-in (network.Up with Imaging, the
// kit admitted as the Twiin validation service): the hospital's node as
// Beeldbeschikbaarheid holder passes every mandatory case; the GP
// practice's node, which has no PACS, fails them.
func TestKitValidatesHospitalAsHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	nw := kittest.Network(t, network.Options{Patients: 2, Imaging: true})
	kit := kittest.New(t, nw, kitbeeld.Register)
	file := kit.File
	run := func(t *testing.T, ura string) *validation.Report {
		return kit.Run(t, kit.Config(t, ura, validation.RoleHolder, kitbeeld.Name))
	}

	t.Run("hospital", func(t *testing.T) {
		hosp, _ := file.TargetFor(network.Hospital.URA, "")
		if hosp.Patient != nw.Patients[0].BSN {
			t.Errorf("kit.json names patient %q at the hospital, want %s (studies in the PACS, consent at Mitz)", hosp.Patient, nw.Patients[0].BSN)
		}
		checkConformant(t, run(t, network.Hospital.URA), 15)
	})

	t.Run("node without a PACS", func(t *testing.T) {
		rep := run(t, network.GP.URA)
		if rep.Summary.Conformant {
			t.Fatal("a node without images validated as an imaging holder")
		}
		for _, r := range rep.Results {
			if r.ID == "beeld.holder.endpoints" && r.Status != validation.Failed {
				t.Errorf("%s %s: %s", r.ID, r.Status, r.Detail)
			}
		}
	})
}

// TestKitValidatesNodeAsRequester runs the kit as imaging holder against
// the GP practice's node (network.Up with Imaging): it passes every
// mandatory case as Beeldbeschikbaarheid requester; with the fault that
// passes on another patient's instances, the case that serves one fails.
func TestKitValidatesNodeAsRequester(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	broken := faults.New()
	kit := kittest.New(t, kittest.Network(t, network.Options{Patients: 1, Imaging: true, Faults: broken}), kitbeeld.Register)
	run := func(t *testing.T) *validation.Report {
		cfg := kit.Config(t, network.GP.URA, validation.RoleRequester, kitbeeld.Name)
		cfg.Patient = "" // the kit's own patient: the kit holds the images
		return kit.Run(t, cfg)
	}

	t.Run("conformant", func(t *testing.T) {
		checkConformant(t, run(t), 8)
	})

	t.Run("passes on another patient's images", func(t *testing.T) {
		broken.Switch(faults.ImagingOtherPatientPassed)
		defer broken.Switch()
		rep := run(t)
		if rep.Summary.Conformant {
			t.Error("a requester that hands its system another patient's images validated")
		}
		for _, r := range rep.Results {
			if r.ID == "beeld.requester.other-patient-instance" && r.Status != validation.Failed {
				t.Errorf("%s %s: %s", r.ID, r.Status, r.Detail)
			} else if r.Mandatory && r.Status != validation.Passed && r.ID != "beeld.requester.other-patient-instance" {
				t.Errorf("%s %s: %s (only the other patient's instance should fail)", r.ID, r.Status, r.Detail)
			}
		}
	})
}

// checkConformant holds a run against a conformant node: every mandatory
// case passed, at least min of them the application's own, and no report
// showing a DICOM file's bytes.
func checkConformant(t *testing.T, rep *validation.Report, min int) {
	t.Helper()
	own := 0
	for _, r := range rep.Results {
		if r.Application == kitbeeld.Name {
			own++
			t.Logf("%s %s: %s", r.ID, r.Status, r.Detail)
		}
		if r.Mandatory && r.Status != validation.Passed {
			t.Errorf("%s %s: %s", r.ID, r.Status, r.Detail)
		}
		for _, ex := range r.Exchanges {
			if strings.Contains(ex.ResponseBody, "DICM") {
				t.Errorf("%s: the report shows a DICOM file's bytes", r.ID)
			}
		}
	}
	if own < min || !rep.Summary.Conformant {
		t.Errorf("%d Beeldbeschikbaarheid cases, want at least %d; summary %+v", own, min, rep.Summary)
	}
	t.Logf("%d cases, %d passed", rep.Summary.Total, rep.Summary.Passed)
}
