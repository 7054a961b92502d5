package beeld_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/beeld"
	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/careapp/hosted"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/plateau"
)

var errNotHere = errors.New("not provided by the test host")

// testHost is a node with two participants, the hospital with a PACS;
// what the tests below do not reach refuses.
type testHost struct{ parts []hosted.Participant }

func (testHost) PublicURL() string                       { return "https://node.example" }
func (h testHost) Participants() []hosted.Participant    { return h.parts }
func (testHost) Party(string) (*consult.Party, bool)     { return nil, false }
func (testHost) Directory() addressbook.EndpointResolver { return nil }
func (testHost) PeerURA(*http.Request) string            { return "" }
func (testHost) Audit() audit.Log                        { return nil }
func (testHost) Logger() *slog.Logger                    { return slog.Default() }
func (h testHost) Participant(ura string) (hosted.Participant, bool) {
	i := slices.IndexFunc(h.parts, func(p hosted.Participant) bool { return p.URA == ura })
	if i < 0 {
		return hosted.Participant{}, false
	}
	return h.parts[i], true
}
func (testHost) Verify(*http.Request, string) (*oauth.AccessToken, error) { return nil, errNotHere }
func (testHost) CheckAccess(context.Context, plateau.AccessContext) error { return errNotHere }
func (testHost) IdentifyHeld(context.Context, string, string, string) error {
	return errNotHere
}
func (testHost) ConsentFor(string) (consent.Checker, string) { return nil, "" }
func (testHost) AdmitConsult(context.Context, string, consult.Request) (map[string]any, error) {
	return nil, errNotHere
}
func (testHost) Present(context.Context, string, string, string, *plateau.Caller) (plateau.Presentation, error) {
	return plateau.Presentation{}, errNotHere
}
func (testHost) Internal(f func(http.ResponseWriter, *http.Request, hosted.Caller)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f(w, r, hosted.Caller{URA: "90000002", SystemUZI: "00000001"})
	})
}
func (testHost) WriteError(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusBadGateway)
}
func (testHost) Register(context.Context, string, string, string) error { return errNotHere }
func (testHost) Localize(context.Context, hosted.Caller, hosted.LocalizeRequest, string) ([]string, error) {
	return nil, errNotHere
}
func (testHost) Exchange(string, careapp.Pattern, string, error, time.Duration) {}

func newHost() testHost {
	return testHost{parts: []hosted.Participant{
		{URA: "90000001", Name: "GP"},
		{URA: "90000002", Name: "Hospital", PACS: hosted.PACS{URL: "http://127.0.0.1:1/dicomweb"}},
	}}
}

// Beeldbeschikbaarheid registers as a pull application with routes of its
// own, and its state on a node serves exactly the public routes it
// declares, the endpoints of the participants with a PACS and imaging
// token requests.
func TestAppMount(t *testing.T) {
	app := beeld.New()
	if _, err := careapp.NewRegistry(app); err != nil {
		t.Fatalf("registry: %v", err)
	}
	if cc := app.CareContext(); cc.System != beeld.CareContextSystem || cc.Code != beeld.CareContextCode {
		t.Errorf("care context %+v", cc)
	}
	m, err := app.Mount(newHost())
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, r := range m.(hosted.PublicRoutes).PublicRoutes() {
		patterns = append(patterns, r.Pattern)
	}
	if !slices.Equal(patterns, app.PublicPatterns()) {
		t.Errorf("public routes %v, declared %v", patterns, app.PublicPatterns())
	}
	eps := m.(hosted.Endpoints)
	if got := eps.Endpoints("90000001"); len(got) != 0 {
		t.Errorf("a participant without a PACS lists %+v", got)
	}
	got := eps.Endpoints("90000002")
	if len(got) != 2 || got[0].PayloadType != beeld.PayloadImagingStudy || got[0].Address != "https://node.example/fhir/r4/90000002" ||
		got[1].PayloadType != beeld.PayloadDICOMweb || got[1].ConnectionType != addressbook.ConnectionTypeDICOMWADORS ||
		got[1].Address != "https://node.example/dicomweb/90000002" {
		t.Errorf("the hospital's endpoints %+v", got)
	}
	g := m.(hosted.Grants)
	if !g.HandlesGrant(oauth.GrantRequest{Scope: []string{beeld.Application}}) || g.HandlesGrant(oauth.GrantRequest{Scope: []string{"bgz"}}) {
		t.Error("HandlesGrant does not tell imaging token requests apart")
	}
	// The internal routes answer a malformed announcement with problem details.
	mux := http.NewServeMux()
	for _, r := range m.(hosted.InternalRoutes).InternalRoutes() {
		mux.Handle(r.Pattern, r.Handler)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/internal/imaging/holdings", strings.NewReader(`{"patient": "123456789"}`)))
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("a malformed announcement: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
}

// A PACS whose CA file cannot be read stops the mount, naming the participant.
func TestAppMountBadCAFile(t *testing.T) {
	h := newHost()
	h.parts[1].PACS.CAFiles = []string{t.TempDir() + "/missing.pem"}
	if _, err := beeld.New().Mount(h); err == nil || !strings.Contains(err.Error(), "90000002") {
		t.Errorf("mount: %v, want an error naming participant 90000002", err)
	}
}
