package kits

import (
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/correspondentie"
)

func TestRegistry(t *testing.T) {
	apps, err := careapp.NewRegistry(bgz.New(), beeld.New(), correspondentie.New())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Registry(apps, Shipped())
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Applications(); !slices.Equal(got, []string{"beeld", "bgz"}) {
		t.Errorf("kit applications %v, want beeld and bgz (Correspondentie has no kit)", got)
	}
	generic, bgzCases, beeldCases := 0, 0, 0
	for _, c := range reg.Cases() {
		switch c.Application {
		case "":
			generic++
		case "bgz":
			bgzCases++
		case "beeld":
			beeldCases++
		}
	}
	if generic == 0 || bgzCases == 0 || beeldCases == 0 {
		t.Errorf("%d generic, %d BgZ and %d Beeldbeschikbaarheid cases registered", generic, bgzCases, beeldCases)
	}
	// A kit for an application the node does not run is refused.
	letters, _ := careapp.NewRegistry(correspondentie.New())
	if _, err := Registry(letters, Shipped()); err == nil || !strings.Contains(err.Error(), `"bgz"`) {
		t.Errorf("kit without its application: %v", err)
	}
}
