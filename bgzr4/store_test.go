package bgzr4

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

// The R4 demo data, loaded into an R4 store and served by the node's FHIR
// server, answers every block of the R4 query set for the demo patient.
func TestEveryBlockAnswersFromR4Store(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r4.db"), fhir.R4)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ps, err := demo.GenerateR4(demo.Options{Count: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := rest.New(rest.Config{Store: st, Version: fhir.R4})
	serve := func(method, path string, body []byte) (int, []byte) {
		req := httptest.NewRequest(method, "/"+path, bytesReader(body))
		req.Header.Set("Content-Type", "application/fhir+json; fhirVersion=4.0")
		rec := httptest.NewRecorder()
		p, q, _ := cut(path)
		req.URL.RawQuery = q
		srv.Serve(rec, req, "90000001", "https://gp.example/fhir/r4/90000001", p)
		return rec.Code, rec.Body.Bytes()
	}
	for _, p := range ps {
		if code, body := serve(http.MethodPost, "", demo.TransactionBundle(p)); code != http.StatusOK {
			t.Fatalf("load %s: %d %.500s", p.BSN, code, body)
		}
	}
	for _, q := range New().Queries(ps[0].BSN) {
		code, body := serve(http.MethodGet, q.Search, nil)
		var b struct {
			Entry []struct {
				Search struct{ Mode string }
			}
		}
		_ = json.Unmarshal(body, &b)
		matches := 0
		for _, e := range b.Entry {
			if e.Search.Mode == "match" {
				matches++
			}
		}
		if code != http.StatusOK || matches == 0 {
			t.Errorf("%s (%s): %d, %d matches %.300s", q.Name, q.Search, code, matches, body)
		}
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func cut(path string) (string, string, bool) { return strings.Cut(path, "?") }
