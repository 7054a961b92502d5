// Package pgtest gives a test a PostgreSQL schema of its own on the server
// that SCHAKEL_TEST_POSTGRES names, and drops it when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the test server's connection string.
const Env = "SCHAKEL_TEST_POSTGRES"

// DSN is the test server's connection string; tb is skipped without one.
func DSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		tb.Skip(Env + " not set")
	}
	return dsn
}

// Schema returns the test server's connection string and a new schema
// name starting with prefix (lower case). When tb ends, every schema whose
// name starts with that name is dropped: the schema and those named after
// it (an R4 store's, the addressbook replicas', a network's per node).
func Schema(tb testing.TB, prefix string) (dsn, schema string) {
	tb.Helper()
	dsn = DSN(tb)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema = prefix + hex.EncodeToString(b[:])
	tb.Cleanup(func() { dropPrefixed(dsn, schema) })
	return dsn, schema
}

func dropPrefixed(dsn, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, prefix)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		_, _ = c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{n}.Sanitize()+" CASCADE")
	}
}

// Role creates a login role named name on the test server and returns the
// connection string that logs in as it; the test grants it what it needs.
// When tb ends the role is dropped, with every privilege it was granted.
// tb is skipped when the test server's connection string is not a URL.
func Role(tb testing.TB, dsn, name string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		tb.Skipf("%s is not a postgres:// URL", Env)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	r := pgx.Identifier{name}.Sanitize()
	if _, err := c.Exec(ctx, `CREATE ROLE `+r+` LOGIN`); err != nil {
		tb.Fatalf("create role %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			defer c.Close(ctx)
			_, err = c.Exec(ctx, `DROP OWNED BY `+r+`; DROP ROLE IF EXISTS `+r)
		}
		if err != nil {
			tb.Logf("role %s left behind: %v", name, err)
		}
	})
	u.User = url.User(name)
	return u.String()
}
