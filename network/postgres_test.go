package network

import (
	"context"
	"testing"

	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// TestExchangeOnPostgreSQL runs the Notified Pull with both nodes' FHIR
// stores in PostgreSQL, the production backend.
func TestExchangeOnPostgreSQL(t *testing.T) {
	dsn, prefix := pgtest.Schema(t, "nw_")
	prefix += "_" // the nodes' schemas are named after it
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Up(ctx, Options{DataDir: t.TempDir(), Patients: 1, Postgres: dsn, PostgresSchemaPrefix: prefix})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	nw.Start(ctx)
	t.Cleanup(func() { cancel(); _ = nw.Wait() })
	s, err := nw.Exchange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != notifiedpull.StatusCompleted || s.Total == 0 {
		t.Fatalf("exchange on PostgreSQL: %s, %d resources", s.Status, s.Total)
	}
}
