package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestNetworkUpEoverdracht runs `network up --once --care eoverdracht` as a
// user would: the nursing home's system accepts the first transfer through
// its node's internal API and rejects the second, and the hospital's side
// ends as each decision says, the rejection with its reason.
func TestNetworkUpEoverdracht(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	root := newRootCommand()
	var out bytes.Buffer
	root.SetArgs([]string{"network", "up", "--once", "--care", "eoverdracht", "--data-dir", t.TempDir(), "--log-level", "error"})
	root.SetOut(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("network up --once --care eoverdracht: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		`system read "Aanmeldbericht Erik XXX_Altenborg" (14 resources) and accepts the request`,
		"status: receiver completed, sender completed",
		"and rejects the request: Geen plaats beschikbaar op de afdeling",
		`status: receiver rejected, sender rejected; the sender's workflow Task says why: "Geen plaats beschikbaar op de afdeling"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the output lacks %q:\n%s", want, s)
		}
	}
}
