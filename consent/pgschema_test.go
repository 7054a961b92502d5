package consent

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"

	"github.com/schakel-nl/schakel/internal/pgdb"
)

// TestPostgresSharesASchema opens the registry in a schema where another
// component has already recorded migrations in goose's default history
// table (as the node's FHIR store does), and in a schema made before the
// registry had a history of its own: both end up with working tables, and
// no migration runs twice.
func TestPostgresSharesASchema(t *testing.T) {
	dsn := postgresDSN(t)
	ctx := context.Background()
	fresh := func(t *testing.T) string {
		schema := fmt.Sprintf("consent_share_%d", time.Now().UnixNano())
		t.Cleanup(func() {
			if c, err := pgx.Connect(context.Background(), dsn); err == nil {
				_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
				c.Close(context.Background())
			}
		})
		return schema
	}
	use := func(t *testing.T, s *Store) {
		t.Helper()
		r, err := s.Register(ctx, Registration{PatientBSN: bsn(t, 60), Effect: Permit, HolderType: "Z3", Source: SourceProvider, RegisteredBy: uraHolder})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, r.ID); err != nil || got.ID != r.ID {
			t.Fatalf("get: %+v %v", got, err)
		}
	}
	t.Run("another component's history", func(t *testing.T) {
		schema := fresh(t)
		// A stand-in for another store: one migration in goose's default table.
		other := fstest.MapFS{"00001_other.sql": {Data: []byte("-- +goose Up\nCREATE TABLE other_thing (id int);\n")}}
		db, err := pgdb.Open(ctx, dsn, schema, goose.DefaultTablename, other)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		s, err := OpenPostgres(ctx, dsn, schema)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		use(t, s)
	})
	t.Run("history in goose's default table", func(t *testing.T) {
		schema := fresh(t)
		// The registry as it was made before: its migrations recorded in
		// goose's default table.
		db, err := pgdb.Open(ctx, dsn, schema, goose.DefaultTablename, migrationFS())
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		for range 2 { // adopted once, then opened as usual
			s, err := OpenPostgres(ctx, dsn, schema)
			if err != nil {
				t.Fatal(err)
			}
			use(t, s)
			s.Close()
		}
	})
}
