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

// TestRoleDropped: the role logs in while the test runs, and is gone,
// with what it was granted, when the test ends.
func TestRoleDropped(t *testing.T) {
	dsn := DSN(t)
	var name string
	t.Run("user", func(t *testing.T) {
		_, schema := Schema(t, "pgtest_role_")
		name = schema + "_r"
		roleDSN := Role(t, dsn, name)
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()+
			"; GRANT USAGE ON SCHEMA "+pgx.Identifier{schema}.Sanitize()+" TO "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		rc, err := pgx.Connect(context.Background(), roleDSN)
		if err != nil {
			t.Fatalf("log in as %s: %v", name, err)
		}
		var who string
		if err := rc.QueryRow(context.Background(), "SELECT current_user").Scan(&who); err != nil || who != name {
			t.Errorf("logged in as %q (%v), want %q", who, err, name)
		}
		rc.Close(context.Background())
	})
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_roles WHERE rolname = $1`, name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("role %s left: %d %v", name, n, err)
	}
}
