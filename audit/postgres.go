package audit

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/schakel-nl/schakel/internal/pgdb"
)

// pgBackend keeps the log in two tables of one PostgreSQL schema. It holds
// two connections, each a pool of one: the committer's, and one for
// queries; audit reads are rare next to writes. pgxpool reconnects a
// connection that broke, and pings one that sat idle a second or more
// before it is used: a server restarted, or a network path cut, while it
// was idle leaves it looking open until a statement fails on it, and that
// statement would be a record someone is waiting for.
type pgBackend struct {
	schema string // quoted identifier
	writer *pgxpool.Pool
	reader *pgxpool.Pool
	// lockKey names the advisory lock the writers of this log take turns by.
	lockKey string
}

// pgMigrations create the tables (pgmigrations/00001_audit.sql: the
// append-only triggers and revoked privileges are there). They run under
// goose's history, once per schema, so a replica that starts beside others
// that are appending takes no lock on the log's tables.
//
//go:embed pgmigrations/*.sql
var pgMigrations embed.FS

func openPostgres(ctx context.Context, dsn, schema string, readOnly bool) (*pgBackend, error) {
	cfg, err := pgdb.PoolConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 1
	// Durable commit whatever the server's default.
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SET synchronous_commit TO on`)
		return err
	}
	b := &pgBackend{schema: pgx.Identifier{schema}.Sanitize(), lockKey: "schakel-audit-append:" + schema}
	// Neither pool connects before it is used.
	if b.writer, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, err
	}
	if b.reader, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		b.close()
		return nil, err
	}
	if readOnly {
		if err := b.reader.Ping(ctx); err != nil {
			b.close()
			return nil, err
		}
		return b, nil
	}
	// Concurrent first opens of the same schema take turns under goose's
	// advisory lock.
	sub, err := fs.Sub(pgMigrations, "pgmigrations")
	if err != nil {
		b.close()
		return nil, err
	}
	db, err := pgdb.Open(ctx, dsn, schema, "audit_goose_version", sub)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("create audit tables: %w", err)
	}
	db.Close()
	return b, nil
}

func (b *pgBackend) sql(q string) string { return strings.ReplaceAll(q, "{s}", b.schema) }

func (b *pgBackend) close() error {
	for _, p := range []*pgxpool.Pool{b.writer, b.reader} {
		if p != nil {
			p.Close()
		}
	}
	return nil
}

func (b *pgBackend) head(ctx context.Context) (seq int64, h [32]byte, err error) {
	err = b.reader.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		var hash []byte
		err := c.QueryRow(ctx, b.sql(`SELECT seq, hash FROM {s}.audit_event ORDER BY seq DESC LIMIT 1`)).Scan(&seq, &hash)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		copy(h[:], hash)
		return err
	})
	return seq, h, err
}

// ping reaches the server on the writer's connection, reconnecting it
// when it broke.
func (b *pgBackend) ping(ctx context.Context) error {
	return b.writer.Ping(ctx)
}

func (b *pgBackend) lastCheckpoint(ctx context.Context) (seq int64, err error) {
	err = b.reader.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, b.sql(`SELECT COALESCE(MAX(seq), 0) FROM {s}.audit_checkpoint`)).Scan(&seq)
	})
	return seq, err
}

// write stores rows chained onto the tip they name; it fails, writing
// nothing, when another writer has moved the tip since.
func (b *pgBackend) write(ctx context.Context, rows []row, cp *Checkpoint) error {
	moved := false
	_, err := b.writeShared(ctx, func(t tip) ([]row, *Checkpoint) {
		if len(rows) > 0 && (rows[0].seq != t.seq+1 || !bytes.Equal(rows[0].prev, t.head[:])) {
			moved = true
			return nil, nil
		}
		return rows, cp
	})
	if err == nil && moved {
		err = errors.New("another writer appended to the log")
	}
	return err
}

// writeShared appends one batch while holding the log's write lock, a
// transaction-scoped advisory lock on the schema's log: the replicas of a
// node take turns, each chaining onto the head it reads inside the lock, so
// the log stays one chain. The lock is released by the commit (or the
// rollback), never held across batches.
func (b *pgBackend) writeShared(ctx context.Context, build func(t tip) ([]row, *Checkpoint)) (int, error) {
	ins := b.sql(`INSERT INTO {s}.audit_event (seq, prev, hash, body, ` + columnNames + `)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)`)
	n := 0
	err := b.writer.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			var t tip
			var hash []byte
			var cpAt string
			// One round trip: the lock, then the tip as it is under it.
			lookup := &pgx.Batch{}
			lookup.Queue(`SELECT pg_advisory_xact_lock(hashtext($1))`, b.lockKey)
			lookup.Queue(b.sql(`SELECT seq, hash FROM {s}.audit_event ORDER BY seq DESC LIMIT 1`)).QueryRow(func(r pgx.Row) error {
				if err := r.Scan(&t.seq, &hash); err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
				return nil
			})
			lookup.Queue(b.sql(`SELECT seq, created_at FROM {s}.audit_checkpoint ORDER BY seq DESC LIMIT 1`)).QueryRow(func(r pgx.Row) error {
				if err := r.Scan(&t.cpSeq, &cpAt); err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
				return nil
			})
			if err := tx.SendBatch(ctx, lookup).Close(); err != nil {
				return err
			}
			copy(t.head[:], hash)
			if cpAt != "" {
				t.cpTime, _ = time.Parse(colTime, cpAt)
			}
			rows, cp := build(t)
			if len(rows) == 0 && cp == nil {
				return nil
			}
			batch := &pgx.Batch{}
			for _, r := range rows {
				batch.Queue(ins, append([]any{r.seq, r.prev, r.hash, string(r.body)}, r.cols.args()...)...)
			}
			if cp != nil {
				batch.Queue(b.sql(`INSERT INTO {s}.audit_checkpoint (seq, head, created_at, jws) VALUES ($1,$2,$3,$4)`),
					cp.Seq, cp.Head, cp.Time.UTC().Format(colTime), cp.JWS)
			}
			n = batch.Len()
			return tx.SendBatch(ctx, batch).Close()
		})
	})
	if err != nil {
		n = 0
	}
	return n, err
}

const pgSelectRow = `SELECT seq, prev, hash, body, ` + columnNames + ` FROM {s}.audit_event`

func (b *pgBackend) query(ctx context.Context, f Filter) (out []row, err error) {
	w, args := where(f, func(n int) string { return fmt.Sprintf("$%d", n) })
	err = b.reader.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, b.sql(pgSelectRow)+w+orderLimit(f, "ALL"), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanPGRow(rows)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

func scanPGRow(rows pgx.Rows) (row, error) {
	var r row
	var body string
	if err := rows.Scan(append([]any{&r.seq, &r.prev, &r.hash, &body}, r.cols.dest()...)...); err != nil {
		return row{}, err
	}
	r.body = []byte(body)
	return r, nil
}

func (b *pgBackend) count(ctx context.Context, f Filter) (n int, err error) {
	w, args := where(f, func(n int) string { return fmt.Sprintf("$%d", n) })
	err = b.reader.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, b.sql(`SELECT count(*) FROM {s}.audit_event`)+w, args...).Scan(&n)
	})
	return n, err
}

func (b *pgBackend) scan(ctx context.Context, fn func(row) error) error {
	return b.reader.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, b.sql(pgSelectRow+` ORDER BY seq`))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanPGRow(rows)
			if err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

func (b *pgBackend) checkpoints(ctx context.Context, last bool) (out []Checkpoint, err error) {
	err = b.reader.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, b.sql(`SELECT seq, head, created_at, jws FROM {s}.audit_checkpoint`+checkpointOrder(last)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var cp Checkpoint
			var at string
			if err := rows.Scan(&cp.Seq, &cp.Head, &at, &cp.JWS); err != nil {
				return err
			}
			cp.Time, _ = time.Parse(colTime, at)
			out = append(out, cp)
		}
		return rows.Err()
	})
	return out, err
}
