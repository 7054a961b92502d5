package validation

import (
	"context"
	"testing"
)

func TestRegistrySelectsByRoleApplicationAndPlateau(t *testing.T) {
	run := func(context.Context, *Probe) Verdict { return Pass("") }
	reg := NewRegistry()
	app := Application{Name: "app", Record: func() (string, [][]byte, error) { return "", nil, nil }}
	if err := reg.Add(
		Case{ID: "g.final", Final: true, Requirement: "r", Source: "s", Run: run},
		Case{ID: "g.all", Requirement: "r", Source: "s", Run: run},
		Case{ID: "g.p4", MinPlateau: 4, Requirement: "r", Source: "s", Run: run},
	); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddApplication(app,
		Case{ID: "a.sender", Roles: []Role{RoleSender}, Requirement: "r", Source: "s", Run: run},
		Case{ID: "a.holder", Roles: []Role{RoleHolder}, MaxPlateau: 3, Requirement: "r", Source: "s", Run: run},
	); err != nil {
		t.Fatal(err)
	}
	ids := func(cs []Case) (out []string) {
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	for _, tc := range []struct {
		role    Role
		app     string
		plateau int
		want    []string
	}{
		{RoleSender, "app", 1, []string{"g.all", "a.sender", "g.final"}},
		{RoleHolder, "app", 3, []string{"g.all", "a.holder", "g.final"}},
		{RoleHolder, "app", 4, []string{"g.all", "g.p4", "g.final"}},
		{RoleSender, "other", 1, []string{"g.all", "g.final"}},
	} {
		got := ids(reg.Select(tc.role, tc.app, tc.plateau))
		if len(got) != len(tc.want) {
			t.Errorf("%s %s %d: %v, want %v", tc.role, tc.app, tc.plateau, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s %s %d: %v, want %v", tc.role, tc.app, tc.plateau, got, tc.want)
				break
			}
		}
	}
	// A run with no case of the application is refused: it would
	// validate nothing of it.
	for _, tc := range []struct {
		role    Role
		app     string
		plateau int
		ok      bool
	}{
		{RoleSender, "app", 1, true},
		{RoleHolder, "app", 3, true},
		{RoleHolder, "app", 4, false},
		{RoleRequester, "app", 1, false},
		{RoleSender, "other", 1, false},
	} {
		if err := reg.Runnable(tc.role, tc.app, tc.plateau); (err == nil) != tc.ok {
			t.Errorf("Runnable(%s, %s, %d): %v", tc.role, tc.app, tc.plateau, err)
		}
	}
	for _, bad := range []Case{
		{ID: "g.all", Requirement: "r", Source: "s", Run: run},                     // twice
		{ID: "no-source", Requirement: "r", Run: run},                              // no source
		{ID: "x", Application: "unknown", Requirement: "r", Source: "s", Run: run}, // unregistered application
	} {
		if err := reg.Add(bad); err == nil {
			t.Errorf("case %s was accepted", bad.ID)
		}
	}
}

func TestPushRolesAndApplicationRoles(t *testing.T) {
	for _, r := range []Role{RolePushSender, RolePushReceiver} {
		got, err := ParseRole(string(r))
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
		if r.Counterpart().Counterpart() != r || r.Counterpart() == r {
			t.Errorf("%s: counterpart %s", r, r.Counterpart())
		}
	}
	if RolePushSender.Counterpart() != RolePushReceiver {
		t.Errorf("push-sender's counterpart is %s", RolePushSender.Counterpart())
	}
	if _, err := ParseRole("push"); err == nil {
		t.Error("ParseRole accepted push")
	}
	run := func(context.Context, *Probe) Verdict { return Pass("") }
	reg := NewRegistry()
	if err := reg.Add(Case{ID: "g", Requirement: "r", Source: "s", Run: run}); err != nil {
		t.Fatal(err)
	}
	app := Application{Name: "letters", Record: func() (string, [][]byte, error) { return "", nil, nil }}
	if err := reg.AddApplication(app,
		Case{ID: "l.r", Roles: []Role{RolePushReceiver}, Requirement: "r", Source: "s", Run: run},
		Case{ID: "l.s", Roles: []Role{RolePushSender}, Requirement: "r", Source: "s", Run: run},
	); err != nil {
		t.Fatal(err)
	}
	if got := reg.Roles("letters"); len(got) != 2 || got[0] != RolePushSender || got[1] != RolePushReceiver {
		t.Errorf("Roles(letters) = %v, want [push-sender push-receiver]", got)
	}
	if got := reg.Roles("other"); len(got) != 0 {
		t.Errorf("Roles(other) = %v: generic cases alone make no role", got)
	}
}
