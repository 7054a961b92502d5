package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/nl"
)

// BenchOpener opens an empty STU3 store for a benchmark, closed when b ends.
type BenchOpener func(b *testing.B) store.Store

// BenchPatients is the size of the benchmark store: $SCHAKEL_BENCH_PATIENTS,
// or 100 000.
func BenchPatients() int {
	if n, err := strconv.Atoi(os.Getenv("SCHAKEL_BENCH_PATIENTS")); err == nil && n > 0 {
		return n
	}
	return 100000
}

// BenchPatient is one patient of the benchmark data.
type BenchPatient struct {
	BSN       string
	PatientID string
	Resources []json.RawMessage
}

// templateCount is how many distinct demo patients the benchmark data is
// made from; demo.Generate is too slow (and too small, 9 000 BSNs) to make
// 100 000 directly. Copy k of template i gets its own ids (prefix "c<k>")
// and its own valid BSN.
const templateCount = 1000

var (
	templatesOnce sync.Once
	templates     []demo.Patient
	templatesErr  error
)

// BenchData returns patient i of the benchmark data (deterministic).
func BenchData(i int) (BenchPatient, error) {
	templatesOnce.Do(func() {
		templates, templatesErr = demo.Generate(demo.Options{Count: templateCount, Seed: 1, IDPrefix: "demo"})
	})
	if templatesErr != nil {
		return BenchPatient{}, templatesErr
	}
	t := templates[i%templateCount]
	k := i / templateCount
	p := BenchPatient{BSN: t.BSN, PatientID: fmt.Sprintf("demo-%d-patient", i%templateCount+1)}
	if k == 0 {
		p.Resources = t.Resources
		return p, nil
	}
	p.BSN = benchBSN(i)
	prefix := []byte(`c` + strconv.Itoa(k) + `-`)
	p.PatientID = string(prefix) + p.PatientID[len("demo-"):]
	p.Resources = make([]json.RawMessage, len(t.Resources))
	for j, r := range t.Resources {
		r = bytes.ReplaceAll(r, []byte(`demo-`), prefix)
		p.Resources[j] = bytes.ReplaceAll(r, []byte(t.BSN), []byte(p.BSN))
	}
	return p, nil
}

// benchBSN is a valid BSN outside the 9999 test range for patient i.
func benchBSN(i int) string {
	for n := i * 10; ; n++ {
		first8 := fmt.Sprintf("%08d", 10000000+n%80000000)
		if d, ok := nl.BSNCheckDigit(first8); ok {
			return first8 + string(d)
		}
	}
}

// Import writes the patients in one transaction (or one write at a time
// when the store has no transactions), skipping resources in written (shared
// practices and hospitals); it returns the number of resources written.
func Import(ctx context.Context, s store.Store, tenant string, written map[string]bool, ps ...BenchPatient) (int, error) {
	var todo []json.RawMessage
	for _, p := range ps {
		for _, r := range p.Resources {
			var head struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(r, &head); err != nil {
				return 0, err
			}
			key := head.ResourceType + "/" + head.ID
			if written != nil {
				if written[key] {
					continue
				}
				written[key] = true
			}
			todo = append(todo, r)
		}
	}
	x, ok := s.(store.Transactional)
	if !ok {
		for _, r := range todo {
			if _, _, err := s.Update(ctx, tenant, r, ""); err != nil {
				return 0, err
			}
		}
		return len(todo), nil
	}
	return len(todo), x.InTx(ctx, tenant, func(tx store.Tx) error {
		for _, r := range todo {
			if _, _, err := tx.Update(ctx, r, ""); err != nil {
				return err
			}
		}
		return nil
	})
}

// bgzQuery is one BgZ search ready to run.
type bgzQuery struct {
	name string
	q    store.Query
}

func bgzQueries(bsn string) ([]bgzQuery, error) {
	var out []bgzQuery
	for _, b := range bgz.Queries() {
		path, raw, _ := strings.Cut(b.Query(bsn), "?")
		typ, op, _ := strings.Cut(path, "/")
		params, err := url.ParseQuery(raw)
		if err != nil {
			return nil, err
		}
		q := store.Query{Type: typ, Params: params, Strict: true}
		if op == "$lastn" {
			q.LastN = 1
		}
		out = append(out, bgzQuery{b.Name, q})
	}
	return out, nil
}

// Bench runs the store benchmarks on one store of BenchPatients() patients,
// built once (its build time and the import rate are logged): read by id,
// the 26 BgZ searches of one patient, single searches, $lastn, and the
// import of further patients.
func Bench(b *testing.B, open BenchOpener) {
	if testing.Short() {
		b.Skip("builds a large store")
	}
	ctx := context.Background()
	s := open(b)
	n := BenchPatients()
	written := map[string]bool{}
	// Make the templates before the clock starts.
	if _, err := BenchData(0); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	resources := 0
	// The store is built 100 patients a transaction (a bulk load);
	// ImportPatient below measures one transaction per patient.
	const batch = 100
	for i := 0; i < n; i += batch {
		var ps []BenchPatient
		for j := i; j < min(i+batch, n); j++ {
			p, err := BenchData(j)
			if err != nil {
				b.Fatal(err)
			}
			ps = append(ps, p)
		}
		w, err := Import(ctx, s, tenantA, written, ps...)
		if err != nil {
			b.Fatal(err)
		}
		resources += w
		if i+batch == 1000 {
			b.Logf("bulk import of the first 1 000 patients (%d resources): %v", resources, time.Since(start).Round(time.Millisecond))
		}
	}
	took := time.Since(start)
	b.Logf("store of %d patients, %d resources built in %v (%.0f patients/s, %.0f resources/s)",
		n, resources, took.Round(time.Second), float64(n)/took.Seconds(), float64(resources)/took.Seconds())
	if a, ok := s.(interface{ Analyze(context.Context) error }); ok {
		t := time.Now()
		if err := a.Analyze(ctx); err != nil {
			b.Fatal(err)
		}
		b.Logf("analyze: %v", time.Since(t).Round(time.Millisecond))
	}
	BenchOn(b, s, n, written)
}

// BenchOn runs the benchmarks of Bench on s, a store that already holds
// BenchData(0) to BenchData(n-1) for tenant "00000001". written lists the
// resources in s (nil: unknown), so that ImportPatient adds no duplicates.
func BenchOn(b *testing.B, s store.Store, n int, written map[string]bool) {
	ctx := context.Background()
	if written == nil {
		written = map[string]bool{}
	}
	// Make the templates before any timing.
	if _, err := BenchData(0); err != nil {
		b.Fatal(err)
	}
	// A sample of patients spread over the store, made before the clock
	// starts (BenchData of a copy rewrites its resources).
	sample := make([]BenchPatient, min(n, 500))
	for i := range sample {
		p, err := BenchData(i * 7919 % n)
		if err != nil {
			b.Fatal(err)
		}
		sample[i] = BenchPatient{BSN: p.BSN, PatientID: p.PatientID}
	}
	patient := func(i int) BenchPatient { return sample[i%len(sample)] }
	b.Run("Read", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Read(ctx, tenantA, "Patient", patient(i).PatientID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadParallel", func(b *testing.B) {
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(next.Add(1))
				if _, err := s.Read(ctx, tenantA, "Patient", patient(i).PatientID); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("BgZSet", func(b *testing.B) {
		results := 0
		for i := 0; b.Loop(); i++ {
			qs, err := bgzQueries(patient(i).BSN)
			if err != nil {
				b.Fatal(err)
			}
			for _, q := range qs {
				page, err := s.Search(ctx, tenantA, q.q)
				if err != nil {
					b.Fatalf("%s: %v", q.name, err)
				}
				if q.name == "Patient" && len(page.Matches) != 1 {
					b.Fatalf("patient search found %d", len(page.Matches))
				}
				results += len(page.Matches) + len(page.Included)
			}
		}
		b.ReportMetric(float64(results)/float64(b.N), "resources/op")
	})
	// A holder's node between two pulls: a write (the workflow Task's
	// status), then the whole set four at a time. In SQLite every read
	// connection starts again from an empty page cache after a write.
	b.Run("BgZSetAfterWrite", func(b *testing.B) {
		task := func(status string) json.RawMessage {
			return json.RawMessage(`{"resourceType":"Task","id":"bench-workflow","status":"` + status + `","intent":"order"}`)
		}
		if _, _, err := s.Update(ctx, tenantA, task("requested"), ""); err != nil {
			b.Fatal(err)
		}
		cpu := benchfloor.CPU(b)
		for i := 0; b.Loop(); i++ {
			if _, _, err := s.Update(ctx, tenantA, task([]string{"in-progress", "completed"}[i%2]), ""); err != nil {
				b.Fatal(err)
			}
			qs, err := bgzQueries(patient(i).BSN)
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			next := atomic.Int64{}
			for range 4 {
				wg.Go(func() {
					for j := int(next.Add(1)) - 1; j < len(qs); j = int(next.Add(1)) - 1 {
						if _, err := s.Search(ctx, tenantA, qs[j].q); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
		b.ReportMetric(float64((benchfloor.CPU(b)-cpu).Microseconds())/float64(b.N)/1000, "cpu-ms/op")
	})
	qs, err := bgzQueries(patient(0).BSN)
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range qs {
		if q.name != "Patient" && q.name != "MedicationUse" && q.name != "BloodPressure" && q.name != "LaboratoryTestResult" && q.name != "Problem" {
			continue
		}
		b.Run("BgZ-"+q.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				qs, err := bgzQueries(patient(i).BSN)
				if err != nil {
					b.Fatal(err)
				}
				for _, x := range qs {
					if x.name == q.name {
						if _, err := s.Search(ctx, tenantA, x.q); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
		})
	}
	b.Run("SearchObservationByPatientID", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			q := store.Query{Type: "Observation", Params: url.Values{"patient": {patient(i).PatientID}}}
			if _, err := s.Search(ctx, tenantA, q); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ImportPatient", func(b *testing.B) {
		resources := 0
		for i := 0; b.Loop(); i++ {
			// A fresh copy: new ids and BSN, beyond the store's patients.
			p, err := BenchData(n + i)
			if err != nil {
				b.Fatal(err)
			}
			w, err := Import(ctx, s, tenantA, written, p)
			if err != nil {
				b.Fatal(err)
			}
			resources += w
		}
		b.ReportMetric(float64(resources)/float64(b.N), "resources/op")
	})
}

// taskBody is an STU3 Task of a Notified Pull workflow with the given
// status and lastModified.
func taskBody(id, status, modified string) json.RawMessage {
	return json.RawMessage(`{"resourceType":"Task","id":"` + id + `",` +
		`"identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:uuid:` + id + `"}],` +
		`"groupIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:group-` + id + `"},` +
		`"status":"` + status + `","intent":"order",` +
		`"code":{"coding":[{"system":"http://fhir.nl/fhir/NamingSystem/TaskCode","code":"pull-notification"}]},` +
		`"for":{"reference":"Patient/p1","display":"Patient"},` +
		`"authoredOn":"2026-01-02T10:00:00Z","lastModified":"` + modified + `",` +
		`"requester":{"agent":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"00000001"}}},` +
		`"owner":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"00000002"}},` +
		`"restriction":{"period":{"end":"2026-12-31T00:00:00Z"}},` +
		`"input":[{"type":{"coding":[{"system":"http://fhir.nl/fhir/NamingSystem/TaskParameter","code":"authorization-base"}]},"valueString":"token-` + id + `"}]}`)
}

// BenchTaskStatus measures an update of a Task whose status (and
// lastModified) changes, its other index values staying as they were:
// the write a workflow does most. cpu-µs/op is this process's CPU time per
// update (a PostgreSQL server's is not in it).
func BenchTaskStatus(b *testing.B, s store.Store) {
	ctx := context.Background()
	if _, _, err := s.Update(ctx, tenantA, taskBody("t1", "requested", "2026-01-02T10:00:00Z"), ""); err != nil {
		b.Fatal(err)
	}
	statuses := []string{"received", "accepted", "in-progress", "completed"}
	cpu := benchfloor.CPU(b)
	for i := 0; b.Loop(); i++ {
		modified := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC).Add(time.Duration(i+1) * time.Second).Format(time.RFC3339)
		if _, _, err := s.Update(ctx, tenantA, taskBody("t1", statuses[i%len(statuses)], modified), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((benchfloor.CPU(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}
