package sqlite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/storetest"
)

// BenchmarkStore runs the shared store benchmarks on a store of
// storetest.BenchPatients() demo patients (SCHAKEL_BENCH_PATIENTS).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return openStore(b, fhir.STU3) })
}

func BenchmarkReadSmall(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, fhir.STU3)
	for i := range 1000 {
		body := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"system":"%s","value":"%d"}]}`, i, bsnSys, i)
		if _, _, err := s.Update(ctx, tenantA, json.RawMessage(body), ""); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; b.Loop(); i++ {
		if _, err := s.Read(ctx, tenantA, "Patient", fmt.Sprintf("p%d", i%1000)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, fhir.STU3)
	body := json.RawMessage(`{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"http://snomed.info/sct","code":"49581000146104"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"effectiveDateTime":"2021-01-01","status":"final"}`)
	for b.Loop() {
		if _, err := s.Create(ctx, tenantA, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateTaskStatus: an update that changes only a Task's status.
func BenchmarkUpdateTaskStatus(b *testing.B) {
	storetest.BenchTaskStatus(b, openStore(b, fhir.STU3))
}

// BenchmarkCreateLarge stores 30 kB Bundles one after another, as a
// receiver stores pulled data: the cost of a write must not grow with the
// size of the versions already stored.
func BenchmarkCreateLarge(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, fhir.STU3)
	body := largeBundle(30 << 10)
	for b.Loop() {
		if _, err := s.Create(ctx, tenantA, body); err != nil {
			b.Fatal(err)
		}
	}
}

// largeBundle is a collection Bundle of Observations of about size bytes.
func largeBundle(size int) json.RawMessage {
	var buf bytes.Buffer
	buf.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	for i := 0; buf.Len() < size; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"fullUrl":"urn:uuid:%08d-0000-4000-8000-000000000000","resource":{"resourceType":"Observation","id":"o%d","status":"final",`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose [Mass/volume] in Serum or Plasma"}]},`+
			`"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2021-01-01","valueQuantity":{"value":%d,"unit":"mg/dL"}}}`, i, i, 80+i)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}
