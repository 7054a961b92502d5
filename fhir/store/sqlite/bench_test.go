package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/nl"
)

// benchPatients is the size of the synthetic store of the search benchmarks.
const benchPatients = 10000

// bsnFor returns a valid BSN for patient i.
func bsnFor(i int) string {
	for n := i * 10; ; n++ {
		first8 := fmt.Sprintf("%08d", 10000000+n%90000000)
		if d, ok := nl.BSNCheckDigit(first8); ok {
			return first8 + string(d)
		}
	}
}

// benchStore builds a store of n patients, each with a blood pressure
// observation, a lab observation and a medication statement.
func benchStore(b *testing.B, n int) *Store {
	b.Helper()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), fhir.STU3)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	mustPut := func(body string) {
		if _, _, err := s.Update(ctx, tenantA, json.RawMessage(body), ""); err != nil {
			b.Fatal(err)
		}
	}
	mustPut(`{"resourceType":"Medication","id":"med1","code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.2.4.4.10","code":"1234"}]}}`)
	for i := range n {
		p := fmt.Sprintf("p%d", i)
		mustPut(`{"resourceType":"Patient","id":"` + p + `","identifier":[{"system":"` + bsnSys + `","value":"` + bsnFor(i) + `"}],"name":[{"family":"Patient` + p + `"}],"generalPractitioner":[{"reference":"Practitioner/gp1"}]}`)
		mustPut(`{"resourceType":"Observation","id":"bp` + p + `","subject":{"reference":"Patient/` + p + `"},"code":{"coding":[{"system":"` + loinc + `","code":"85354-9"}]},"effectiveDateTime":"2021-06-01","status":"final"}`)
		mustPut(`{"resourceType":"Observation","id":"lab` + p + `","subject":{"reference":"Patient/` + p + `"},"category":[{"coding":[{"system":"` + sct + `","code":"49581000146104"}]}],"code":{"coding":[{"system":"` + loinc + `","code":"2345-7"}]},"effectiveDateTime":"2021-01-01","status":"final"}`)
		mustPut(`{"resourceType":"MedicationStatement","id":"ms` + p + `","subject":{"reference":"Patient/` + p + `"},"category":{"coding":[{"system":"urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3","code":"6"}]},"medicationReference":{"reference":"Medication/med1"},"status":"active","taken":"y"}`)
	}
	return s
}

func BenchmarkRead(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), fhir.STU3)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := range 1000 {
		body := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"system":"%s","value":"%s"}]}`, i, bsnSys, bsnFor(i))
		if _, _, err := s.Update(ctx, tenantA, json.RawMessage(body), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Read(ctx, tenantA, "Patient", fmt.Sprintf("p%d", i%1000)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), fhir.STU3)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := json.RawMessage(`{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"` + sct + `","code":"49581000146104"}]}],"code":{"coding":[{"system":"` + loinc + `","code":"2345-7"}]},"effectiveDateTime":"2021-01-01","status":"final"}`)
	for b.Loop() {
		if _, err := s.Create(ctx, tenantA, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSearchBgZ(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a store of 10 000 patients")
	}
	s := benchStore(b, benchPatients)
	ctx := context.Background()
	P := "patient.identifier"
	for _, bc := range []struct {
		name   string
		typ    string
		params string
		lastN  int
	}{
		{"Patient+include", "Patient", "identifier=" + bsnSys + "|%s&_include=Patient:general-practitioner", 0},
		{"MedicationStatement+chain+include", "MedicationStatement", P + "=" + bsnSys + "|%s&category=urn:oid:2.16.840.1.113883.2.4.3.11.60.20.77.5.3|6&_include=MedicationStatement:medication&_revinclude=Provenance:target", 0},
		{"lastn", "Observation", P + "=" + bsnSys + "|%s&code=" + loinc + "|85354-9", 1},
		{"lastn-lab", "Observation", P + "=" + bsnSys + "|%s&category=" + sct + "|49581000146104&_include=Observation:related-target", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				params, err := url.ParseQuery(fmt.Sprintf(bc.params, bsnFor(i%benchPatients)))
				if err != nil {
					b.Fatal(err)
				}
				page, err := s.Search(ctx, tenantA, store.Query{Type: bc.typ, Params: params, Strict: true, LastN: bc.lastN})
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Matches) != 1 {
					b.Fatalf("%d matches", len(page.Matches))
				}
			}
		})
	}
}
