package logcentral

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/internal/pgdb"
)

// pgStore keeps the shipped records in a PostgreSQL schema. COMMIT returns
// after the WAL flush (synchronous_commit = on, set per transaction), so an
// acknowledgement is durable.
type pgStore struct {
	pool   *pgxpool.Pool
	schema string // quoted identifier
	name   string // the schema's name, for CopyFrom
}

// pgMigrations create the tables (pgmigrations/00001_logcentral.sql),
// once per schema under goose's history, not at every open.
//
//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

func openPostgres(ctx context.Context, dsn, schema string) (*pgStore, error) {
	if schema == "" {
		schema = "logcentral"
	}
	cfg, err := pgdb.PoolConfig(dsn)
	if err != nil {
		return nil, err
	}
	// Concurrent first opens of the same schema take turns under goose's
	// advisory lock.
	sub, err := fs.Sub(pgMigrations, "pgmigrations")
	if err != nil {
		return nil, err
	}
	db, err := pgdb.Open(ctx, dsn, schema, "logcentral_goose_version", sub)
	if err != nil {
		return nil, fmt.Errorf("create tables: %w", err)
	}
	db.Close()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &pgStore{pool: pool, schema: pgx.Identifier{schema}.Sanitize(), name: schema}, nil
}

func (s *pgStore) sql(q string) string { return strings.ReplaceAll(q, "{s}", s.schema) }

func (s *pgStore) Close() error { s.pool.Close(); return nil }

func (s *pgStore) Head(ctx context.Context, node string) (Head, error) {
	h := Head{Node: node}
	var hash []byte
	err := s.pool.QueryRow(ctx, s.sql(`SELECT seq, hash, received FROM {s}.node_head WHERE node = $1`), node).Scan(&h.Seq, &hash, &h.Received)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return h, err
	}
	copy(h.Hash[:], hash)
	return h, nil
}

func (s *pgStore) Append(ctx context.Context, node string, entries []audit.Entry, received time.Time) error {
	if len(entries) == 0 {
		return nil
	}
	rows, err := decodeEntries(entries)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
			return err
		}
		src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{node, r.seq, r.prev, r.hash, r.body}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{s.name, "shipped_entry"},
			[]string{"node", "seq", "prev", "hash", "body"}, src); err != nil {
			return err
		}
		last := rows[len(rows)-1]
		_, err := tx.Exec(ctx, s.sql(`INSERT INTO {s}.node_head (node, seq, hash, received) VALUES ($1,$2,$3,$4)
			ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, received = excluded.received`),
			node, last.seq, last.hash, received.UTC())
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return fmt.Errorf("%w: %s", ErrConflict, pgErr.Message)
	}
	return err
}

func (s *pgStore) Entries(ctx context.Context, node string, after int64, limit int) ([]audit.Entry, error) {
	rows, err := s.pool.Query(ctx, s.sql(`SELECT seq, prev, hash, body FROM {s}.shipped_entry WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT $3`),
		node, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanEntries(rows)
}

func (s *pgStore) Heads(ctx context.Context) ([]Head, error) {
	rows, err := s.pool.Query(ctx, s.sql(`SELECT node, seq, hash, received FROM {s}.node_head ORDER BY node`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Head
	for rows.Next() {
		var h Head
		var hash []byte
		if err := rows.Scan(&h.Node, &h.Seq, &hash, &h.Received); err != nil {
			return nil, err
		}
		copy(h.Hash[:], hash)
		out = append(out, h)
	}
	return out, rows.Err()
}
