package rest_test

import (
	"context"
	"fmt"
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

// BenchmarkVersions runs the same requests over the same data in a STU3
// and an R4 store (SQLite files, as a node keeps them), through the HTTP
// API on loopback: read by id, a search of 20 matches, a read with
// _summary=true, and Patient/$everything (the patient and 20
// Observations). Compare X/stu3 with X/r4:
//
//	go test ./fhir/rest -run '^$' -bench 'Versions|Floor' -benchmem -count 6
func BenchmarkVersions(b *testing.B) {
	// Both servers first, then each request on one and the other in turn:
	// the pair of a figure runs under the same load of the machine.
	urls := map[fhir.Version]string{}
	for _, v := range []fhir.Version{fhir.STU3, fhir.R4} {
		st, err := sqlite.Open(context.Background(), b.TempDir()+"/fhir.db", v)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if _, _, err := st.Update(ctx, tenant, []byte(`{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Anna Bos</div>"},"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911259"}],"name":[{"family":"Bos","given":["Anna"]}],"telecom":[{"system":"phone","value":"0612345678"}],"gender":"female","birthDate":"1970-04-02","address":[{"city":"Utrecht"}],"maritalStatus":{"text":"married"}}`), ""); err != nil {
			b.Fatal(err)
		}
		for i := range 20 {
			if _, err := st.Create(ctx, tenant, []byte(fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2025-01-%02dT10:00:00Z","valueQuantity":{"value":%d,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`, i+1, 60+i))); err != nil {
				b.Fatal(err)
			}
		}
		srv := rest.New(rest.Config{Store: st, Version: v, Logger: slog.New(slog.DiscardHandler)})
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			srv.Serve(w, r, tenant, "http://"+r.Host+"/fhir", strings.TrimPrefix(r.URL.Path, "/fhir/"))
		}))
		b.Cleanup(func() { hs.Close(); st.Close() })
		urls[v] = hs.URL + "/fhir/"
	}
	c := &http.Client{}
	for _, q := range []struct{ name, path string }{
		{"read", "Patient/p1"},
		{"search", "Observation?subject=Patient/p1&_count=20"},
		{"summary", "Patient/p1?_summary=true"},
		{"everything", "Patient/p1/$everything"},
	} {
		for _, v := range []fhir.Version{fhir.STU3, fhir.R4} {
			u := urls[v] + q.path
			b.Run(q.name+"/"+string(v), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
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
			})
		}
	}
}
