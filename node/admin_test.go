package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/pki"
	"github.com/schakel-nl/schakel/plateau"
)

const adminToken = "operator-token-0123456789abcdef0123456789"

// adminEnv is a served node whose second participant (edgeURA2) is also a
// partner with an agreement, so that a token request from it is judged by
// that agreement; and the admin API with an operator token.
type adminEnv struct {
	*edgeEnv
	cfg     Config
	partner *oauth.Client // edgeURA2 asking the node's authorization server
	admin   *http.Client
}

func newAdminEnv(t *testing.T, tune ...func(*Config)) *adminEnv {
	t.Helper()
	a := &adminEnv{}
	publicAddr := freeAddr(t)
	e := newEdgeEnv(t, append([]func(*Config){func(c *Config) {
		c.Public.Addr = publicAddr
		base := filepath.Dir(c.DataDir)
		tokens := filepath.Join(base, "admin-tokens")
		if err := os.WriteFile(tokens, []byte("# operators\nalice "+adminToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Admin = AdminConfig{Addr: "127.0.0.1:0", TokenFile: tokens}
		c.Partners.Agreements = []plateau.PartnerConfig{{URA: edgeURA2, Name: "Partner B", Plateaus: plateau.Plateaus{plateau.Authentication: 1},
			Endpoints: Endpoints("https://"+publicAddr, edgeURA2)}}
	}}, tune...)...)
	a.edgeEnv = e
	a.cfg = e.n.cfg
	key, err := pki.LoadOrCreateSigningKey(a.cfg.Participants[1].SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := loadKeyPair("p2", a.cfg.Participants[1].CertFile, a.cfg.Participants[1].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pki.LoadCertPool(a.cfg.TLS.CAFiles...)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLSConfig(cert, roots)}}
	t.Cleanup(hc.CloseIdleConnections)
	a.partner = &oauth.Client{ClientID: edgeURA2, Key: key, HTTP: hc}
	a.admin = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(a.admin.CloseIdleConnections)
	return a
}

// token asks the node for a Direct Pull token naming a user the way a
// plateau-1 partner does: an id and a role, no code systems, no strong
// authentication (the consult's consent question needs the user).
func (a *adminEnv) token() error {
	_, err := a.partner.Token(context.Background(), a.n.PublicURL()+oauth.TokenPath, oauth.TokenRequest{GrantType: oauth.GrantTypeJWTBearer, Scope: []string{"bgz"},
		Resource:        Endpoints(a.n.PublicURL(), edgeURA1).BgZ,
		AssertionClaims: map[string]any{plateau.ClaimUserID: "900012345", plateau.ClaimUserRole: "01.015"}})
	return err
}

// call sends one admin API request with the operator's token.
func (a *adminEnv) call(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + adminToken}, "Content-Type": {"application/json"}}
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	resp, out := do(t, a.admin, method, a.n.AdminURL()+path, h, b)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s %s: %d answered as %q, want problem+json", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, string(out)
}

// TestAdminChangesAgreementAtRunTime is the issue's demonstration: the
// operator raises a partner's authentication plateau on a running node and
// the next token request is judged by it, and back.
func TestAdminChangesAgreementAtRunTime(t *testing.T) {
	a := newAdminEnv(t)
	if err := a.token(); err != nil {
		t.Fatalf("plateau 1, user without plateau-2 data: %v", err)
	}
	status, body := a.call(t, http.MethodPut, "/admin/agreements/"+edgeURA2,
		`{"name": "Partner B", "plateaus": {"authentication": 2}, "endpoints": `+mustJSON(t, koanfShape(Endpoints(a.n.PublicURL(), edgeURA2)))+`}`)
	if status != http.StatusOK || !strings.Contains(body, `"authentication": 2`) {
		t.Fatalf("raise to 2: %d %s", status, body)
	}
	var oe *oauth.ErrorResponse
	if err := a.token(); !errors.As(err, &oe) || oe.Code != "invalid_grant" || !strings.Contains(oe.Description, "authentication") || !strings.Contains(oe.Description, "plateau 2") {
		t.Fatalf("after raising authentication to 2, a request without plateau-2 user data: %v; want invalid_grant naming authentication and plateau 2", err)
	}
	// The operator's CLI sends the whole entry it read, changed.
	status, body = a.call(t, http.MethodGet, "/admin/agreements/"+edgeURA2, "")
	if status != http.StatusOK {
		t.Fatalf("get: %d %s", status, body)
	}
	var ag map[string]any
	if err := json.Unmarshal([]byte(body), &ag); err != nil {
		t.Fatal(err)
	}
	ag["plateaus"] = map[string]any{"authentication": 1}
	if status, body = a.call(t, http.MethodPut, "/admin/agreements/"+edgeURA2, mustJSON(t, ag)); status != http.StatusOK {
		t.Fatalf("back to 1: %d %s", status, body)
	}
	if err := a.token(); err != nil {
		t.Fatalf("back at plateau 1: %v", err)
	}

	// Every change is audited with the operator and before/after.
	recs, err := a.n.Audit().List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var changes []audit.Record
	for _, r := range recs {
		if r.Type == "admin" {
			changes = append(changes, r)
		}
	}
	if len(changes) != 2 || changes[0].ActorName != "alice" || changes[0].Action != audit.ActionUpdate ||
		!strings.Contains(changes[0].Query, `"authentication":1`) || !strings.Contains(changes[0].Query, `after: {`) {
		t.Errorf("audit records of the changes: %+v", changes)
	}
	if !strings.Contains(a.log.String(), "admin: changed") {
		t.Error("the change is not in the node's log")
	}
}

// TestAdminRefusesWhatTheNodeCouldNotStartWith: a change that fails the
// start-up checks is refused 422 with Validate's message, and nothing
// changes — not the enforcer, not the overlay file.
func TestAdminRefusesWhatTheNodeCouldNotStartWith(t *testing.T) {
	a := newAdminEnv(t)
	for _, tc := range []struct {
		name, path, body, want string
		status                 int
	}{
		{"logging 3 without a central log", "/admin/agreements/" + edgeURA2,
			`{"plateaus": {"logging": 3}, "endpoints": ` + mustJSON(t, koanfShape(Endpoints(a.n.PublicURL(), edgeURA2))) + `}`,
			"audit.central.url", http.StatusUnprocessableEntity},
		{"authorization above authentication", "/admin/agreements/" + edgeURA2,
			`{"plateaus": {"authentication": 1, "authorization": 2}, "endpoints": ` + mustJSON(t, koanfShape(Endpoints(a.n.PublicURL(), edgeURA2))) + `}`,
			"authorization at plateau 2 needs", http.StatusUnprocessableEntity},
		{"no endpoints and no addressbook entry needed: a bad URA", "/admin/agreements/123", `{"plateaus": {"authentication": 1}}`,
			"partners.agreements[1]", http.StatusUnprocessableEntity},
		{"unknown key", "/admin/agreements/" + edgeURA2, `{"plateau": {"authentication": 2}}`, "invalid keys: plateau", http.StatusBadRequest},
		{"path and body disagree", "/admin/agreements/" + edgeURA2, `{"ura": "90000001"}`, "in the path", http.StatusBadRequest},
		{"not JSON", "/admin/agreements/" + edgeURA2, `plateaus: {authentication: 2}`, "expected a JSON object", http.StatusBadRequest},
		{"withdraw an unknown agreement", "/admin/agreements/90000009", "", "no agreement 90000009", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodPut
			if tc.body == "" {
				method = http.MethodDelete
			}
			status, body := a.call(t, method, tc.path, tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s; want %d with %q", status, body, tc.status, tc.want)
			}
		})
	}
	if err := a.token(); err != nil {
		t.Fatalf("after refused changes the agreement no longer admits plateau 1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, OverlayFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused changes wrote the overlay file: %v", err)
	}
	// Refused changes are audited too.
	n, err := a.n.Audit().Count(context.Background(), audit.Filter{Outcome: []string{"4"}})
	if err != nil || n < 3 {
		t.Errorf("%d audit records of refusals (%v), want at least 3", n, err)
	}
}

// TestAdminRequiresOperatorToken: no token, a participant's token or a
// wrong one is refused 401, and the refused change is audited.
func TestAdminRequiresOperatorToken(t *testing.T) {
	a := newAdminEnv(t)
	for _, auth := range []string{"", "Bearer " + a.tokens[edgeURA1], "Bearer " + adminToken + "x", adminToken} {
		h := http.Header{}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		resp, body := do(t, a.admin, http.MethodDelete, a.n.AdminURL()+"/admin/participants/"+edgeURA1, h, nil)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("Authorization %q: %d %s", auth, resp.StatusCode, body)
		}
	}
	if _, ok := a.n.parts.get(edgeURA1); !ok {
		t.Fatal("an unauthenticated request withdrew a participant")
	}
	recs, _ := a.n.Audit().List(context.Background(), audit.Filter{})
	refused := 0
	for _, r := range recs {
		if r.Type == "admin" && r.Outcome == http.StatusUnauthorized && strings.Contains(r.Query, edgeURA1) {
			refused++
		}
	}
	if refused != 4 {
		t.Errorf("%d refused admin requests audited, want 4", refused)
	}
}

// TestAdminChangesSurviveRestart: the overlay in datadir is read at the
// next start and wins over the configuration file for what it names.
func TestAdminChangesSurviveRestart(t *testing.T) {
	a := newAdminEnv(t)
	ep := mustJSON(t, koanfShape(Endpoints(a.n.PublicURL(), edgeURA2)))
	if status, body := a.call(t, http.MethodPut, "/admin/agreements/"+edgeURA2, `{"plateaus": {"authentication": 2}, "endpoints": `+ep+`}`); status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	if status, body := a.call(t, http.MethodDelete, "/admin/participants/"+edgeURA1, ""); status != http.StatusNoContent {
		t.Fatalf("withdraw: %d %s", status, body)
	}
	// The same configuration file, a new node on the same datadir.
	a.stop()
	cfg := a.cfg
	cfg.Public.Addr, cfg.Internal.Addr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Partners.Agreements = []plateau.PartnerConfig{{URA: edgeURA2, Name: "Partner B", Plateaus: plateau.Plateaus{plateau.Authentication: 1},
		Endpoints: Endpoints(a.n.PublicURL(), edgeURA2)}}
	cfg.Participants = a.n.admin.seed.Participants
	n2, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if ag, ok := n2.plateaus.Agreement(edgeURA2); !ok || ag.Plateau(plateau.Authentication) != 2 {
		t.Errorf("after a restart the partner's authentication plateau is not the one set at run time")
	}
	if _, ok := n2.parts.get(edgeURA1); ok {
		t.Error("after a restart the withdrawn participant is back")
	}
	if _, ok := n2.parts.get(edgeURA2); !ok {
		t.Error("after a restart the remaining participant is gone")
	}
}

// TestAdminParticipants adds and withdraws a participant: its internal
// token works from the add on and stops at the withdrawal.
func TestAdminParticipants(t *testing.T) {
	a := newAdminEnv(t)
	dir := filepath.Dir(a.cfg.DataDir)
	const newURA = "90000003"
	tokenFile := filepath.Join(dir, "p3-token")
	const p3Token = "third-participant-token-0123"
	if err := os.WriteFile(tokenFile, []byte(p3Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrIssueUZIServer(filepath.Join(dir, "tls"), "p3", ca, pki.ServerCertRequest{ID: pki.UZIServerID{UZI: "900000033", URA: newURA, AGB: "00000000"}}); err != nil {
		t.Fatal(err)
	}
	internal := func(token string) int {
		resp, _ := do(t, a.internal, http.MethodGet, a.n.InternalURL()+"/internal/referrals", http.Header{"Authorization": {"Bearer " + token}}, nil)
		return resp.StatusCode
	}
	if got := internal(p3Token); got != http.StatusUnauthorized {
		t.Fatalf("before the add: %d", got)
	}
	body := `{"name": "Huisarts C", "certfile": "` + filepath.Join(dir, "tls", "p3.pem") + `", "keyfile": "` + filepath.Join(dir, "tls", "p3-key.pem") +
		`", "signingkeyfile": "` + filepath.Join(dir, "p3-signing.pem") + `", "internaltokenfile": "` + tokenFile + `"}`
	for _, tc := range []struct {
		name, body, want string
		status           int
	}{
		{"inline token", `{"internaltoken": "0123456789abcdef0123", "signingkeyfile": "x.pem"}`, "internaltokenfile", http.StatusBadRequest},
		{"EHR at run time", `{"signingkeyfile": "x.pem", "internaltokenfile": "` + tokenFile + `", "ehr": {"url": "https://ehr.example/fhir"}}`, "restart", http.StatusUnprocessableEntity},
		{"certificate of another URA", strings.ReplaceAll(body, "/tls/p3", "/tls/p2"), "carries URA 90000002", http.StatusUnprocessableEntity},
		{"token shared with another participant", strings.Replace(body, tokenFile, filepath.Join(dir, "missing"), 1), "internaltokenfile", http.StatusUnprocessableEntity},
	} {
		if status, out := a.call(t, http.MethodPut, "/admin/participants/"+newURA, tc.body); status != tc.status || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, status, out, tc.status, tc.want)
		}
	}
	if status, out := a.call(t, http.MethodPut, "/admin/participants/"+newURA, body); status != http.StatusCreated || strings.Contains(out, p3Token) {
		t.Fatalf("add: %d %s", status, out)
	}
	if got := internal(p3Token); got != http.StatusOK {
		t.Fatalf("after the add, the participant's token: %d", got)
	}
	if resp, _ := do(t, a.public, http.MethodGet, a.n.PublicURL()+"/jwks/"+newURA, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("the added participant's client JWKS: %d", resp.StatusCode)
	}
	status, out := a.call(t, http.MethodGet, "/admin/participants", "")
	if status != http.StatusOK || !strings.Contains(out, "Huisarts C") || strings.Contains(out, a.tokens[edgeURA1]) {
		t.Errorf("list: %d %s", status, out)
	}
	if status, out := a.call(t, http.MethodDelete, "/admin/participants/"+newURA, ""); status != http.StatusNoContent {
		t.Fatalf("withdraw: %d %s", status, out)
	}
	if got := internal(p3Token); got != http.StatusUnauthorized {
		t.Errorf("after the withdrawal, the participant's token: %d", got)
	}
	if got := internal(a.tokens[edgeURA1]); got != http.StatusOK {
		t.Errorf("another participant's token after the withdrawal: %d", got)
	}
	recs, _ := a.n.Audit().List(context.Background(), audit.Filter{Tenant: newURA})
	var actions []string
	for _, r := range recs {
		if r.Type == "admin" && r.Outcome < 300 {
			actions = append(actions, r.Action)
		}
	}
	if strings.Join(actions, ",") != "C,D" {
		t.Errorf("audited participant changes %v, want C,D", actions)
	}
}

func TestAdminConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    AdminConfig
		want string
	}{
		{"off", AdminConfig{}, ""},
		{"loopback", AdminConfig{Addr: "127.0.0.1:8444", TokenFile: "t"}, ""},
		{"ipv6 loopback", AdminConfig{Addr: "[::1]:8444", TokenFile: "t"}, ""},
		{"every interface", AdminConfig{Addr: ":8444", TokenFile: "t"}, "loopback address only"},
		{"public address", AdminConfig{Addr: "192.0.2.1:8444", TokenFile: "t"}, "loopback address only"},
		{"no token file", AdminConfig{Addr: "127.0.0.1:8444"}, "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := errors.Join(tc.a.validate()...)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadOperators(t *testing.T) {
	dir := t.TempDir()
	write := func(content string, mode os.FileMode) string {
		f := filepath.Join(dir, "tokens")
		os.Remove(f)
		if err := os.WriteFile(f, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if ops, err := loadOperators(write("alice "+adminToken+"\n\n# comment\n"+adminToken+"-bob\n", 0o600)); err != nil || len(ops) != 2 {
		t.Errorf("%v %v", ops, err)
	}
	for _, tc := range []struct{ content, want string }{
		{"alice short", "at least 32"},
		{"alice " + adminToken + "\nbob " + adminToken, "twice"},
		{"# nothing\n", "no token"},
		{"a b c", "want"},
	} {
		if _, err := loadOperators(write(tc.content, 0o600)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.content, err, tc.want)
		}
	}
	if _, err := loadOperators(write("alice "+adminToken, 0o644)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable token file: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
