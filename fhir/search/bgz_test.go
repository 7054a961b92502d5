package search_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/spec"
)

// Every BgZ search (SPEC §5), with and without the Provenance revinclude,
// must parse in strict mode: a parameter the definitions lack would make a
// lenient search ignore it and return too much.
func TestBgZQueriesParseStrict(t *testing.T) {
	d := spec.For(fhir.STU3)
	for _, b := range bgz.Queries() {
		for _, q := range []string{b.Query("999909587"), b.Query("999909587") + "&" + bgz.ProvenanceRevinclude} {
			path, raw, _ := strings.Cut(q, "?")
			typ, op, _ := strings.Cut(path, "/")
			params, err := url.ParseQuery(raw)
			if err != nil {
				t.Fatalf("%s: %v", b.Name, err)
			}
			if op == "$lastn" {
				if typ != "Observation" {
					t.Errorf("%s: $lastn on %s", b.Name, typ)
				}
			} else if op != "" {
				t.Errorf("%s: unexpected operation %q", b.Name, op)
			}
			pq, err := search.Parse(d, typ, params, true)
			if err != nil {
				t.Errorf("%s: %s: %v", b.Name, q, err)
				continue
			}
			if len(pq.Ignored) > 0 {
				t.Errorf("%s: ignored %v", b.Name, pq.Ignored)
			}
			// Every non-result parameter became a clause.
			n := 0
			for k := range params {
				if !strings.HasPrefix(k, "_") {
					n++
				}
			}
			if len(pq.Clauses) != n {
				t.Errorf("%s: %d clauses for %d parameters", b.Name, len(pq.Clauses), n)
			}
		}
	}
}
