package rest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

// sqliteServer serves a fresh in-memory SQLite store of version v with the
// given resources, under /fhir on a 127.0.0.1 listener.
func sqliteServer(t *testing.T, v fhir.Version, resources ...string) *httptest.Server {
	t.Helper()
	st, err := sqlite.Open(context.Background(), ":memory:", v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, r := range resources {
		if _, _, err := st.Update(context.Background(), tenant, json.RawMessage(r), ""); err != nil {
			t.Fatal(err)
		}
	}
	srv := rest.New(rest.Config{Store: st, Version: v, Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Serve(w, r, tenant, "http://"+r.Host+"/fhir", strings.TrimPrefix(r.URL.Path, "/fhir/"))
	}))
	t.Cleanup(hs.Close)
	return hs
}

func get(t *testing.T, hs *httptest.Server, path string, header ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/fhir/"+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestSearchValueStrictness: a malformed value, modifier or result
// parameter of a search is a 400 naming the parameter, in lenient mode too;
// answering with every resource of the tenant instead would widen the
// search to everything. Only an unknown parameter is skipped, with a
// warning that says so.
func TestSearchValueStrictness(t *testing.T) {
	hs := sqliteServer(t, fhir.STU3,
		`{"resourceType":"Patient","id":"p1","birthDate":"1970-01-01","identifier":[{"system":"urn:s","value":"1"}]}`,
		`{"resourceType":"Patient","id":"p2","birthDate":"1980-01-01","identifier":[{"system":"urn:s","value":"2"}]}`)
	for _, tc := range []struct{ query, param string }{
		{"birthdate=notadate", "birthdate"},
		{"birthdate=1970-13-45", "birthdate"},
		{"birthdate=xx1970", "birthdate"},
		{"identifier=%7C", "identifier"},
		{"identifier:foo=1", "identifier:foo"},
		{"_count=abc", "_count"},
		{"_count=1&_count=2", "_count"},
		{"_offset=-1", "_offset"},
		{"_sort=nonsense", "_sort"},
		{"_include=Patient:nope", "_include"},
		{"_include:iterate=Patient:general-practitioner", "_include:iterate"},
		{"_revinclude=Nope:subject", "_revinclude"},
		{"_summary=everything", "_summary"},
		{"_elements=nope", "_elements"},
		{"_total=lots", "_total"},
		{"_id=a%7Cb", "_id"},
		{"_lastUpdated=yesterday", "_lastUpdated"},
		{"general-practitioner.nope=x", "general-practitioner.nope"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := get(t, hs, "Patient?"+tc.query)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", code, body)
			}
			var oo struct {
				ResourceType string
				Issue        []fhir.Issue
			}
			if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
				t.Fatalf("want an OperationOutcome, got %s", body)
			}
			if is := oo.Issue[0]; !slices.Contains(is.Expression, tc.param) || !strings.Contains(is.Diagnostics, tc.param) {
				t.Errorf("issue %+v does not name %s", is, tc.param)
			}
		})
	}

	t.Run("unknown parameter: ignored with a warning, refused when strict", func(t *testing.T) {
		code, body := get(t, hs, "Patient?nickname=x&birthdate=1970")
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		var b struct {
			Total int
			Link  []struct{ Relation, URL string }
			Entry []struct {
				Resource json.RawMessage
				Search   struct{ Mode string }
			}
		}
		if err := json.Unmarshal(body, &b); err != nil || b.Total != 1 {
			t.Fatalf("want the one match of birthdate=1970: %s", body)
		}
		last := b.Entry[len(b.Entry)-1]
		if last.Search.Mode != "outcome" || !strings.Contains(string(last.Resource), "nickname was ignored") {
			t.Errorf("no warning that nickname was ignored: %s", body)
		}
		if strings.Contains(b.Link[0].URL, "nickname") || !strings.Contains(b.Link[0].URL, "birthdate=1970") {
			t.Errorf("self link %s must list the parameters used, not the ignored one", b.Link[0].URL)
		}
		code, body = get(t, hs, "Patient?nickname=x", "Prefer", "handling=strict")
		if code != http.StatusBadRequest || !strings.Contains(string(body), `"expression":["nickname"]`) {
			t.Errorf("strict: %d %s", code, body)
		}
	})

	t.Run("valid result parameters", func(t *testing.T) {
		for _, q := range []string{"_elements=birthDate", "_total=accurate", "_summary=count", "_sort=-birthdate&_count=1", "_contained=false"} {
			if code, body := get(t, hs, "Patient?"+q); code != http.StatusOK {
				t.Errorf("%s: %d %s", q, code, body)
			}
		}
	})
}
