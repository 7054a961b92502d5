package bgz_test

import (
	"slices"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/faults"
	"github.com/schakel-nl/schakel/internal/kittest"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/validation"
	kitbgz "github.com/schakel-nl/schakel/validation/bgz"
)

// TestKitCatchesBrokenNodes runs the kit against Schakel nodes broken on
// purpose, one defect at a time, and proves that each defect fails exactly
// the cases that check what it breaks — and no other case. The nodes are
// the production nodes of a real local network; the defects are switched
// through internal/faults, which no configuration reaches.
func TestKitCatchesBrokenNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	broken := faults.New()
	kit := kittest.New(t, kittest.Network(t, network.Options{Patients: 1, Faults: broken}), kitbgz.Register, kitbgz.RegisterR4)
	run := func(t *testing.T, care string, role validation.Role, ura string) *validation.Report {
		t.Helper()
		cfg := kit.Config(t, ura, role, care)
		cfg.Wait = 8 * time.Second
		return kit.Run(t, cfg)
	}

	gp, hospital := network.GP.URA, network.Hospital.URA
	r4 := kitbgz.NameR4
	for _, tc := range []struct {
		fault faults.Fault // "" is the node as built
		role  validation.Role
		ura   string
		fails []string
		care  string // "" is bgz
	}{
		{"", validation.RoleHolder, gp, nil, ""},
		{"", validation.RoleReceiver, hospital, nil, ""},
		{faults.TLS12, validation.RoleHolder, gp, []string{"generic.tls.no-v12"}, ""},
		{faults.NoClientCertificate, validation.RoleHolder, gp, []string{"generic.tls.client-certificate-required"}, ""},
		{faults.AssertionAlgNone, validation.RoleHolder, gp, []string{"generic.oauth.alg-none"}, ""},
		{faults.AssertionHMAC, validation.RoleHolder, gp, []string{"generic.oauth.hmac"}, ""},
		{faults.NoReplayCheck, validation.RoleHolder, gp, []string{"generic.oauth.replay"}, ""},
		{faults.NoAudienceCheck, validation.RoleHolder, gp, []string{"generic.oauth.wrong-audience"}, ""},
		{faults.NoExpiryCheck, validation.RoleHolder, gp, []string{"generic.oauth.expired"}, ""},
		// Both cases that present a token over another certificate: the
		// notification endpoint's and the data endpoint's.
		{faults.UnboundToken, validation.RoleHolder, gp, []string{"generic.oauth.certificate-binding", "bgz.holder.token-binding"}, ""},
		{faults.AuditedAfterAnswer, validation.RoleHolder, gp, []string{"generic.audit.trail"}, ""},
		// The kit's authorization server refuses a data token without the
		// authorization base, so nothing of the pull happens after it: no
		// pull, no update's pull, no pull without the workflow Task.
		{faults.PullWithoutAuthorizationBase, validation.RoleReceiver, hospital, []string{"bgz.receiver.token-request",
			"bgz.receiver.reads-workflow-task", "bgz.receiver.runs-queries", "bgz.receiver.reports-completion",
			"bgz.receiver.follows-update", "bgz.receiver.get-workflow-task-false"}, ""},
		{faults.NotificationBSNUnchecked, validation.RoleReceiver, hospital, []string{"bgz.receiver.invalid-bsn"}, ""},
		// BgZ on R4: the same defects fail the R4 kit's own cases.
		{"", validation.RoleSender, gp, nil, r4},
		{"", validation.RoleReceiver, hospital, nil, r4},
		{faults.UnboundToken, validation.RoleHolder, gp, []string{"generic.oauth.certificate-binding", "bgz-r4.holder.token-binding"}, r4},
		{faults.NotificationBSNUnchecked, validation.RoleReceiver, hospital, []string{"bgz-r4.receiver.invalid-bsn"}, r4},
		// R4 data answered on the STU3 Task base: only the case that
		// asks it there fails.
		{faults.DataOnTaskBase, validation.RoleSender, gp, []string{"bgz-r4.sender.data-not-on-task-base"}, r4},
	} {
		care := tc.care
		if care == "" {
			care = kitbgz.Name
		}
		name := string(tc.fault)
		if name == "" {
			name = "none"
		}
		t.Run(care+"/"+name+"/"+string(tc.role), func(t *testing.T) {
			if tc.fault == "" {
				broken.Switch()
			} else {
				broken.Switch(tc.fault)
			}
			defer broken.Switch()
			rep := run(t, care, tc.role, tc.ura)
			var failed []string
			for _, r := range rep.Results {
				if r.Status != validation.Passed {
					failed = append(failed, r.ID)
				}
			}
			want := slices.Clone(tc.fails)
			slices.Sort(want)
			slices.Sort(failed)
			if !slices.Equal(failed, want) {
				for _, r := range rep.Results {
					if r.Status != validation.Passed {
						t.Logf("%s %s: %s", r.ID, r.Status, r.Detail)
					}
				}
				t.Fatalf("not passed: %v, want exactly %v", failed, want)
			}
			if len(want) > 0 && rep.Summary.Conformant {
				t.Errorf("a node with fault %s is reported conformant", tc.fault)
			}
			t.Logf("%d cases; failed as expected: %v", len(rep.Results), failed)
		})
	}
	if n := len(faults.All); n < 10 {
		t.Errorf("%d faults, want at least 10", n)
	}
}
