package monitor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNode serves a /metrics the test sets, as a node's internal listener.
type fakeNode struct {
	mu   sync.Mutex
	text string
}

func (f *fakeNode) set(s string) { f.mu.Lock(); f.text = s; f.mu.Unlock() }

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, f.text)
}

const todaysMetrics = `# TYPE schakel_http_requests_total counter
schakel_http_requests_total{code="200",listener="public"} 10
schakel_http_requests_total{code="401",listener="public"} 2
schakel_http_requests_total{code="500",listener="internal"} 1
# TYPE schakel_notifiedpull_steps_total counter
schakel_notifiedpull_steps_total{step="completed"} 1
`

const fullMetrics = `# TYPE schakel_exchanges_total counter
schakel_exchanges_total{application="bgz",pattern="notified-pull",role="sender",outcome="ok"} 3
schakel_exchanges_total{application="bgz",pattern="direct-pull",role="requester",outcome="failed"} 1
# TYPE schakel_exchange_duration_seconds histogram
schakel_exchange_duration_seconds_bucket{care="bgz",pattern="notified-pull",le="0.1"} 1
schakel_exchange_duration_seconds_bucket{care="bgz",pattern="notified-pull",le="1"} 3
schakel_exchange_duration_seconds_bucket{care="bgz",pattern="notified-pull",le="+Inf"} 3
schakel_exchange_duration_seconds_sum{care="bgz",pattern="notified-pull"} 1.2
schakel_exchange_duration_seconds_count{care="bgz",pattern="notified-pull"} 3
# TYPE schakel_refusals_total counter
schakel_refusals_total{reason="no_consent"} 4
schakel_refusals_total{reason="patient 999999990 unknown"} 1
# TYPE schakel_oauth_token_requests_total counter
schakel_oauth_token_requests_total{outcome="issued"} 7
schakel_oauth_token_requests_total{outcome="invalid_grant"} 2
`

func newTestMonitor(t *testing.T, nodes ...NodeSource) (*Server, *httptest.Server, string) {
	t.Helper()
	pw := "correct-horse-battery-staple"
	acct, err := NewLocalAccount("operator", pw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Nodes: nodes, Logins: []LoginProvider{acct}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return m, srv, pw
}

func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login fetches the login page and posts the form, as a browser would.
func login(t *testing.T, c *http.Client, base, user, pw string) *http.Response {
	t.Helper()
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(b)
	if m == nil {
		t.Fatalf("login page without a CSRF field:\n%s", b)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/login/local", strings.NewReader(url.Values{
		"csrf": {string(m[1])}, "username": {user}, "password": {pw}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLogin(t *testing.T) {
	_, srv, pw := newTestMonitor(t)
	post := func(c *http.Client, path string, form url.Values, origin string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("pages need a login", func(t *testing.T) {
		c := browser(t)
		for _, p := range []string{"/", "/agreements", "/exchanges"} {
			resp, err := c.Get(srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
				t.Errorf("%s without a session: %d %s, want 303 to /login", p, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		for _, p := range []string{"/live/overview", "/events"} {
			if code, _ := get(t, c, srv.URL+p); code != http.StatusUnauthorized {
				t.Errorf("%s without a session: %d, want 401", p, code)
			}
		}
	})
	t.Run("a form without its CSRF token is refused", func(t *testing.T) {
		c := browser(t)
		get(t, c, srv.URL+"/login")
		if code := post(c, "/login/local", url.Values{"username": {"operator"}, "password": {pw}}, srv.URL); code != http.StatusForbidden {
			t.Errorf("got %d, want 403", code)
		}
	})
	t.Run("a form from another site is refused", func(t *testing.T) {
		c := browser(t)
		_, page := get(t, c, srv.URL+"/login")
		tok := csrfField.FindStringSubmatch(page)[1]
		if code := post(c, "/login/local", url.Values{"csrf": {tok}, "username": {"operator"}, "password": {pw}}, "https://evil.example"); code != http.StatusForbidden {
			t.Errorf("got %d, want 403", code)
		}
	})
	t.Run("a wrong password gets no session", func(t *testing.T) {
		c := browser(t)
		if resp := login(t, c, srv.URL, "operator", pw+"x"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("got %d, want 401", resp.StatusCode)
		}
		if code, _ := get(t, c, srv.URL+"/live/overview"); code != http.StatusUnauthorized {
			t.Errorf("after a failed login: %d, want 401", code)
		}
	})
	t.Run("log in and out", func(t *testing.T) {
		c := browser(t)
		resp := login(t, c, srv.URL, "operator", pw)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %d, want 303", resp.StatusCode)
		}
		var sc *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie {
				sc = ck
			}
		}
		if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode {
			t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict", sc)
		}
		code, page := get(t, c, srv.URL+"/")
		if code != http.StatusOK || !strings.Contains(page, "Participants") {
			t.Fatalf("overview after login: %d\n%s", code, page)
		}
		if code := post(c, "/logout", url.Values{}, srv.URL); code != http.StatusForbidden {
			t.Errorf("logout without its token: %d, want 403", code)
		}
		tok := csrfField.FindStringSubmatch(page)[1]
		if code := post(c, "/logout", url.Values{"csrf": {tok}}, srv.URL); code != http.StatusSeeOther {
			t.Errorf("logout: %d, want 303", code)
		}
		// The old cookie no longer opens a session, even replayed.
		c2 := browser(t)
		u, _ := url.Parse(srv.URL)
		c2.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: sc.Value}})
		if code, _ := get(t, c2, srv.URL+"/live/overview"); code != http.StatusUnauthorized {
			t.Errorf("after logout: %d, want 401", code)
		}
	})
}

func TestLoadOrCreatePassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor", "password")
	pw, err := LoadOrCreatePassword(path)
	if err != nil || len(pw) < 16 {
		t.Fatalf("%q, %v", pw, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v, want mode 0600", fi.Mode(), err)
	}
	again, err := LoadOrCreatePassword(path)
	if err != nil || again != pw {
		t.Fatalf("second start: %q %v, want the same password", again, err)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreatePassword(path); err == nil {
		t.Fatal("a short password was accepted")
	}
}

// TestFigures: what a node reports is shown, what it does not is "not
// reported", and a counter that rises is a recent error.
func TestFigures(t *testing.T) {
	tests := []struct {
		name      string
		metrics   string
		want      []string
		wantNot   []string
		exchanges string
	}{
		{name: "today's series", metrics: todaysMetrics,
			want:      []string{"notified-pull", "completed", "HTTP 401 on the public listener", "Exchange latency: not reported", "schakel_notifiedpull_steps_total"},
			exchanges: seriesSteps},
		{name: "exchange and refusal series", metrics: fullMetrics,
			want:      []string{"direct-pull", "requester", "no_consent", "token refused: invalid_grant", "Requests: not reported", "patient [no BSN] unknown"},
			wantNot:   []string{"999999990", "token refused: issued"},
			exchanges: seriesExchanges},
		{name: "nothing", metrics: "",
			want: []string{"Exchanges: not reported", "Refusals: not reported", "Requests: not reported"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := &fakeNode{}
			node.set(tc.metrics)
			ns := httptest.NewServer(node)
			defer ns.Close()
			m, srv, pw := newTestMonitor(t, NodeSource{Name: "n1", MetricsURL: ns.URL + "/metrics"})
			m.Collect(context.Background())
			snap, _ := m.Snapshot()
			if got := snap.Node("n1").Figures.ExchangesSource; got != tc.exchanges {
				t.Errorf("exchanges from %q, want %q", got, tc.exchanges)
			}
			c := browser(t)
			login(t, c, srv.URL, "operator", pw)
			_, page := get(t, c, srv.URL+"/exchanges")
			_, nodePage := get(t, c, srv.URL+"/nodes/n1")
			for _, w := range tc.want {
				if !strings.Contains(page+nodePage, w) {
					t.Errorf("pages lack %q", w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(page+nodePage, w) {
					t.Errorf("pages show %q", w)
				}
			}
		})
	}
}

func TestRecentErrors(t *testing.T) {
	node := &fakeNode{}
	node.set(fullMetrics)
	ns := httptest.NewServer(node)
	defer ns.Close()
	m, _, _ := newTestMonitor(t, NodeSource{Name: "n1", MetricsURL: ns.URL + "/metrics"})
	m.Collect(context.Background())
	node.set(strings.NewReplacer(`reason="no_consent"} 4`, `reason="no_consent"} 6`,
		`outcome="failed"} 1`, `outcome="failed"} 2`).Replace(fullMetrics))
	m.Collect(context.Background())
	snap, _ := m.Snapshot()
	got := map[string]float64{}
	for _, e := range snap.Recent {
		got[e.What] = e.Count
	}
	if got["refused: no_consent"] != 2 || got["exchange failed: direct-pull bgz"] != 1 || len(got) != 2 {
		t.Errorf("recent errors %v", got)
	}
	ns.Close()
	m.Collect(context.Background())
	snap, _ = m.Snapshot()
	if n := snap.Node("n1"); n.Up || n.Problem == "" || !strings.Contains(snap.Recent[0].What, "metrics could not be read") {
		t.Errorf("a node that went away: up %v, problem %q, recent %v", n.Up, n.Problem, snap.Recent[0])
	}
}

// TestEvents: the stream announces a new snapshot when one is published.
func TestEvents(t *testing.T) {
	m, srv, pw := newTestMonitor(t)
	c := browser(t)
	login(t, c, srv.URL, "operator", pw)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	buf := make([]byte, 256)
	var seen strings.Builder
	next := func(want string) {
		for !strings.Contains(seen.String(), want) {
			n, err := resp.Body.Read(buf)
			if err != nil {
				t.Fatalf("stream ended before %q: %v (%q)", want, err, seen.String())
			}
			seen.Write(buf[:n])
		}
	}
	next("data: 0\n\n")
	m.Collect(ctx)
	next("event: update\ndata: 1\n\n")
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"999999990":              "[no BSN]",
		"bsn 999999990 refused":  "bsn [no BSN] refused",
		"1234567890":             "1234567890", // ten digits: not a BSN
		"90000001":               "90000001",   // a URA
		"123456789":              "123456789",  // fails the 11-proef
		"no_consent":             "no_consent",
		"a999999990b 999999990x": "a[no BSN]b [no BSN]x",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// redirectLogin stands in for an OpenID Connect provider: Start sends the
// browser to its issuer, Authenticate takes the code the issuer returns.
type redirectLogin struct{}

func (redirectLogin) ID() string    { return "oidc" }
func (redirectLogin) Title() string { return "Test issuer" }
func (redirectLogin) Form() bool    { return false }
func (redirectLogin) Start(w http.ResponseWriter, r *http.Request, state string) {
	http.Redirect(w, r, "https://issuer.example/authorize?state="+url.QueryEscape(state), http.StatusFound)
}
func (redirectLogin) Authenticate(r *http.Request) (Operator, error) {
	if r.URL.Query().Get("code") != "good" {
		return Operator{}, ErrLogin
	}
	return Operator{Subject: "alice", Name: "Alice", Provider: "oidc"}, nil
}

func TestRedirectLogin(t *testing.T) {
	m, err := New(Config{Logins: []LoginProvider{redirectLogin{}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	c := browser(t)
	if _, page := get(t, c, srv.URL+"/login"); !strings.Contains(page, `href="/login/oidc/start"`) {
		t.Fatalf("the login page has no link to the provider:\n%s", page)
	}
	resp, err := c.Get(srv.URL + "/login/oidc/start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	state := loc.Query().Get("state")
	if resp.StatusCode != http.StatusFound || loc.Host != "issuer.example" || state == "" {
		t.Fatalf("start: %d %s", resp.StatusCode, loc)
	}
	if code, _ := get(t, c, srv.URL+"/login/oidc/callback?code=good&state=forged"); code != http.StatusForbidden {
		t.Errorf("a callback with another state: %d, want 403", code)
	}
	if code, _ := get(t, c, srv.URL+"/login/oidc/callback?code=bad&state="+state); code != http.StatusSeeOther {
		t.Errorf("a refused login: %d, want 303 back to the login page", code)
	}
	if code, _ := get(t, c, srv.URL+"/login/oidc/callback?code=good&state="+state); code != http.StatusSeeOther {
		t.Fatalf("callback: %d", code)
	}
	if code, page := get(t, c, srv.URL+"/"); code != http.StatusOK || !strings.Contains(page, "Alice") {
		t.Errorf("after the redirect login: %d", code)
	}
	if code, _ := get(t, c, srv.URL+"/login/local"); code == http.StatusOK {
		t.Error("a form route for a provider that has none")
	}
}

// TestReplicasAddedUp: a node of two replicas is read replica by replica
// and shown as their sum; a replica that starts again keeps what it
// counted before in the sum; a replica that misses a round counts with its
// last figures (no drop, no burst when it is back), and the node stays up
// with the replica named as the problem.
func TestReplicasAddedUp(t *testing.T) {
	exchanges := func(n int) string {
		return fmt.Sprintf("# TYPE schakel_exchanges_total counter\n"+
			"schakel_exchanges_total{application=\"bgz\",pattern=\"notified-pull\",role=\"sender\",outcome=\"ok\"} %d\n", n)
	}
	m, a, b, sa, sb := twoReplicas(t, exchanges(3), exchanges(5))
	total := func() (float64, *NodeView) {
		t.Helper()
		m.Collect(context.Background())
		snap, _ := m.Snapshot()
		nv := snap.Node("n1")
		var sum float64
		for _, c := range nv.Figures.Exchanges {
			sum += c.Total
		}
		return sum, nv
	}
	if got, nv := total(); got != 8 || !nv.Up {
		t.Fatalf("two replicas: %v exchanges, up %v; want 8, up", got, nv.Up)
	}
	// The second replica starts again: its counters begin at zero, and
	// what it counted before stays in the sum.
	b.set(exchanges(1))
	if got, _ := total(); got != 9 {
		t.Fatalf("after a replica's restart: %v exchanges; want 9 (3 + its earlier 5 + 1)", got)
	}
	a.set(exchanges(4))
	sb.Close() // the second replica misses the round
	if got, nv := total(); got != 10 || !nv.Up || !strings.Contains(nv.Problem, sb.URL) {
		t.Fatalf("one replica away: %v exchanges, up %v, problem %q; want 10 (its last figures kept), up, the replica named", got, nv.Up, nv.Problem)
	}
	sa.Close()
	if _, nv := total(); nv.Up {
		t.Fatal("no replica answers: the node is up")
	}
}

// twoReplicas is a monitor of node n1, run as two replicas a and b that
// serve the metrics first and second; the servers close when t ends.
func twoReplicas(t *testing.T, first, second string) (m *Server, a, b *fakeNode, sa, sb *httptest.Server) {
	t.Helper()
	a, b = &fakeNode{}, &fakeNode{}
	a.set(first)
	b.set(second)
	sa, sb = httptest.NewServer(a), httptest.NewServer(b)
	t.Cleanup(sa.Close)
	t.Cleanup(sb.Close)
	m, _, _ = newTestMonitor(t, NodeSource{Name: "n1", Replicas: []string{sa.URL + "/metrics", sb.URL + "/metrics"}})
	return m, a, b, sa, sb
}

// TestRestartsKeepOneSumPerSeries: a replica that starts again many times
// (rolling upgrades) leaves one sum per series behind, not a copy of its
// counters per restart; counters and histograms both add up.
func TestRestartsKeepOneSumPerSeries(t *testing.T) {
	metrics := func(n int) string {
		return fmt.Sprintf("# TYPE schakel_exchanges_total counter\n"+
			"schakel_exchanges_total{application=\"bgz\",pattern=\"notified-pull\",role=\"sender\",outcome=\"ok\"} %d\n"+
			"# TYPE schakel_http_request_duration_seconds histogram\n"+
			"schakel_http_request_duration_seconds_bucket{listener=\"public\",le=\"0.1\"} %d\n"+
			"schakel_http_request_duration_seconds_bucket{listener=\"public\",le=\"+Inf\"} %d\n"+
			"schakel_http_request_duration_seconds_sum{listener=\"public\"} %d\n"+
			"schakel_http_request_duration_seconds_count{listener=\"public\"} %d\n", n, n, n, n, n)
	}
	m, _, b, _, _ := twoReplicas(t, metrics(3), metrics(5))
	m.Collect(context.Background())
	const restarts = 50
	for i := range restarts {
		b.set(metrics(1)) // started again, counted one
		m.Collect(context.Background())
		b.set(metrics(5)) // and on to five before the next restart
		if i < restarts-1 {
			m.Collect(context.Background())
		}
	}
	m.Collect(context.Background())
	snap, _ := m.Snapshot()
	var sum float64
	for _, c := range snap.Node("n1").Figures.Exchanges {
		sum += c.Total
	}
	// a: 3; b: 5 before the first restart, 5 in each of the 49 runs
	// between restarts, 5 in the last.
	if want := float64(3 + 5 + 5*restarts); sum != want {
		t.Fatalf("after %d restarts: %v exchanges; want %v", restarts, sum, want)
	}
	m.mu.Lock()
	carried := m.carried["n1"]
	m.mu.Unlock()
	for name, f := range carried.Families {
		if n := len(f.GetMetric()); n != 1 {
			t.Errorf("family %s keeps %d series for %d restarts; want 1", name, n, restarts)
		}
	}
	h := carried.Families["schakel_http_request_duration_seconds"].GetMetric()[0].GetHistogram()
	if want := uint64(5 * restarts); h.GetSampleCount() != want || h.GetBucket()[0].GetCumulativeCount() != want {
		t.Errorf("the carried histogram counts %d (first bucket %d); want %d", h.GetSampleCount(), h.GetBucket()[0].GetCumulativeCount(), want)
	}
}
