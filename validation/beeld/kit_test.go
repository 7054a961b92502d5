package beeld_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/faults"
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
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := network.Up(ctx, network.Options{DataDir: t.TempDir(), Patients: 2, Imaging: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() {
		cancel()
		if err := nw.Wait(); err != nil {
			t.Errorf("network stopped with: %v", err)
		}
	})
	file, id, err := validation.LoadIdentity(nw.ValidatorDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := validation.NewRegistry()
	if err := reg.Add(validation.GenericCases()...); err != nil {
		t.Fatal(err)
	}
	if err := kitbeeld.Register(reg); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, ura string) *validation.Report {
		target, ok := file.TargetFor(ura, "")
		if !ok {
			t.Fatalf("kit.json lists no node for %s", ura)
		}
		token, err := os.ReadFile(target.TokenFile)
		if err != nil {
			t.Fatal(err)
		}
		patient := target.Patient
		if patient == "" {
			patient = nw.Patients[0].BSN
		}
		rep, err := validation.Run(ctx, validation.Config{
			Target: target.PublicURL, TargetURA: ura, Role: validation.RoleHolder, Care: kitbeeld.Name, Kit: id,
			Addressbook: file.Addressbook, Listen: file.Listen, Patient: patient,
			Driver: validation.SchakelDriver{InternalURL: target.InternalURL, Token: strings.TrimSpace(string(token))},
			Wait:   15 * time.Second,
		}, reg)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	t.Run("hospital", func(t *testing.T) {
		hosp, _ := file.TargetFor(network.Hospital.URA, "")
		if hosp.Patient != nw.Patients[0].BSN {
			t.Errorf("kit.json names patient %q at the hospital, want %s (studies in the PACS, consent at Mitz)", hosp.Patient, nw.Patients[0].BSN)
		}
		rep := run(t, network.Hospital.URA)
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
		if own < 15 || !rep.Summary.Conformant {
			t.Errorf("%d Beeldbeschikbaarheid cases; summary %+v", own, rep.Summary)
		}
		t.Logf("%d cases, %d passed", rep.Summary.Total, rep.Summary.Passed)
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
	ctx, cancel := context.WithCancel(context.Background())
	broken := faults.New()
	nw, err := network.Up(ctx, network.Options{DataDir: t.TempDir(), Patients: 1, Imaging: true, Faults: broken})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() {
		cancel()
		if err := nw.Wait(); err != nil {
			t.Errorf("network stopped with: %v", err)
		}
	})
	file, id, err := validation.LoadIdentity(nw.ValidatorDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := validation.NewRegistry()
	if err := reg.Add(validation.GenericCases()...); err != nil {
		t.Fatal(err)
	}
	if err := kitbeeld.Register(reg); err != nil {
		t.Fatal(err)
	}
	target, ok := file.TargetFor(network.GP.URA, "")
	if !ok {
		t.Fatalf("kit.json lists no node for %s", network.GP.URA)
	}
	token, err := os.ReadFile(target.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T) *validation.Report {
		rep, err := validation.Run(ctx, validation.Config{
			Target: target.PublicURL, TargetURA: network.GP.URA, Role: validation.RoleRequester, Care: kitbeeld.Name, Kit: id,
			Addressbook: file.Addressbook, Listen: file.Listen,
			Driver: validation.SchakelDriver{InternalURL: target.InternalURL, Token: strings.TrimSpace(string(token))},
			Wait:   15 * time.Second,
		}, reg)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	t.Run("conformant", func(t *testing.T) {
		rep := run(t)
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
		if own < 8 || !rep.Summary.Conformant {
			t.Errorf("%d Beeldbeschikbaarheid requester cases; summary %+v", own, rep.Summary)
		}
		t.Logf("%d cases, %d passed", rep.Summary.Total, rep.Summary.Passed)
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
