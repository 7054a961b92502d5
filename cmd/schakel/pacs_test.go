package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestNetworkUpBeeld runs `network up --once --care beeld` as a user would:
// it succeeds and prints the studies found, the instances retrieved and
// that they are all the study's.
func TestNetworkUpBeeld(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	root := newRootCommand()
	var out bytes.Buffer
	root.SetArgs([]string{"network", "up", "--once", "--care", "beeld", "--data-dir", t.TempDir(), "--log-level", "error"})
	root.SetOut(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("network up --once --care beeld: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"the hospital's PACS stand-in: 2 studies, 5 instances", "the referral index names as holders of images: 90000002",
		"/fhir/r4/90000002: 2 studies", "X-thorax, 1 series, 2 instances", "2 instances, 2340 bytes",
		"the received SOP instance UIDs: all of the study's 2 instances in the PACS"} {
		if !strings.Contains(s, want) {
			t.Errorf("the output lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "SOP instance 2.25."); n != 2 {
		t.Errorf("%d SOP instances printed, want 2", n)
	}
}
