package rest_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

// TestSQLite drives the interactions that need store.Historian and
// store.Transactional over the real SQLite store.
func TestSQLite(t *testing.T) {
	st, err := sqlite.Open(context.Background(), ":memory:", fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := rest.New(rest.Config{Store: st, Version: fhir.STU3, Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "http://" + r.Host + "/fhir"
		srv.Serve(w, r, tenant, base, strings.TrimPrefix(r.URL.Path, "/fhir/"))
	}))
	t.Cleanup(hs.Close)
	do := func(method, path, body string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, hs.URL+"/fhir/"+path, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const pat = "urn:uuid:0d2a3e4c-1f45-4b8e-9a3c-6f1d2e3a4b5c"
	tx := txBundle("transaction",
		`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"`+pat+`"}},"request":{"method":"POST","url":"Observation"}}`,
		`{"fullUrl":"`+pat+`","resource":{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"1"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:s|1"}}`)
	if code, body := do(http.MethodPost, "", tx); code != http.StatusOK || !strings.Contains(body, `"reference":"Patient/`) {
		t.Fatalf("transaction: %d %s", code, body)
	}
	// The same again: the Patient now matches ifNoneExist; one more Observation.
	if code, body := do(http.MethodPost, "", tx); code != http.StatusOK || !strings.Contains(body, `"status":"200 OK"`) {
		t.Fatalf("second transaction: %d %s", code, body)
	}
	failing := txBundle("transaction",
		`{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}`,
		`{"request":{"method":"DELETE","url":"Patient?identifier=urn:s|1"}}`,
		`{"resource":{"resourceType":"Patient","id":"zz"},"request":{"method":"PUT","url":"Patient/zz","ifMatch":"W/\"4\""}}`)
	if code, body := do(http.MethodPost, "", failing); code != http.StatusPreconditionFailed {
		t.Fatalf("failing transaction: %d %s", code, body)
	}
	if code, body := do(http.MethodGet, "_history", ""); code != http.StatusOK || strings.Count(body, `"fullUrl"`) != 3 {
		t.Fatalf("history after a failed transaction (want 3 versions): %d %s", code, body)
	}
	if code, body := do(http.MethodPost, "Patient", `{"resourceType":"Patient","gender":"male"}`, "If-None-Exist", "identifier=urn:s|1"); code != http.StatusOK {
		t.Fatalf("conditional create: %d %s", code, body)
	}
	if code, body := do(http.MethodPut, "Patient?identifier=urn:s|1", `{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"1"}],"gender":"male"}`); code != http.StatusOK {
		t.Fatalf("conditional update: %d %s", code, body)
	}
	if code, body := do(http.MethodGet, "Patient/_history?_count=1", ""); code != http.StatusOK || !strings.Contains(body, `"relation":"next"`) || !strings.Contains(body, `"method":"PUT"`) {
		t.Fatalf("type history: %d %s", code, body)
	}
}

// BenchmarkReadSQLite measures read by id through the HTTP API over the
// embedded SQLite store (a file, as a node keeps it), with clients on
// loopback: sequential, and parallel clients sharing the two cores.
func BenchmarkReadSQLite(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir()+"/fhir.db", fhir.STU3)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	res, err := st.Create(context.Background(), tenant, []byte(`{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911259"}],"name":[{"family":"Bos","given":["Anna"]}],"gender":"female","birthDate":"1970-04-02"}`))
	if err != nil {
		b.Fatal(err)
	}
	srv := rest.New(rest.Config{Store: st, Version: fhir.STU3, Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Serve(w, r, tenant, "http://"+r.Host+"/fhir", strings.TrimPrefix(r.URL.Path, "/fhir/"))
	}))
	defer hs.Close()
	u := hs.URL + "/fhir/Patient/" + res.ID
	get := func(c *http.Client) {
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		c := hs.Client()
		b.ReportAllocs()
		for b.Loop() {
			get(c)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				get(c)
			}
		})
	})
}
