// Package replaydb keeps the authorization server's replay cache in a
// database: PostgreSQL, so that a node's replicas share it (an assertion
// used at one replica is refused at every other), or SQLite. Both run the
// same statements; only the placeholders differ.
package replaydb

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
	"github.com/schakel-nl/schakel/oauth"
)

//go:embed migrations/*.sql
var migrations embed.FS

//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

// SweepInterval is how often expired pairs are deleted.
const SweepInterval = 30 * time.Second

// Cache is an oauth.ReplayCache in a database table keyed by (issuer, jti).
type Cache struct {
	db       *sql.DB
	postgres bool
	now      func() time.Time
	log      *slog.Logger
	use      string

	nextSweep atomic.Int64 // Unix nanoseconds
	sweeping  atomic.Bool
	sweeps    sync.WaitGroup
}

var _ oauth.ReplayCache = (*Cache)(nil)

// Options are a Cache's collaborators; the zero value is fine.
type Options struct {
	Now    func() time.Time // time.Now when nil
	Logger *slog.Logger     // failed sweeps; slog.Default when nil
}

// OpenSQLite opens (creating and migrating) the cache in the SQLite file at path.
func OpenSQLite(ctx context.Context, path string, o Options) (*Cache, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.Open(ctx, path, sub)
	if err != nil {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	return newCache(db, false, o), nil
}

// OpenPostgres opens the cache in the PostgreSQL database at dsn, its table
// in schema (created when missing; "" keeps the connection's search_path).
func OpenPostgres(ctx context.Context, dsn, schema string, o Options) (*Cache, error) {
	sub, err := fs.Sub(pgMigrations, "pgmigrations")
	if err != nil {
		return nil, err
	}
	db, err := pgdb.Open(ctx, dsn, schema, "oauth_replay_goose_version", sub)
	if err != nil {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	return newCache(db, true, o), nil
}

func newCache(db *sql.DB, postgres bool, o Options) *Cache {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Cache{db: db, postgres: postgres, now: o.Now, log: o.Logger}
	// Insert the pair, or take over an expired one; a live one is left
	// alone and no row is affected. Concurrent uses of one pair (two
	// replicas) serialise on the primary key: exactly one affects a row.
	c.use = c.q(`INSERT INTO oauth_replay (issuer, jti, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at
		WHERE oauth_replay.expires_at <= ?`)
	c.nextSweep.Store(o.Now().Add(SweepInterval).UnixNano())
	return c
}

func (c *Cache) q(query string) string {
	if c.postgres {
		return pgdb.Rebind(query)
	}
	return query
}

// Use implements oauth.ReplayCache (RFC 7523 §3 item 7): it records
// issuer+jti until expiry, or returns oauth.ErrReplay when the pair is
// recorded and not expired. A database error is returned as is: the
// assertion is then refused, never let through unrecorded.
func (c *Cache) Use(ctx context.Context, issuer, jti string, expiry time.Time) error {
	now := c.now()
	res, err := c.db.ExecContext(ctx, c.use, issuer, jti, expiry.UnixMicro(), now.UnixMicro())
	if err != nil {
		return fmt.Errorf("replay cache: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("replay cache: %w", err)
	}
	c.maybeSweep(now)
	if n == 0 {
		return oauth.ErrReplay
	}
	return nil
}

// maybeSweep deletes expired pairs in the background once per
// SweepInterval; one sweep at a time per Cache (replicas each sweep, which
// is harmless: the deletes are idempotent).
func (c *Cache) maybeSweep(now time.Time) {
	if now.UnixNano() < c.nextSweep.Load() || !c.sweeping.CompareAndSwap(false, true) {
		return
	}
	c.nextSweep.Store(now.Add(SweepInterval).UnixNano())
	c.sweeps.Add(1)
	go func() {
		defer c.sweeps.Done()
		defer c.sweeping.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Sweep(ctx, now); err != nil {
			c.log.Warn("replay cache sweep failed", "err", err)
		}
	}()
}

// Sweep deletes the pairs expired at now and returns how many it deleted.
func (c *Cache) Sweep(ctx context.Context, now time.Time) (int64, error) {
	res, err := c.db.ExecContext(ctx, c.q(`DELETE FROM oauth_replay WHERE expires_at <= ?`), now.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("replay cache sweep: %w", err)
	}
	return res.RowsAffected()
}

// Len returns the number of recorded pairs, expired ones not yet swept included.
func (c *Cache) Len(ctx context.Context) (int, error) {
	var n int
	err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM oauth_replay`).Scan(&n)
	return n, err
}

// Close waits for a running sweep and closes the database.
func (c *Cache) Close() error {
	c.sweeps.Wait()
	return c.db.Close()
}
