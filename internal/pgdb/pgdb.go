// Package pgdb opens the PostgreSQL databases Schakel's components keep
// their state in when a node runs on PostgreSQL, and applies their goose
// migrations. It is the PostgreSQL counterpart of internal/sqlitedb: the
// components run the same database/sql code on both, with "?" placeholders
// rewritten by Rebind.
package pgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ConnectTimeout bounds a new connection to PostgreSQL when the DSN sets no
// connect_timeout: during a failover to an address that does not answer, a
// request fails with 503 after it instead of waiting for its client to
// give up.
const ConnectTimeout = 5 * time.Second

// PoolConfig parses dsn for a pgxpool pool, with ConnectTimeout when the
// DSN sets no connect_timeout. The error never echoes the DSN: it may hold
// a password.
func PoolConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("invalid PostgreSQL DSN")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	return cfg, nil
}

// Open connects to dsn (a PostgreSQL URL or key=value string) and migrates
// the component's tables with the SQL files at the root of migrations. With
// a schema, the tables live there (created when missing), so one database
// holds the state of several nodes; without, in the connection's
// search_path. table names the component's goose history, so components
// sharing a schema keep apart histories. Concurrent opens (replicas
// starting together) take turns through goose's advisory lock.
func Open(ctx context.Context, dsn, schema, table string, migrations fs.FS) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password: do not echo it.
		return nil, errors.New("invalid PostgreSQL DSN")
	}
	if schema != "" {
		if !schemaPattern.MatchString(schema) {
			return nil, fmt.Errorf("invalid schema name %q", schema)
		}
		cfg.RuntimeParams["search_path"] = schema
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = ConnectTimeout
	}
	db := stdlib.OpenDB(*cfg)
	// As pgxpool's default: these stores answer requests concurrently, and
	// PostgreSQL, unlike SQLite, lets writers to different rows proceed.
	db.SetMaxOpenConns(max(4, runtime.NumCPU()))
	db.SetMaxIdleConns(max(4, runtime.NumCPU()))
	if schema != "" {
		if err := EnsureSchema(ctx, db, schema); err != nil {
			db.Close()
			return nil, err
		}
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations,
		goose.WithSessionLocker(locker), goose.WithTableName(table))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return db, nil
}

// EnsureSchema creates schema when it is missing. Only then: CREATE SCHEMA
// IF NOT EXISTS asks for the database's CREATE privilege even when the
// schema is there, which a role that only uses the tables does not have.
func EnsureSchema(ctx context.Context, db *sql.DB, schema string) error {
	var exists bool
	err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists)
	if err == nil && !exists {
		_, err = db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
	}
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

// Rebind rewrites the "?" placeholders of q as PostgreSQL's "$1", "$2", ...
// The components' SQL holds no "?" inside literals, so every one is a
// placeholder.
func Rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b.WriteByte(q[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}
