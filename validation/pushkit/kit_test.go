package pushkit_test

import (
	"slices"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/internal/kittest"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/validation"
	kitcorrespondentie "github.com/schakel-nl/schakel/validation/correspondentie"
	kitgeboortezorg "github.com/schakel-nl/schakel/validation/geboortezorg"
)

// runner runs the kit against the nodes of a real local network.
type runner struct{ kit *kittest.Kit }

func startNetwork(t *testing.T, opts network.Options) *runner {
	t.Helper()
	opts.Patients = 1
	return &runner{kit: kittest.New(t, kittest.Network(t, opts), kitcorrespondentie.Spec().Register, kitgeboortezorg.Spec().Register)}
}

func (r *runner) run(t *testing.T, care string, role validation.Role, ura string) *validation.Report {
	t.Helper()
	cfg := r.kit.Config(t, ura, role, care)
	cfg.Patient = "" // a Push run names its patient in the payload
	cfg.Wait = 10 * time.Second
	return r.kit.Run(t, cfg)
}

// TestKitValidatesSchakelNodesOnPush runs the Push cases of both
// applications against the production nodes of a real local network: the
// hospital's node as Push sender, the GP practice's as Push receiver.
// Every mandatory case passes.
func TestKitValidatesSchakelNodesOnPush(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	r := startNetwork(t, network.Options{})
	for _, care := range []string{kitcorrespondentie.Name, kitgeboortezorg.Name} {
		for _, tc := range []struct {
			role validation.Role
			ura  string
		}{
			{validation.RolePushSender, network.Hospital.URA},
			{validation.RolePushReceiver, network.GP.URA},
		} {
			t.Run(care+"/"+string(tc.role), func(t *testing.T) {
				rep := r.run(t, care, tc.role, tc.ura)
				own := 0
				for _, res := range rep.Results {
					if res.Application == care {
						own++
					}
					if res.Requirement == "" || res.Source == "" {
						t.Errorf("%s cites no requirement", res.ID)
					}
					if res.Mandatory && res.Status != validation.Passed {
						t.Errorf("%s %s: %s", res.ID, res.Status, res.Detail)
					}
				}
				if !rep.Summary.Conformant {
					t.Errorf("summary: %+v", rep.Summary)
				}
				if own < 8 {
					t.Errorf("%d cases of %s, want at least 8", own, care)
				}
				t.Logf("%d cases (%d of %s), %d passed", rep.Summary.Total, own, care, rep.Summary.Passed)
			})
		}
	}
}

// TestKitCatchesBrokenPushNodes runs the Push cases against production
// nodes broken on purpose (internal/faults), one defect at a time, and
// proves that each defect fails exactly the cases that check what it
// breaks.
func TestKitCatchesBrokenPushNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	broken := faults.New()
	r := startNetwork(t, network.Options{Faults: broken})
	const care = kitcorrespondentie.Name
	for _, tc := range []struct {
		fault faults.Fault
		role  validation.Role
		ura   string
		fails []string
	}{
		{faults.PushReceiptWrongHash, validation.RolePushReceiver, network.GP.URA, []string{care + ".push-receiver.receipt"}},
		{faults.PushRepeatNewReceipt, validation.RolePushReceiver, network.GP.URA, []string{care + ".push-receiver.duplicate"}},
		{faults.PushReceiptNotVerified, validation.RolePushSender, network.Hospital.URA, []string{care + ".push-sender.verifies-receipt"}},
	} {
		t.Run(string(tc.fault), func(t *testing.T) {
			broken.Switch(tc.fault)
			defer broken.Switch()
			rep := r.run(t, care, tc.role, tc.ura)
			var failed []string
			for _, res := range rep.Results {
				if res.Status != validation.Passed {
					failed = append(failed, res.ID)
					t.Logf("%s %s: %s", res.ID, res.Status, res.Detail)
				}
			}
			slices.Sort(failed)
			if !slices.Equal(failed, tc.fails) {
				t.Fatalf("not passed: %v, want exactly %v", failed, tc.fails)
			}
			if rep.Summary.Conformant {
				t.Errorf("a node with fault %s is reported conformant", tc.fault)
			}
		})
	}
}
