package kits

import (
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/correspondentie"
)

func TestRegistry(t *testing.T) {
	apps, err := careapp.NewRegistry(bgz.New(), correspondentie.New())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Registry(apps, Shipped())
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Applications(); !slices.Equal(got, []string{"bgz"}) {
		t.Errorf("kit applications %v, want bgz (Correspondentie has no kit)", got)
	}
	generic, bgzCases := 0, 0
	for _, c := range reg.Cases() {
		switch c.Application {
		case "":
			generic++
		case "bgz":
			bgzCases++
		}
	}
	if generic == 0 || bgzCases == 0 {
		t.Errorf("%d generic and %d BgZ cases registered", generic, bgzCases)
	}
	// A kit for an application the node does not run is refused.
	letters, _ := careapp.NewRegistry(correspondentie.New())
	if _, err := Registry(letters, Shipped()); err == nil || !strings.Contains(err.Error(), `"bgz"`) {
		t.Errorf("kit without its application: %v", err)
	}
}
