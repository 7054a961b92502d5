package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/proxy"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

const ehrTenant = "ehr"

// upstream is an EHR: fhir/rest over a SQLite store, on a real listener.
type upstream struct {
	store    *sqlite.Store
	srv      *httptest.Server
	base     string
	requests atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ehr.db"), fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u := &upstream{store: st}
	srv := rest.New(rest.Config{Store: st, Version: fhir.STU3, Logger: slog.New(slog.DiscardHandler)})
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/{path...}", func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		srv.Serve(w, r, ehrTenant, "http://"+r.Host+"/fhir", r.PathValue("path"))
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	u.base = u.srv.URL + "/fhir"
	for _, r := range []string{
		`{"resourceType":"Patient","id":"p1","meta":{"profile":["http://fhir.nl/fhir/StructureDefinition/nl-core-patient"]},"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999909587"}],"generalPractitioner":[{"reference":"Practitioner/gp"}]}`,
		`{"resourceType":"Practitioner","id":"gp","name":[{"family":"Aanmoedigend"}]}`,
		`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"text":"a"}}`,
		`{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p1"},"code":{"text":"b"}}`,
		`{"resourceType":"Condition","id":"c3","subject":{"reference":"Patient/p1"},"code":{"text":"c"}}`,
		`{"resourceType":"Observation","id":"w1","status":"final","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"effectiveDateTime":"2024-01-01"}`,
		`{"resourceType":"Observation","id":"w2","status":"final","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"effectiveDateTime":"2025-01-01"}`,
	} {
		if _, _, err := st.Update(context.Background(), ehrTenant, json.RawMessage(r), ""); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

func newProxy(t *testing.T, base string, configure func(*proxy.Config)) *proxy.Proxy {
	t.Helper()
	cfg := proxy.Config{BaseURL: base, Version: fhir.STU3, Timeout: 5 * time.Second}
	if configure != nil {
		configure(&cfg)
	}
	p := proxy.New(cfg)
	t.Cleanup(func() { p.Close() })
	return p
}

func params(q string) url.Values {
	v, err := url.ParseQuery(q)
	if err != nil {
		panic(err)
	}
	return v
}

func ids(rs []store.Resource) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Type+"/"+r.ID)
	}
	return strings.Join(out, ",")
}

func TestRead(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t)
	p := newProxy(t, up.base, nil)
	want, _ := up.store.Read(ctx, ehrTenant, "Patient", "p1")

	got, err := p.Read(ctx, "00000001", "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != "Patient" || got.ID != "p1" || got.VersionID != want.VersionID || !got.LastUpdated.Equal(want.LastUpdated) {
		t.Errorf("read %+v, want version %s at %s", got, want.VersionID, want.LastUpdated)
	}
	if string(got.Body) != string(want.Body) {
		t.Errorf("body changed on the way:\n%s\n%s", got.Body, want.Body)
	}
	if _, err := p.VRead(ctx, "00000001", "Patient", "p1", want.VersionID); err != nil {
		t.Errorf("vread: %v", err)
	}
	if _, err := p.Read(ctx, "00000001", "Patient", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if err := up.store.Delete(ctx, ehrTenant, "Condition", "c3"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(ctx, "00000001", "Condition", "c3"); !errors.Is(err, store.ErrDeleted) {
		t.Errorf("deleted: %v", err)
	}
}

func TestSearch(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t)
	p := newProxy(t, up.base, nil)
	cases := []struct {
		name          string
		q             store.Query
		matches, incl string
		total, next   int
		ignored       string
		wantErr       error
	}{
		{name: "include", q: store.Query{Type: "Patient", Params: params("identifier=http://fhir.nl/fhir/NamingSystem/bsn|999909587&_include=Patient:general-practitioner")},
			matches: "Patient/p1", incl: "Practitioner/gp", total: 1, next: -1},
		{name: "first page", q: store.Query{Type: "Condition", Params: params("patient=Patient/p1&_count=2&_sort=_id")},
			matches: "Condition/c1,Condition/c2", total: 3, next: 2},
		{name: "second page", q: store.Query{Type: "Condition", Params: params("patient=Patient/p1&_count=2&_sort=_id&_offset=2")},
			matches: "Condition/c3", total: 3, next: -1},
		{name: "lastn", q: store.Query{Type: "Observation", LastN: 1, Params: params("patient=Patient/p1&code=http://loinc.org|29463-7")},
			matches: "Observation/w2", total: 1, next: -1},
		{name: "strict refusal is an invalid search", q: store.Query{Type: "Condition", Strict: true, Params: params("no-such=1")},
			wantErr: store.ErrInvalidSearch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, err := p.Search(ctx, "00000001", tc.q)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ids(page.Matches) != tc.matches || ids(page.Included) != tc.incl || page.Total != tc.total || page.NextOffset != tc.next {
				t.Errorf("page matches %s, included %s, total %d, next %d", ids(page.Matches), ids(page.Included), page.Total, page.NextOffset)
			}
		})
	}
}

// TestOpaquePaging covers an upstream that pages with a cursor instead of
// _offset, and one whose next link points elsewhere.
func TestOpaquePaging(t *testing.T) {
	ctx := context.Background()
	var hits atomic.Int64
	var evil atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/fhir+json")
		next := `,{"relation":"next","url":"` + "http://" + r.Host + `/fhir?_getpages=abc"}`
		if evil.Load() {
			next = `,{"relation":"next","url":"http://169.254.169.254/fhir?_getpages=abc"}`
		}
		entry := `{"resource":{"resourceType":"Flag","id":"f1"},"search":{"mode":"match"}}`
		if r.URL.Query().Get("_getpages") == "abc" {
			next = ""
			entry = `{"resource":{"resourceType":"Flag","id":"f2"},"search":{"mode":"match"}}`
		}
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","total":2,"link":[{"relation":"self","url":"http://x/fhir/Flag?status=active"}%s],"entry":[%s]}`, next, entry)
	}))
	defer srv.Close()
	p := newProxy(t, srv.URL+"/fhir", nil)
	first, err := p.Search(ctx, "t", store.Query{Type: "Flag", Params: params("status=active&_count=1")})
	if err != nil {
		t.Fatal(err)
	}
	if ids(first.Matches) != "Flag/f1" || first.NextOffset != 1 {
		t.Fatalf("first page %s next %d", ids(first.Matches), first.NextOffset)
	}
	second, err := p.Search(ctx, "t", store.Query{Type: "Flag", Params: params("status=active&_count=1&_offset=1")})
	if err != nil {
		t.Fatal(err)
	}
	if ids(second.Matches) != "Flag/f2" || second.NextOffset != -1 {
		t.Errorf("second page %s next %d", ids(second.Matches), second.NextOffset)
	}
	evil.Store(true)
	if _, err := p.Search(ctx, "t", store.Query{Type: "Flag", Params: params("status=active")}); !errors.Is(err, proxy.ErrUpstream) {
		t.Errorf("next link to another host: %v", err)
	}
}

func TestWrites(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t)
	body := json.RawMessage(`{"resourceType":"Flag","id":"f1","status":"active","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`)

	ro := newProxy(t, up.base, nil)
	before := up.requests.Load()
	if _, err := ro.Create(ctx, "t", body); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "read-only proxy") {
		t.Errorf("create: %v", err)
	}
	if _, _, err := ro.Update(ctx, "t", body, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("update: %v", err)
	}
	if err := ro.Delete(ctx, "t", "Patient", "p1"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("delete: %v", err)
	}
	if up.requests.Load() != before {
		t.Error("a refused write reached the upstream")
	}

	rw := newProxy(t, up.base, func(c *proxy.Config) { c.AllowWrites = true })
	res, created, err := rw.Update(ctx, "t", body, "")
	if err != nil || !created || res.ID != "f1" || res.VersionID != "1" {
		t.Fatalf("update-as-create: %+v %v %v", res, created, err)
	}
	if _, _, err := rw.Update(ctx, "t", body, "7"); !errors.Is(err, store.ErrVersionConflict) {
		t.Errorf("stale If-Match: %v", err)
	}
	res, err = rw.Create(ctx, "t", json.RawMessage(`{"resourceType":"Flag","status":"active","code":{"text":"y"},"subject":{"reference":"Patient/p1"}}`))
	if err != nil || res.ID == "" {
		t.Fatalf("create: %+v %v", res, err)
	}
	if err := rw.Delete(ctx, "t", "Flag", "f1"); err != nil {
		t.Errorf("delete: %v", err)
	}
	if _, err := up.store.Read(ctx, ehrTenant, "Flag", "f1"); !errors.Is(err, store.ErrDeleted) {
		t.Errorf("upstream after delete: %v", err)
	}
}

func TestUpstreamFailures(t *testing.T) {
	ctx := context.Background()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()

	release := make(chan struct{})
	defer close(release)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()

	answer := func(status int, contentType, body string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			io.WriteString(w, body)
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	huge := `{"resourceType":"Patient","id":"p1","text":{"div":"` + strings.Repeat("x", 4096) + `"}}`
	cases := []struct {
		name       string
		base       string
		search     bool
		status     int
		maxBytes   int64
		wantStatus int
		wantErr    error
	}{
		{name: "down", base: downURL, wantStatus: http.StatusBadGateway},
		{name: "slow", base: slow.URL, wantStatus: http.StatusGatewayTimeout},
		{name: "huge", base: answer(200, "application/fhir+json", huge), maxBytes: 1024, wantStatus: http.StatusBadGateway},
		{name: "malformed", base: answer(200, "application/fhir+json", `{"resourceType":"Pat`), wantStatus: http.StatusBadGateway},
		{name: "another resource", base: answer(200, "application/fhir+json", `{"resourceType":"Patient","id":"p2"}`), wantStatus: http.StatusBadGateway},
		{name: "not JSON", base: answer(200, "text/html", `<html>login</html>`), wantStatus: http.StatusBadGateway},
		{name: "server error", base: answer(500, "application/fhir+json", `{"resourceType":"OperationOutcome"}`), wantStatus: http.StatusBadGateway},
		{name: "unauthorized", base: answer(401, "application/fhir+json", `{}`), wantStatus: http.StatusBadGateway},
		{name: "search answers a resource", search: true, base: answer(200, "application/fhir+json", `{"resourceType":"Patient","id":"p1"}`), wantStatus: http.StatusBadGateway},
		{name: "bad lastUpdated", base: answer(200, "application/fhir+json", `{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"yesterday"}}`), wantStatus: http.StatusBadGateway},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, tc.base, func(c *proxy.Config) {
				c.Timeout = 100 * time.Millisecond
				c.MaxResponseBytes = tc.maxBytes
			})
			var err error
			if tc.search {
				_, err = p.Search(ctx, "t", store.Query{Type: "Patient", Params: url.Values{}})
			} else {
				_, err = p.Read(ctx, "t", "Patient", "p1")
			}
			if !errors.Is(err, proxy.ErrUpstream) {
				t.Fatalf("error %v, want ErrUpstream", err)
			}
			fe := fhir.AsError(err)
			if fe == nil || fe.Status != tc.wantStatus {
				t.Fatalf("fhir error %+v, want status %d", fe, tc.wantStatus)
			}
			if strings.Contains(fe.Issues[0].Diagnostics, "127.0.0.1") {
				t.Errorf("upstream detail shown to the client: %q", fe.Issues[0].Diagnostics)
			}
		})
	}
}

// TestServedThroughRest runs the proxy behind fhir/rest, as the node does:
// the Authorize hook decides what reaches the EHR, and upstream failures
// become 502 OperationOutcomes.
func TestServedThroughRest(t *testing.T) {
	up := newUpstream(t)
	p := newProxy(t, up.base, nil)
	node := rest.New(rest.Config{Store: p, Version: fhir.STU3, Logger: slog.New(slog.DiscardHandler),
		Authorize: func(_ context.Context, req *rest.Request) error {
			if req.Type == "Practitioner" {
				return errors.New("not in the agreement")
			}
			return nil
		}})
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/stu3/{ura}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		node.Serve(w, r, r.PathValue("ura"), "http://"+r.Host+"/fhir/stu3/"+r.PathValue("ura"), r.PathValue("path"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(srv.URL + "/fhir/stu3/00000001/" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc
	}
	status, doc := get("Condition?patient=Patient/p1")
	if status != 200 || doc["total"] != 3.0 {
		t.Fatalf("search through the node: %d %v", status, doc)
	}
	entry := doc["entry"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(entry["fullUrl"].(string), srv.URL+"/fhir/stu3/00000001/Condition/") {
		t.Errorf("fullUrl %v is not the node's", entry["fullUrl"])
	}
	before := up.requests.Load()
	if status, _ := get("Practitioner/gp"); status != http.StatusForbidden {
		t.Errorf("denied read: %d", status)
	}
	if up.requests.Load() != before {
		t.Error("a denied request reached the EHR")
	}
	up.srv.Close()
	status, doc = get("Patient/p1")
	if status != http.StatusBadGateway || doc["resourceType"] != "OperationOutcome" {
		t.Errorf("EHR down: %d %v", status, doc)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []proxy.Config{
		{Version: fhir.STU3},
		{BaseURL: "ftp://ehr/fhir", Version: fhir.STU3},
		{BaseURL: "https://ehr/fhir?x=1", Version: fhir.STU3},
		{BaseURL: "https://ehr/fhir", Version: "dstu2"},
		{BaseURL: "https://ehr/fhir", Version: fhir.STU3, Timeout: -1},
	} {
		if cfg.Validate() == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
