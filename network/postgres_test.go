package network

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// TestExchangeOnPostgreSQL runs the Notified Pull with both nodes' FHIR
// stores in PostgreSQL, the production backend.
func TestExchangeOnPostgreSQL(t *testing.T) {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	prefix := fmt.Sprintf("nw_%d_", time.Now().UnixNano())
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		for _, n := range []string{"gp_node", "hospital_node"} {
			for _, schema := range []string{prefix + n, node.StoreSchema(fhir.R4, prefix+n)} {
				_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			}
		}
	})
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
