package replaydb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/oauth/replaydb"
	"github.com/schakel-nl/schakel/oauth/replaytest"
)

func TestSQLite(t *testing.T) {
	replaytest.Run(t, func(t *testing.T, clock *replaytest.Clock) func() oauth.ReplayCache {
		path := filepath.Join(t.TempDir(), "replay.db")
		var opened *replaydb.Cache
		return func() oauth.ReplayCache {
			// One SQLite file has one owner: a second open is the same cache.
			if opened == nil {
				opened = openSQLite(t, path, clock)
			}
			return opened
		}
	}, false)
}

// TestPostgres runs the contract on PostgreSQL, each test in a fresh schema
// dropped when it ends, when SCHAKEL_TEST_POSTGRES is set.
func TestPostgres(t *testing.T) {
	dsn := postgresDSN(t)
	replaytest.Run(t, func(t *testing.T, clock *replaytest.Clock) func() oauth.ReplayCache {
		schema := freshSchema(t, dsn)
		return func() oauth.ReplayCache { return openPostgres(t, dsn, schema, clock) }
	}, true)
}

// TestSweepDeletesExpiredPairs checks that expired pairs leave the table,
// on every backend.
func TestSweepDeletesExpiredPairs(t *testing.T) {
	backends := map[string]func(t *testing.T, clock *replaytest.Clock) *replaydb.Cache{
		"sqlite": func(t *testing.T, clock *replaytest.Clock) *replaydb.Cache {
			return openSQLite(t, filepath.Join(t.TempDir(), "replay.db"), clock)
		},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		backends["postgres"] = func(t *testing.T, clock *replaytest.Clock) *replaydb.Cache {
			return openPostgres(t, dsn, freshSchema(t, dsn), clock)
		}
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clock := &replaytest.Clock{}
			now := clock.Now()
			c := open(t, clock)
			for i, exp := range []time.Duration{time.Minute, time.Minute, time.Hour} {
				if err := c.Use(ctx, "a", string(rune('a'+i)), now.Add(exp)); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := c.Sweep(ctx, now.Add(time.Minute)); err != nil || n != 2 {
				t.Fatalf("sweep: %d %v, want the 2 expired pairs", n, err)
			}
			if n, err := c.Len(ctx); err != nil || n != 1 {
				t.Fatalf("after the sweep %d pairs (%v), want 1", n, err)
			}
			if err := c.Use(ctx, "a", "c", now.Add(time.Hour)); err == nil {
				t.Fatal("the live pair was swept")
			}
		})
	}
}

func openSQLite(t *testing.T, path string, clock *replaytest.Clock) *replaydb.Cache {
	c, err := replaydb.OpenSQLite(context.Background(), path, replaydb.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func openPostgres(t *testing.T, dsn, schema string, clock *replaytest.Clock) *replaydb.Cache {
	c, err := replaydb.OpenPostgres(context.Background(), dsn, schema, replaydb.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func postgresDSN(t *testing.T) string {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	return dsn
}

func freshSchema(t *testing.T, dsn string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "replay_test_" + hex.EncodeToString(b[:])
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
	return schema
}

func dropSchema(dsn, schema string) {
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		return
	}
	defer c.Close(context.Background())
	_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
}
