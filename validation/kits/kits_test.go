package kits

import (
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/bgzr4"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/eoverdracht"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/validation"
)

func TestRegistry(t *testing.T) {
	apps, err := careapp.NewRegistry(bgz.New(), bgzr4.New(), correspondentie.New(), geboortezorg.New(), eoverdracht.New(), beeld.New())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Registry(apps, Shipped())
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Applications(); !slices.Equal(got, []string{"beeld", "bgz", "bgz-r4", "correspondentie", "eoverdracht", "geboortezorg"}) {
		t.Errorf("kit applications %v, want beeld, bgz, bgz-r4, correspondentie, eoverdracht, geboortezorg", got)
	}
	counts := map[string]int{}
	for _, c := range reg.Cases() {
		counts[c.Application]++
		if c.Application != "" && !strings.HasPrefix(c.ID, c.Application+".") {
			t.Errorf("case %s of %s is not named %s.…", c.ID, c.Application, c.Application)
		}
	}
	for _, app := range []string{"", "beeld", "bgz", "bgz-r4", "correspondentie", "eoverdracht", "geboortezorg"} {
		if counts[app] == 0 {
			t.Errorf("no cases of %q registered: %v", app, counts)
		}
	}
	if counts["bgz-r4"] <= counts["bgz"] {
		t.Errorf("%d BgZ and %d BgZ R4 cases registered (R4 has every BgZ case and its version's)", counts["bgz"], counts["bgz-r4"])
	}
	if counts["correspondentie"] != counts["geboortezorg"] {
		t.Errorf("the Push applications have %d and %d cases: they share one set", counts["correspondentie"], counts["geboortezorg"])
	}
	pull := []validation.Role{validation.RoleSender, validation.RoleReceiver, validation.RoleHolder, validation.RoleRequester}
	push := []validation.Role{validation.RolePushSender, validation.RolePushReceiver}
	for app, want := range map[string][]validation.Role{"bgz": pull, "bgz-r4": pull, "correspondentie": push, "geboortezorg": push,
		"eoverdracht": {validation.RoleSender, validation.RoleReceiver}, "beeld": {validation.RoleHolder, validation.RoleRequester}} {
		if got := reg.Roles(app); !slices.Equal(got, want) {
			t.Errorf("roles of %s: %v, want %v", app, got, want)
		}
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
