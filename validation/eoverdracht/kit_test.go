package eoverdracht_test

import (
	"context"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/internal/kittest"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/validation"
	kiteo "github.com/schakel-nl/schakel/validation/eoverdracht"
)

// TestKitValidatesSchakelNodes runs the eOverdracht kit against the
// transfer network (network.Up with Care eoverdracht, the kit admitted as
// the Twiin validation service): the hospital's node as sender, holding
// the scenario's dossier, and the nursing home's node as receiver, whose
// participant's decisions the kit makes through the internal API. Every
// mandatory case passes.
func TestKitValidatesSchakelNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	nw := kittest.Network(t, network.Options{Patients: 1, Care: eoverdracht.Name})
	if err := nw.LoadNursingTransferDossier(context.Background()); err != nil {
		t.Fatal(err)
	}
	kit := kittest.New(t, nw, kiteo.Register)
	for _, tc := range []struct {
		role validation.Role
		ura  string
		want []string // eOverdracht cases that must have run
	}{
		{validation.RoleSender, network.Hospital.URA, []string{"eoverdracht.sender.documents", "eoverdracht.sender.rejected"}},
		{validation.RoleReceiver, network.NursingHome.URA, []string{"eoverdracht.receiver.accepted-flow", "eoverdracht.receiver.rejected", "eoverdracht.receiver.other-patient"}},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			cfg := kit.Config(t, tc.ura, tc.role, kiteo.Name)
			cfg.Patient = eoverdracht.DemoPatientBSN
			rep := kit.Run(t, cfg)
			// No credential of the run is shown in the report.
			js, err := rep.JSON()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(js), "eyJ") {
				t.Error("a JWT is shown in the report")
			}
			ran := map[string]bool{}
			for _, r := range rep.Results {
				ran[r.ID] = true
				if strings.HasPrefix(r.ID, "eoverdracht.") {
					t.Logf("%s %s: %s", r.ID, r.Status, r.Detail)
				}
				if r.Mandatory && r.Status != validation.Passed {
					t.Errorf("%s %s: %s", r.ID, r.Status, r.Detail)
				}
			}
			for _, id := range tc.want {
				if !ran[id] {
					t.Errorf("case %s did not run", id)
				}
			}
			if !rep.Summary.Conformant {
				t.Errorf("summary: %+v", rep.Summary)
			}
			t.Logf("%s: %d cases, %d passed", tc.role, rep.Summary.Total, rep.Summary.Passed)
		})
	}
}
