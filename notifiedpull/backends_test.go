package notifiedpull

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

// backend opens a fresh, empty exchange state database; a second call
// within the same test opens the same database again (what a second
// replica, or a restart, sees).
type backend func(t *testing.T) func() *DB

// backends are the databases every contract test of DB runs on: SQLite
// always, PostgreSQL when SCHAKEL_TEST_POSTGRES is set, each test in a
// fresh schema dropped when it ends.
func backends(t *testing.T) map[string]backend {
	out := map[string]backend{
		"sqlite": func(t *testing.T) func() *DB {
			path := filepath.Join(t.TempDir(), "np.db")
			return func() *DB {
				db, err := OpenDB(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
		},
	}
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		return out
	}
	out["postgres"] = func(t *testing.T) func() *DB {
		var b [6]byte
		_, _ = rand.Read(b[:])
		schema := "np_test_" + hex.EncodeToString(b[:])
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
		return func() *DB {
			db, err := OpenPostgres(context.Background(), dsn, schema)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	}
	return out
}

// onEach runs test on every backend.
func onEach(t *testing.T, test func(t *testing.T, open func() *DB)) {
	for name, b := range backends(t) {
		t.Run(name, func(t *testing.T) { test(t, b(t)) })
	}
}
