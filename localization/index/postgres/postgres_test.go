package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/localization/index/indextest"
)

// openTest opens a store in a fresh schema of the test database named by
// SCHAKEL_TEST_POSTGRES, dropped when the test ends; it skips without one.
func openTest(t testing.TB) *Store {
	t.Helper()
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES is not set")
	}
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "localization_test_" + hex.EncodeToString(b[:])
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	s, err := Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	indextest.Run(t, func(t *testing.T) index.Store { return openTest(t) })
}

func TestOpenInvalidDSNDoesNotEchoIt(t *testing.T) {
	_, err := Open(context.Background(), "postgres://user:s3cret@[::1")
	if err == nil {
		t.Fatal("opened an invalid DSN")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Fatalf("error leaks the password: %s", got)
	}
}

// BenchmarkLookup1M is the SQLite benchmark's size on PostgreSQL.
func BenchmarkLookup1M(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 1M-entry index")
	}
	indextest.BenchmarkLookup(b, openTest(b), 1_000_000)
}

// BenchmarkLookup10M measures lookups on an index of ten million entries
// (2.5 million patients at four holders each), built with COPY.
func BenchmarkLookup10M(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 10M-entry index")
	}
	s := openTest(b)
	indextest.BenchmarkLookup(b, s, 10_000_000)
}

// TestBulkLoadKeepsSchema: after a load into an empty index has dropped and
// rebuilt the indexes, they are the ones the migration made.
func TestBulkLoadKeepsSchema(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	defs := func() []string {
		rows, err := s.pool.Query(ctx, `SELECT indexdef FROM pg_indexes
			WHERE schemaname = current_schema() AND tablename = 'localization_entry' ORDER BY indexname`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := defs()
	if len(before) != 3 {
		t.Fatalf("migration made %d indexes: %v", len(before), before)
	}
	if _, err := s.BulkLoad(ctx, indextest.Synthetic(100)); err != nil {
		t.Fatal(err)
	}
	if after := defs(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("indexes after bulk load:\n%v\nwant\n%v", after, before)
	}
	// A second load goes the other way, into a filled index, and skips
	// what is there already.
	n, err := s.BulkLoad(ctx, indextest.Synthetic(200))
	if err != nil || n != 100 {
		t.Fatalf("second load: %d, %v; want the 100 new entries", n, err)
	}
	// Duplicates in a load into an empty index fail it as a whole.
	s2 := openTest(t)
	dup := func(yield func(index.Entry) bool) {
		for e := range indextest.Synthetic(4) {
			if !yield(e) || !yield(e) {
				return
			}
		}
	}
	if _, err := s2.BulkLoad(ctx, dup); err == nil {
		t.Fatal("duplicate entries loaded")
	}
	if got := defs2(t, s2); len(got) != 3 {
		t.Fatalf("failed load left indexes %v", got)
	}
}

func defs2(t *testing.T, s *Store) []string {
	rows, err := s.pool.Query(context.Background(), `SELECT indexname FROM pg_indexes
		WHERE schemaname = current_schema() AND tablename = 'localization_entry'`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}
