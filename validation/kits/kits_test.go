package kits

import (
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/eoverdracht"
)

func TestRegistry(t *testing.T) {
	apps, err := careapp.NewRegistry(bgz.New(), correspondentie.New(), eoverdracht.New())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Registry(apps, Shipped())
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Applications(); !slices.Equal(got, []string{"bgz", "eoverdracht"}) {
		t.Errorf("kit applications %v, want bgz and eoverdracht (Correspondentie has no kit)", got)
	}
	generic, bgzCases, eoCases := 0, 0, 0
	for _, c := range reg.Cases() {
		switch c.Application {
		case "":
			generic++
		case "bgz":
			bgzCases++
		case "eoverdracht":
			eoCases++
		}
	}
	if generic == 0 || bgzCases == 0 || eoCases == 0 {
		t.Errorf("%d generic, %d BgZ and %d eOverdracht cases registered", generic, bgzCases, eoCases)
	}
	// A kit for an application the node does not run is refused.
	letters, _ := careapp.NewRegistry(correspondentie.New())
	if _, err := Registry(letters, Shipped()); err == nil || !strings.Contains(err.Error(), `"bgz"`) {
		t.Errorf("kit without its application: %v", err)
	}
}
