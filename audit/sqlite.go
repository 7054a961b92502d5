package audit

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// sqliteBackend keeps the log in one SQLite file in WAL mode. On its own
// (Config.NoJournal) it runs with synchronous=FULL: every commit fsyncs the
// WAL before it returns, which is what makes Append durable. Behind the
// journal (journaled.go) it runs with synchronous=NORMAL, since the journal
// already holds every record durably, and makes its commits durable only
// before journal segments are removed.
type sqliteBackend struct {
	db   *sql.DB
	path string
	// inserts holds the prepared multi-row INSERT for each statement size
	// (a power of two up to maxInsertRows): parsing a 22-column statement
	// costs as much as executing it.
	// One goroutine writes (the committer, or the indexer behind the
	// journal), so only it touches the map.
	inserts map[int]*sql.Stmt
}

// openSQLite opens the audit database at path; synchronous is SQLite's
// setting for writers (FULL or NORMAL), ignored when readOnly.
func openSQLite(ctx context.Context, path string, readOnly bool, synchronous string) (*sqliteBackend, error) {
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
			q.Add("_pragma", "synchronous("+synchronous+")")
			// Statement sub-journals in memory: a multi-row INSERT would
			// otherwise write one to a temporary file per statement.
			q.Add("_pragma", "temp_store(MEMORY)")
			q.Add("_pragma", "cache_size(-32768)")
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
	return &sqliteBackend{db: db, path: path, inserts: map[int]*sql.Stmt{}}, nil
}

// syncFiles makes every committed transaction durable: it fdatasyncs the
// WAL (which holds the commits not yet checkpointed) and the database file
// (which holds the rest).
func (b *sqliteBackend) syncFiles() error {
	for _, p := range []string{b.path + "-wal", b.path} {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = datasync(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
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
	st, err := b.db.PrepareContext(ctx, insertRows+strings.Repeat(","+insertValues, n-1))
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
	VALUES ` + insertValues

// insertValues are one row's values. The body is bound as the bytes it is
// and stored as the TEXT it is (CAST), so that it is not copied into a Go
// string first.
const insertValues = `(?,?,?,CAST(? AS TEXT),?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

func (b *sqliteBackend) write(ctx context.Context, rows []row, cp *Checkpoint) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var cps []Checkpoint
	if cp != nil {
		cps = append(cps, *cp)
	}
	if err := b.insertTx(ctx, tx, rows, cps); err != nil {
		return err
	}
	return tx.Commit()
}

// maxInsertRows is the most rows one INSERT takes: 64 rows of 22 values
// stay far below SQLite's variable limit.
const maxInsertRows = 64

// insertTx inserts rows and checkpoints within tx.
func (b *sqliteBackend) insertTx(ctx context.Context, tx *sql.Tx, rows []row, cps []Checkpoint) error {
	// Multi-row INSERTs: per-statement overhead, not SQLite's page writes,
	// dominates small batches. A batch goes in statements of 64, 32, ...,
	// 1 rows, so seven prepared statements serve every batch size; one
	// per size would prepare a new statement of up to 1 408 values for
	// most batches until every size had been seen.
	for len(rows) > 0 {
		n := 1 << (bits.Len(uint(min(len(rows), maxInsertRows))) - 1)
		args := make([]any, 0, n*22)
		var boxes columnBoxes
		for i := range rows[:n] {
			r := &rows[i]
			args = boxes.appendArgs(append(args, r.seq, r.prev, r.hash, r.body), &r.cols)
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
	for _, cp := range cps {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoint (seq, head, created_at, jws) VALUES (?,?,?,?)`,
			cp.Seq, cp.Head, cp.Time.UTC().Format(colTime), cp.JWS); err != nil {
			return err
		}
	}
	return nil
}

// columnBoxes keeps the last value of each column of a batch as an
// interface value: node, tenant, actor, action and interaction mostly
// repeat from row to row, and boxing a string afresh is an allocation.
type columnBoxes [18]struct {
	s string
	v any
}

// box is s as an interface value, the one of the previous row when the
// column's value is the same.
func (b *columnBoxes) box(i int, s string) any {
	e := &b[i]
	if e.v == nil || e.s != s {
		e.s, e.v = s, s
	}
	return e.v
}

// appendArgs appends c's values in columns.args' order.
func (b *columnBoxes) appendArgs(args []any, c *columns) []any {
	return append(args, c.EventID, c.RecordedAt, b.box(2, c.Action), b.box(3, c.Interaction), c.Outcome,
		b.box(5, c.OutcomeText), b.box(6, c.Node), b.box(7, c.Tenant), b.box(8, c.ActorURA), b.box(9, c.ActorSystem),
		b.box(10, c.ActorUser), b.box(11, c.ActorRole), b.box(12, c.Address), b.box(13, c.Patient), b.box(14, c.Types),
		b.box(15, c.Resources), b.box(16, c.Query), b.box(17, c.Task))
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

func (b *sqliteBackend) checkpoints(ctx context.Context, last bool) ([]Checkpoint, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT seq, head, created_at, jws FROM audit_checkpoint`+checkpointOrder(last))
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
