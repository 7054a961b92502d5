package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/storetest"
)

// testDSN returns the test database, or skips when none is configured.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	return dsn
}

// openStore opens a store in a fresh schema, dropped when t ends.
func openStore(t testing.TB, v fhir.Version) *Store {
	t.Helper()
	dsn := testDSN(t)
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	schema := "storetest_" + hex.EncodeToString(b[:])
	s, err := Open(ctx, dsn, v, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, v fhir.Version) store.Store { return openStore(t, v) })
}

func TestNumbered(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT 1":                     "SELECT 1",
		"a = ? AND b IN (?, ?)":        "a = $1 AND b IN ($2, $3)",
		"?":                            "$1",
		"LIMIT ? OFFSET ?":             "LIMIT $1 OFFSET $2",
		"x(?,?,?,?,?,?,?,?,?,?,?) = ?": "x($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) = $12",
	} {
		if got := numbered(in); got != want {
			t.Errorf("numbered(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "postgres://u:secret@127.0.0.1:1/x?sslmode=bogus", fhir.STU3); err == nil || contains(err.Error(), "secret") {
		t.Fatalf("bad DSN: %v", err)
	}
	if _, err := Open(ctx, "postgres://127.0.0.1/x", "dstu2"); err == nil {
		t.Fatal("unknown version accepted")
	}
	if _, err := Open(ctx, "postgres://127.0.0.1/x", fhir.STU3, WithSchema(`x"; DROP TABLE y; --`)); err == nil {
		t.Fatal("bad schema accepted")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	res, err := s.Create(ctx, "00000001", []byte(`{"resourceType":"Patient"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Analyze(ctx); err != nil {
		t.Fatal(err)
	}
	// Opening the migrated schema again is a no-op migration.
	schema := s.pool.Config().ConnConfig.RuntimeParams["search_path"]
	s2, err := Open(ctx, testDSN(t), fhir.STU3, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Read(ctx, "00000001", "Patient", res.ID); err != nil || string(got.Body) != string(res.Body) {
		t.Fatalf("after reopen: %v %s", err, got.Body)
	}
}
