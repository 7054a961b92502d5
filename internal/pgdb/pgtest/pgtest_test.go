package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestSchemaDropped: the schema and those named after it are gone when
// the test that asked for them ends.
func TestSchemaDropped(t *testing.T) {
	dsn := DSN(t)
	var schema string
	t.Run("user", func(t *testing.T) {
		var d string
		d, schema = Schema(t, "pgtest_")
		c, err := pgx.Connect(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		for _, s := range []string{schema, schema + "_r4"} {
			if _, err := c.Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{s}.Sanitize()); err != nil {
				t.Fatal(err)
			}
		}
	})
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, $1)`, schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d schemas named after %s left", n, schema)
	}
}
