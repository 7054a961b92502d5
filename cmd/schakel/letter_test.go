package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNetworkUpLetter: `schakel network up --care correspondentie --once`
// delivers the letter and brings the acknowledgement back with every
// component in a process of its own, at a plateau, and with the mixed
// agreements; under --processes no process is left behind.
func TestNetworkUpLetter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"processes", []string{"--processes"}},
		{"plateau-3", []string{"--plateau", "3"}},
		{"mixed", []string{"--plateau", "mixed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"network", "up", "--care", "correspondentie", "--once", "--data-dir", t.TempDir(),
				"--log-level", "warn"}, tc.args...)
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("network up %s: %v\n%s", strings.Join(tc.args, " "), err, out.String())
			}
			for _, want := range []string{"durable in the hospital's outbox (202)", "verified by the hospital's node",
				"acknowledgement from the GP's system: accepted"} {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("no %q in:\n%s", want, out.String())
				}
			}
			if tc.name == "processes" {
				var pids []int
				for _, c := range parseProcesses(t, out.String()) {
					pids = append(pids, c.pid)
				}
				if len(pids) == 0 || !gone(pids...) {
					t.Fatalf("components %v: none listed, or still running after network up --once exited", pids)
				}
			}
		})
	}
}
