package search

import (
	"errors"
	"net/url"
	"testing"

	"github.com/schakel-nl/schakel/fhir/store"
)

// FuzzParse feeds arbitrary query strings to Parse. The seed corpus is in
// testdata/fuzz/FuzzParse (the BgZ searches and edge cases); run with
// go test -fuzz=FuzzParse ./fhir/search.
func FuzzParse(f *testing.F) {
	f.Add("Observation", "patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|999909587&code=http://loinc.org|85354-9")
	f.Add("Patient", `identifier=a\|b|c\,d,e&_sort=-birthdate&_count=5`)
	f.Fuzz(func(t *testing.T, typ, rawQuery string) {
		params, err := url.ParseQuery(rawQuery)
		if err != nil {
			return
		}
		strict, serr := Parse(stu3, typ, params, true)
		lenient, lerr := Parse(stu3, typ, params, false)
		if !stu3.IsResourceType(typ) {
			if !errors.Is(serr, store.ErrInvalidSearch) || !errors.Is(lerr, store.ErrInvalidSearch) {
				t.Fatalf("unknown type %q: %v / %v", typ, serr, lerr)
			}
			return
		}
		if lerr != nil {
			// Only a malformed known parameter fails lenient parsing, and
			// strict parsing then fails too.
			var pe *ParamError
			if !errors.As(lerr, &pe) || pe.Unknown || !errors.Is(lerr, store.ErrInvalidSearch) {
				t.Fatalf("lenient error %v is no ParamError of a known parameter", lerr)
			}
			if serr == nil {
				t.Fatalf("lenient failed (%v) but strict did not", lerr)
			}
			return
		}
		if serr != nil {
			var pe *ParamError
			if !errors.As(serr, &pe) || !errors.Is(serr, store.ErrInvalidSearch) || !pe.Unknown {
				t.Fatalf("strict error %v is no ParamError of an unknown parameter", serr)
			}
			if len(lenient.Ignored) == 0 {
				t.Fatalf("strict failed (%v) but lenient ignored nothing", serr)
			}
			return
		}
		if len(lenient.Ignored) != 0 || len(strict.Clauses) != len(lenient.Clauses) {
			t.Fatalf("strict and lenient differ: %+v / %+v", strict, lenient)
		}
		for _, q := range []*Query{strict, lenient} {
			if q.Count < 0 || q.Count > MaxCount || q.Offset < 0 {
				t.Fatalf("count %d offset %d", q.Count, q.Offset)
			}
			for _, c := range q.Clauses {
				if c.Modifier != "missing" && len(c.Values) == 0 && len(c.Chain) == 0 {
					t.Fatalf("clause %q matches nothing", c.Name)
				}
				for _, v := range c.Values {
					if c.Type.String() == "date" && v.Low > v.High {
						t.Fatalf("date range [%d, %d] of %q", v.Low, v.High, c.Name)
					}
					if (c.Type.String() == "number" || c.Type.String() == "quantity") && v.NumLow > v.NumHigh {
						t.Fatalf("number range [%v, %v] of %q", v.NumLow, v.NumHigh, c.Name)
					}
				}
			}
		}
	})
}
