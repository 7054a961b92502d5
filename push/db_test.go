package push_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/push"
	"github.com/schakel-nl/schakel/push/storetest"
)

func TestStoreSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() push.Store {
		path := filepath.Join(t.TempDir(), "push.db")
		return func() push.Store {
			db, err := push.OpenDB(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	})
}

// TestStorePostgres runs the contract on PostgreSQL, each test in a fresh
// schema dropped when it ends, when SCHAKEL_TEST_POSTGRES is set.
func TestStorePostgres(t *testing.T) {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	storetest.Run(t, func(t *testing.T) func() push.Store {
		var b [6]byte
		_, _ = rand.Read(b[:])
		schema := "push_test_" + hex.EncodeToString(b[:])
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
		return func() push.Store {
			db, err := push.OpenPostgres(context.Background(), dsn, schema)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		}
	})
}

func TestOpenPostgresRefusesBadInput(t *testing.T) {
	if db, err := push.OpenPostgres(context.Background(), "postgres://%zz", ""); err == nil {
		db.Close()
		t.Fatal("opened with an invalid DSN")
	}
	if db, err := push.OpenPostgres(context.Background(), "postgres://127.0.0.1:1/x", "A;DROP"); err == nil {
		db.Close()
		t.Fatal("opened with an invalid schema")
	}
}
