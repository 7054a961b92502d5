package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestNetworkUpGeboortezorg runs `network up --once --care geboortezorg`
// as a user would and checks that it succeeds and prints what arrived at
// both receivers: the mother, the child, key observations, the receipts
// and the acknowledgements.
func TestNetworkUpGeboortezorg(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	root := newRootCommand()
	var out bytes.Buffer
	root.SetArgs([]string{"network", "up", "--once", "--care", "geboortezorg", "--data-dir", t.TempDir(), "--log-level", "error"})
	root.SetOut(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("network up --once --care geboortezorg: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"midwife-node", "mother: Sanne de Wit, BSN 999942104", "child:  Noor de Wit, BSN 999942116",
		"birth weight: 3480 g", "gestation at birth: 40+2 weeks",
		"Huisartsenpraktijk De Linde: delivered", "Ziekenhuis Rijnstroom: delivered",
		"acknowledgement from its system: accepted"} {
		if !strings.Contains(s, want) {
			t.Errorf("the output lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "its system read it:"); n != 2 {
		t.Errorf("%d receiving systems read the transfer, want 2", n)
	}
	// At plateau 3 every agreement verifies the mother's BSN at the BSN
	// verification service before the transfer is stored.
	out.Reset()
	root = newRootCommand()
	root.SetArgs([]string{"network", "up", "--once", "--care", "geboortezorg", "--plateau", "3", "--data-dir", t.TempDir()})
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("--care geboortezorg --plateau 3: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "its system read it:"); n != 2 {
		t.Errorf("at plateau 3, %d receiving systems read the transfer, want 2:\n%s", n, out.String())
	}
	// At mixed each pair at its own plateaus: the midwife practice's
	// agreements are in the matrix, and both receivers read the transfer.
	out.Reset()
	root = newRootCommand()
	root.SetArgs([]string{"network", "up", "--once", "--care", "geboortezorg", "--plateau", "mixed", "--data-dir", t.TempDir()})
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("--care geboortezorg --plateau mixed: %v\n%s", err, out.String())
	}
	if s := out.String(); strings.Count(s, "its system read it:") != 2 || !strings.Contains(s, "Verloskundigenpraktijk De Waterlelie → Ziekenhuis Rijnstroom") ||
		strings.Contains(s, "Verpleeghuis") {
		t.Errorf("at mixed, want the midwife practice's agreements and both receivers reading the transfer:\n%s", s)
	}
}
