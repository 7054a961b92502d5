package bgz_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/internal/kittest"
	"github.com/schakel-nl/schakel/network"
	"github.com/schakel-nl/schakel/validation"
	kitbgz "github.com/schakel-nl/schakel/validation/bgz"
)

// TestKitValidatesSchakelNodes runs the kit against a real local network
// (network.Up, the kit admitted as the Twiin validation service): the GP
// practice's node as Notified Pull sender and Direct Pull holder, the
// hospital's node as receiver and requester, for BgZ on STU3 and on R4.
// Every mandatory case passes.
func TestKitValidatesSchakelNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	kit := kittest.New(t, kittest.Network(t, network.Options{Patients: 1}), kitbgz.Register, kitbgz.RegisterR4)

	total := map[string]int{}
	for _, tc := range []struct {
		care string
		role validation.Role
		ura  string
	}{
		{kitbgz.Name, validation.RoleSender, network.GP.URA},
		{kitbgz.Name, validation.RoleHolder, network.GP.URA},
		{kitbgz.Name, validation.RoleReceiver, network.Hospital.URA},
		{kitbgz.Name, validation.RoleRequester, network.Hospital.URA},
		{kitbgz.NameR4, validation.RoleSender, network.GP.URA},
		{kitbgz.NameR4, validation.RoleHolder, network.GP.URA},
		{kitbgz.NameR4, validation.RoleReceiver, network.Hospital.URA},
		{kitbgz.NameR4, validation.RoleRequester, network.Hospital.URA},
	} {
		t.Run(tc.care+"/"+string(tc.role), func(t *testing.T) {
			rep := kit.Run(t, kit.Config(t, tc.ura, tc.role, tc.care))
			total[tc.care] += len(rep.Results)
			noSecrets(t, rep)
			for _, r := range rep.Results {
				if r.Requirement == "" || r.Source == "" {
					t.Errorf("%s cites no requirement", r.ID)
				}
				if !strings.HasPrefix(r.ID, tc.care+".") && !strings.HasPrefix(r.ID, "generic.") {
					t.Errorf("case %s in a run for %s", r.ID, tc.care)
				}
				if r.Mandatory && r.Status != validation.Passed {
					t.Errorf("%s %s: %s", r.ID, r.Status, r.Detail)
				}
			}
			if !rep.Summary.Conformant {
				t.Errorf("summary: %+v", rep.Summary)
			}
			t.Logf("%s: %d cases, %d passed", tc.role, rep.Summary.Total, rep.Summary.Passed)
		})
	}
	for care, n := range total {
		if n < 30 {
			t.Errorf("%s: %d cases in all, want at least 30", care, n)
		}
	}
}

// noSecrets fails when a report shows a credential the run used.
func noSecrets(t *testing.T, rep *validation.Report) {
	t.Helper()
	b, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Results []struct {
			Exchanges []validation.Exchange `json:"exchanges"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Results {
		for _, ex := range r.Exchanges {
			all := ex.RequestBody + ex.ResponseBody + ex.URL
			if strings.Contains(all, "eyJ") {
				t.Errorf("a JWT is shown in the report: %s %s", ex.Method, ex.URL)
			}
			var task map[string]any
			for _, body := range []string{ex.RequestBody, ex.ResponseBody} {
				if json.Unmarshal([]byte(body), &task) != nil {
					continue
				}
				ins, _ := task["input"].([]any)
				for _, in := range ins {
					v, _ := in.(map[string]any)["valueString"].(string)
					if strings.Contains(fmt.Sprint(in), "authorization-base") && v != "[redacted]" && v != "[kept by the node]" {
						t.Errorf("an authorization base is shown in the report: %s %s", ex.Method, ex.URL)
					}
				}
			}
		}
	}
}
