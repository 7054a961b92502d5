package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// TestNetworkUpBgZR4Plateaus: `schakel network up --once --care bgz-r4`
// at plateau 3, 4 and mixed exits 0. At 3 and 4 the GP practice's node
// serves the hospital only under a proof of validation for bgz-r4, which
// the R4 kit gives the hospital's node as receiver first; then the R4
// referral and the Direct Pull complete. Mixed: the GP practice's R4
// referrals to the hospital and the nursing home complete.
func TestNetworkUpBgZR4Plateaus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	for _, tc := range []struct {
		plateau string
		want    []string // patterns
	}{
		{"3", []string{`validation +90000002 +receiver +bgz-r4 `, `proof recorded in the admission register`,
			`\(bgz-r4, Notified Pull\)`, "resources from 26 queries"}},
		{"4", []string{`validation +90000002 +receiver +bgz-r4 `, `proof recorded in the admission register`,
			`\(bgz-r4, Notified Pull\)`, "resources from 26 queries"}},
		{"mixed", []string{"Notified Pull Huisartsenpraktijk De Linde → Ziekenhuis Rijnstroom\n     completed",
			"Notified Pull Huisartsenpraktijk De Linde → Verpleeghuis De Berken\n     completed"}},
	} {
		t.Run(tc.plateau, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "network", "up", "--once", "--care", "bgz-r4", "--plateau", tc.plateau,
				"--data-dir", t.TempDir(), "--log-level", "warn")
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("network up --care bgz-r4 --plateau %s: %v\n%s", tc.plateau, err, out.String())
			}
			for _, want := range tc.want {
				if !regexp.MustCompile(want).MatchString(out.String()) {
					t.Fatalf("no %q in:\n%s", want, out.String())
				}
			}
		})
	}
}
