package sqlstore

import (
	"net/url"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/spec"
)

// BenchmarkWhere builds the SQL of the BgZ searches (one op is all of
// them), the part of a search that runs before the database.
func BenchmarkWhere(b *testing.B) {
	d := spec.For(fhir.STU3)
	var pqs []*search.Query
	for _, blk := range bgz.Queries() {
		path, raw, _ := strings.Cut(blk.Query("999909587"), "?")
		typ, _, _ := strings.Cut(path, "/")
		params, err := url.ParseQuery(raw)
		if err != nil {
			b.Fatal(err)
		}
		pq, err := search.Parse(d, typ, params, true)
		if err != nil {
			b.Fatal(err)
		}
		pqs = append(pqs, pq)
	}
	for b.Loop() {
		for _, pq := range pqs {
			w := newSQLBuilder(false)
			w.where("00000001", pq)
		}
	}
}
