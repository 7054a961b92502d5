package audit

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// sqliteBackend keeps the log in one SQLite file in WAL mode with
// synchronous=FULL: every commit fsyncs the WAL before it returns, which is
// what makes Append durable (sqlitedb's shared default, NORMAL, is not).
type sqliteBackend struct {
	db *sql.DB
	// inserts holds the prepared multi-row INSERT for each batch size used
	// so far: parsing a 22-column statement costs as much as executing it.
	// Only the committer writes, so only it touches the map.
	inserts map[int]*sql.Stmt
}

func openSQLite(ctx context.Context, path string, readOnly bool) (*sqliteBackend, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	dsn := ":memory:"
	if path != ":memory:" {
		if readOnly {
			if _, err := os.Stat(path); err != nil {
				return nil, err
			}
			q.Add("mode", "ro")
		} else {
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return nil, fmt.Errorf("create database directory: %w", err)
			}
			q.Add("_pragma", "journal_mode(WAL)")
			q.Add("_pragma", "synchronous(FULL)")
		}
		dsn = "file:" + path + "?" + q.Encode()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if path == ":memory:" {
		db.SetMaxOpenConns(1) // every connection would be its own database
	} else {
		db.SetMaxOpenConns(4) // one writer, readers beside it (WAL)
	}
	if !readOnly {
		sub, err := fs.Sub(migrations, "migrations")
		if err == nil {
			err = sqlitedb.Migrate(ctx, db, sub)
		}
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("migrate %s: %w", path, err)
		}
	} else if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &sqliteBackend{db: db, inserts: map[int]*sql.Stmt{}}, nil
}

func (b *sqliteBackend) close() error {
	for _, st := range b.inserts {
		st.Close()
	}
	return b.db.Close()
}

// insert returns the prepared INSERT of n rows, preparing it on first use.
func (b *sqliteBackend) insert(ctx context.Context, n int) (*sql.Stmt, error) {
	if st, ok := b.inserts[n]; ok {
		return st, nil
	}
	st, err := b.db.PrepareContext(ctx, insertRows+strings.Repeat(",(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", n-1))
	if err != nil {
		return nil, err
	}
	b.inserts[n] = st
	return st, nil
}

func (b *sqliteBackend) head(ctx context.Context) (int64, [32]byte, error) {
	var seq int64
	var hash []byte
	var h [32]byte
	err := b.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, h, nil
	}
	if err != nil {
		return 0, h, fmt.Errorf("read chain head: %w", err)
	}
	copy(h[:], hash) // a legacy last row (no hash) starts the chain afresh
	return seq, h, nil
}

func (b *sqliteBackend) lastCheckpoint(ctx context.Context) (int64, error) {
	var seq int64
	err := b.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoint`).Scan(&seq)
	return seq, err
}

const insertRows = `INSERT INTO audit_event (seq, prev, hash, body, ` + columnNames + `)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

func (b *sqliteBackend) write(ctx context.Context, rows []row, cp *Checkpoint) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// One multi-row INSERT per batch: per-statement overhead, not SQLite's
	// page writes, dominates small batches.
	for len(rows) > 0 {
		n := min(len(rows), 64) // 64 rows of 22 values stay far below SQLite's variable limit
		args := make([]any, 0, n*22)
		for _, r := range rows[:n] {
			args = append(append(args, r.seq, r.prev, r.hash, string(r.body)), r.cols.args()...)
		}
		st, err := b.insert(ctx, n)
		if err != nil {
			return err
		}
		// The transaction's connection keeps its own prepared copy.
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	if cp != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoint (seq, head, created_at, jws) VALUES (?,?,?,?)`,
			cp.Seq, cp.Head, cp.Time.UTC().Format(colTime), cp.JWS); err != nil {
			return err
		}
	}
	return tx.Commit()
}

const selectRow = `SELECT seq, prev, hash, body, ` + columnNames + ` FROM audit_event`

func scanRow(sc interface{ Scan(...any) error }) (row, error) {
	var r row
	var body sql.NullString
	if err := sc.Scan(append([]any{&r.seq, &r.prev, &r.hash, &body}, r.cols.dest()...)...); err != nil {
		return row{}, err
	}
	if body.Valid {
		r.body = []byte(body.String)
	}
	return r, nil
}

func (b *sqliteBackend) query(ctx context.Context, f Filter) ([]row, error) {
	w, args := where(f, func(int) string { return "?" })
	rows, err := b.db.QueryContext(ctx, selectRow+w+orderLimit(f, "-1"), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (b *sqliteBackend) count(ctx context.Context, f Filter) (int, error) {
	w, args := where(f, func(int) string { return "?" })
	var n int
	err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_event`+w, args...).Scan(&n)
	return n, err
}

func (b *sqliteBackend) scan(ctx context.Context, fn func(row) error) error {
	rows, err := b.db.QueryContext(ctx, selectRow+` ORDER BY seq`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (b *sqliteBackend) checkpoints(ctx context.Context) ([]Checkpoint, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT seq, head, created_at, jws FROM audit_checkpoint ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var cp Checkpoint
		var at string
		if err := rows.Scan(&cp.Seq, &cp.Head, &at, &cp.JWS); err != nil {
			return nil, err
		}
		cp.Time, _ = time.Parse(colTime, at)
		out = append(out, cp)
	}
	return out, rows.Err()
}
