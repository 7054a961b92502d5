package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestNetworkUpCareAtPlateau runs the care applications' own demos as a
// user would at a plateau: every agreement of their nodes at N, or the
// mixed network's agreements per pair, and the combinations that cannot
// be refused before any node starts, naming why.
func TestNetworkUpCareAtPlateau(t *testing.T) {
	if testing.Short() {
		t.Skip("starts networks")
	}
	up := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		root := newRootCommand()
		var out bytes.Buffer
		root.SetArgs(append([]string{"network", "up", "--once", "--data-dir", t.TempDir(), "--log-level", "error"}, args...))
		root.SetOut(&out)
		root.SetErr(&out)
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		// At plateau 3 the nursing home's node is validated before the
		// transfer (network 3), the nurse accepts the notification (user
		// authentication 2+) and both nodes verify the BSN (identification 3).
		{"eoverdracht at 3", []string{"--care", "eoverdracht", "--plateau", "3"}, []string{
			"receiver      eoverdracht     ", "proof recorded in the admission register",
			"nurse (UZI 900000222, role 30.000) accepts the notification",
			"status: receiver completed, sender completed",
			`status: receiver rejected, sender rejected; the sender's workflow Task says why: "Geen plaats beschikbaar op de afdeling"`}},
		// The GP practice and the hospital at their mixed plateaus (3,
		// network 2): consent at Mitz, the hit of the referral index.
		{"beeld at mixed", []string{"--care", "beeld", "--plateau", "mixed"}, []string{
			"Agreements per partner", "the referral index names as holders of images: 90000002",
			"the received SOP instance UIDs: all of the study's 2 instances in the PACS"}},
		// At plateau 4 the GP practice's node is validated as imaging
		// requester before the lookup (network 4).
		{"beeld at 4", []string{"--care", "beeld", "--plateau", "4"}, []string{
			"requester     beeld           ", "proof recorded in the admission register",
			"the received SOP instance UIDs: all of the study's 2 instances in the PACS"}},
		// The clinic stands where the hospital stands; the GP practice and
		// the nursing home refer at their plateaus 1–2.
		{"indexed-pull at mixed", []string{"--pattern", "indexed-pull", "--plateau", "mixed"}, []string{
			"Agreements per partner", "Huisartsenpraktijk De Linde    delivered", "Ziekenhuis Rijnstroom          delivered",
			"Verpleeghuis De Berken         delivered"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := up(t, c.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("the output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// Refused before a node starts, with the reason.
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"beeld at 1", []string{"--care", "beeld", "--plateau", "1"}, "consent is recorded in each holder's own system"},
		{"indexed-pull at 3", []string{"--pattern", "indexed-pull", "--plateau", "3"}, "the clinic cannot have one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := up(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want a refusal naming %q, got %v\n%s", c.want, err, out)
			}
			if strings.Contains(out, "gp-node") {
				t.Errorf("refused after the network started:\n%s", out)
			}
		})
	}
}
