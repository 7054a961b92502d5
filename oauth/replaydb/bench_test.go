package replaydb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/oauth/replaydb"
)

// BenchmarkFloor reports the machine's floors in the same run: add "|Floor" to -bench.
func BenchmarkFloor(b *testing.B) { benchfloor.Run(b, "") }

// BenchmarkUse is one token request's replay check: a fresh jti recorded,
// from parallel requesters. Memory always, SQLite always, PostgreSQL when
// SCHAKEL_TEST_POSTGRES is set.
func BenchmarkUse(b *testing.B) {
	caches := map[string]func(b *testing.B) oauth.ReplayCache{
		"memory": func(*testing.B) oauth.ReplayCache { return oauth.NewMemoryReplayCache(0, nil) },
		"sqlite": func(b *testing.B) oauth.ReplayCache {
			c, err := replaydb.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "replay.db"), replaydb.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			return c
		},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		caches["postgres"] = func(b *testing.B) oauth.ReplayCache {
			schema := fmt.Sprintf("replay_bench_%d", time.Now().UnixNano())
			c, err := replaydb.OpenPostgres(context.Background(), dsn, schema, replaydb.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close(); dropSchema(dsn, schema) })
			return c
		}
	}
	for _, name := range []string{"memory", "sqlite", "postgres"} {
		open, ok := caches[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			c := open(b)
			exp := time.Now().Add(5 * time.Minute)
			var n atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Use(context.Background(), "https://gp.example/90000001", fmt.Sprint(n.Add(1)), exp); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
