package kits

import (
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/bgzr4"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/correspondentie"
)

func TestRegistry(t *testing.T) {
	apps, err := careapp.NewRegistry(bgz.New(), bgzr4.New(), correspondentie.New())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Registry(apps, Shipped())
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Applications(); !slices.Equal(got, []string{"bgz", "bgz-r4"}) {
		t.Errorf("kit applications %v, want bgz and bgz-r4 (Correspondentie has no kit)", got)
	}
	generic, bgzCases, r4Cases := 0, 0, 0
	for _, c := range reg.Cases() {
		switch c.Application {
		case "":
			generic++
		case "bgz":
			bgzCases++
			if !strings.HasPrefix(c.ID, "bgz.") {
				t.Errorf("BgZ case %s is not named bgz.…", c.ID)
			}
		case "bgz-r4":
			r4Cases++
			if !strings.HasPrefix(c.ID, "bgz-r4.") {
				t.Errorf("BgZ R4 case %s is not named bgz-r4.…", c.ID)
			}
		}
	}
	if generic == 0 || bgzCases == 0 || r4Cases <= bgzCases {
		t.Errorf("%d generic, %d BgZ and %d BgZ R4 cases registered (R4 has every BgZ case and its version's)", generic, bgzCases, r4Cases)
	}
	// A kit for an application the node does not run is refused.
	stu3Only, _ := careapp.NewRegistry(bgz.New())
	if _, err := Registry(stu3Only, Shipped()); err == nil || !strings.Contains(err.Error(), `"bgz-r4"`) {
		t.Errorf("the R4 kit without its application: %v", err)
	}
	letters, _ := careapp.NewRegistry(correspondentie.New())
	if _, err := Registry(letters, Shipped()); err == nil || !strings.Contains(err.Error(), `"bgz"`) {
		t.Errorf("kit without its application: %v", err)
	}
}
