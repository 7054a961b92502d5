package node

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/careapp/hosted"
)

// hostedApp is an application with routes of its own whose mounted state
// serves the routes given.
type hostedApp struct {
	withRoutes
	routes []careapp.Route
}

func (a hostedApp) Mount(hosted.Host) (hosted.Mounted, error) { return mountedRoutes(a.routes), nil }

type mountedRoutes []careapp.Route

func (m mountedRoutes) PublicRoutes() []careapp.Route { return m }

// The node mounts a hosted application's public routes generically and
// refuses one outside the patterns the application declared.
func TestMountApplicationsRoutes(t *testing.T) {
	served := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("imaging " + r.PathValue("ura"))) })
	for _, tc := range []struct {
		name    string
		pattern string
		err     string
	}{
		{"declared", "GET /imaging/{ura}", ""},
		{"stray", "GET /elsewhere/{ura}", "not among its PublicPatterns"},
	} {
		reg, err := careapp.NewRegistry(hostedApp{withRoutes{imaging{name: "imaging"}}, []careapp.Route{{Pattern: tc.pattern, Handler: served}}})
		if err != nil {
			t.Fatal(err)
		}
		n := &Node{apps: reg}
		err = n.mountApplications()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mux := http.NewServeMux()
		n.hostedPublicRoutes(mux)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/imaging/90000002", nil))
		if rec.Code != http.StatusOK || rec.Body.String() != "imaging 90000002" {
			t.Errorf("%s: GET /imaging/90000002: %d %q", tc.name, rec.Code, rec.Body.String())
		}
	}
}
