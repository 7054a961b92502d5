package importer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/fhir/store/storetest"
	"github.com/schakel-nl/schakel/internal/benchfloor"
)

// BenchmarkImportDemo bulk-imports the BgZ of 1 000 demo patients (one
// transaction Bundle each; $SCHAKEL_BENCH_PATIENTS patients when set, e.g.
// 10000) into a fresh store per iteration, and then re-imports them into the
// loaded store (every resource unchanged), next to the machine's floors of
// the same run.
func BenchmarkImportDemo(b *testing.B) {
	if testing.Short() {
		b.Skip("generates and imports 1 000 patients")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SCHAKEL_BENCH_PATIENTS")); err == nil && v > 0 {
		n = v
	}
	bundles := make([][]byte, n)
	resources := 0
	for i := range n {
		p, err := storetest.BenchData(i)
		if err != nil {
			b.Fatal(err)
		}
		bundles[i] = demo.TransactionBundle(demo.Patient{BSN: p.BSN, Resources: p.Resources})
		resources += len(p.Resources)
	}
	benchfloor.Run(b, "")
	backends := map[string]func(b *testing.B) store.Store{
		"sqlite": func(b *testing.B) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "fhir.db"), fhir.STU3)
			if err != nil {
				b.Fatal(err)
			}
			return st
		},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		backends["postgres"] = func(b *testing.B) store.Store { return openPostgres(b, dsn) }
	}
	importAll := func(b *testing.B, st store.Store) importer.Counts {
		im := newImporter(b, st)
		sum := &importer.Summary{}
		bk, err := im.NewBulk(sum, importer.BulkOptions{Strict: true})
		if err != nil {
			b.Fatal(err)
		}
		for i, bundle := range bundles {
			if err := bk.Add(context.Background(), fmt.Sprintf("bundle-%d", i), bundle); err != nil {
				b.Fatal(err)
			}
		}
		if err := bk.Finish(context.Background()); err != nil {
			b.Fatal(err)
		}
		return sum.Total()
	}
	for name, open := range backends {
		b.Run(fmt.Sprintf("%s/%d/fresh", name, n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				st := open(b)
				b.StartTimer()
				// Shared organisations and practitioners recur across
				// patients: created once, unchanged after.
				if c := importAll(b, st); c.Sum() != resources || c.Created == 0 || c.Updated != 0 {
					b.Fatalf("counts %+v for %d resources", c, resources)
				}
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
		})
		b.Run(fmt.Sprintf("%s/%d/unchanged", name, n), func(b *testing.B) {
			st := open(b)
			defer st.Close()
			importAll(b, st)
			for b.Loop() {
				if c := importAll(b, st); c.Unchanged != resources {
					b.Fatalf("unchanged %d of %d", c.Unchanged, resources)
				}
			}
			b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
		})
	}
}

// openPostgres opens a store in a fresh schema, dropped when tb ends.
func openPostgres(tb testing.TB, dsn string) store.Store {
	tb.Helper()
	ctx := context.Background()
	var r [6]byte
	rand.Read(r[:])
	schema := "importtest_" + hex.EncodeToString(r[:])
	st, err := postgres.Open(ctx, dsn, fhir.STU3, postgres.WithSchema(schema))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		st.Close()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			tb.Error(err)
		}
	})
	return st
}
