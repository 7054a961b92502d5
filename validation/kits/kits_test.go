package kits

import (
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/validation"
)

func TestRegistry(t *testing.T) {
	apps, err := careapp.NewRegistry(bgz.New(), correspondentie.New(), geboortezorg.New())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Registry(apps, Shipped())
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Applications(); !slices.Equal(got, []string{"bgz", "correspondentie", "geboortezorg"}) {
		t.Errorf("kit applications %v, want bgz, correspondentie, geboortezorg", got)
	}
	counts := map[string]int{}
	for _, c := range reg.Cases() {
		counts[c.Application]++
	}
	for _, app := range []string{"", "bgz", "correspondentie", "geboortezorg"} {
		if counts[app] == 0 {
			t.Errorf("no cases of %q registered: %v", app, counts)
		}
	}
	if counts["correspondentie"] != counts["geboortezorg"] {
		t.Errorf("the Push applications have %d and %d cases: they share one set", counts["correspondentie"], counts["geboortezorg"])
	}
	for app, want := range map[string][]validation.Role{
		"bgz":             {validation.RoleSender, validation.RoleReceiver, validation.RoleHolder, validation.RoleRequester},
		"correspondentie": {validation.RolePushSender, validation.RolePushReceiver},
		"geboortezorg":    {validation.RolePushSender, validation.RolePushReceiver},
	} {
		if got := reg.Roles(app); !slices.Equal(got, want) {
			t.Errorf("roles of %s: %v, want %v", app, got, want)
		}
	}
	// A kit for an application the node does not run is refused.
	letters, _ := careapp.NewRegistry(correspondentie.New())
	if _, err := Registry(letters, Shipped()); err == nil || !strings.Contains(err.Error(), `"bgz"`) {
		t.Errorf("kit without its application: %v", err)
	}
}
