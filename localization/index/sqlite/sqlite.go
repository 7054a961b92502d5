// Package sqlite is the embedded SQLite backend of the referral index.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/schakel-nl/schakel/internal/sqlitedb"
	"github.com/schakel-nl/schakel/localization/index"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite index. Writes go through one connection (SQLite has one
// writer); lookups use a pool of read-only connections, which WAL lets run
// beside the writer.
type Store struct {
	w *sql.DB
	r *sql.DB
}

var (
	_ index.Store      = (*Store)(nil)
	_ index.BulkLoader = (*Store)(nil)
)

// Open opens (creating and migrating) the index at path. ":memory:" gives a
// private in-memory index on one connection.
func Open(ctx context.Context, path string) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	w, err := sqlitedb.Open(ctx, path, sub)
	if err != nil {
		return nil, fmt.Errorf("localization index: %w", err)
	}
	w.SetMaxOpenConns(1)
	if path == ":memory:" {
		return &Store{w: w, r: w}, nil
	}
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("localization index: open readers: %w", err)
	}
	n := runtime.GOMAXPROCS(0)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	return &Store{w: w, r: r}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	err := s.w.Close()
	if s.r != s.w {
		err = errors.Join(err, s.r.Close())
	}
	return err
}

const entryColumns = `id, pseudonym, care_context_system, care_context_code, holder_ura, source_type, device, created_at`

// Register implements index.Store.
func (s *Store) Register(ctx context.Context, e index.Entry) (index.Entry, bool, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return index.Entry{}, false, fmt.Errorf("register: %w", err)
	}
	e.ID = id.String()
	if e.Created.IsZero() {
		e.Created = time.Now()
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO localization_entry (`+entryColumns+`)
		VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`,
		e.ID, e.Pseudonym, e.CareContext.System, e.CareContext.Code, e.HolderURA, e.SourceType, e.Device, e.Created.UnixMicro())
	if err != nil {
		return index.Entry{}, false, fmt.Errorf("register: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return index.Entry{}, false, fmt.Errorf("register: %w", err)
	} else if n == 1 {
		e.Created = time.UnixMicro(e.Created.UnixMicro())
		return e, true, nil
	}
	row := s.w.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM localization_entry
		WHERE pseudonym = ? AND care_context_system = ? AND care_context_code = ? AND holder_ura = ? AND source_type = ?`,
		e.Pseudonym, e.CareContext.System, e.CareContext.Code, e.HolderURA, e.SourceType)
	existing, err := scan(row)
	if err != nil {
		return index.Entry{}, false, fmt.Errorf("register: read existing: %w", err)
	}
	return existing, false, nil
}

// Get implements index.Store.
func (s *Store) Get(ctx context.Context, id string) (index.Entry, error) {
	e, err := scan(s.r.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM localization_entry WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return index.Entry{}, index.ErrNotFound
	}
	return e, err
}

// Delete implements index.Store.
func (s *Store) Delete(ctx context.Context, holderURA, id string) (bool, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM localization_entry WHERE id = ? AND holder_ura = ?`, id, holderURA)
	if err != nil {
		return false, fmt.Errorf("delete: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// DeleteMatching implements index.Store.
func (s *Store) DeleteMatching(ctx context.Context, holderURA string, pseudonym []byte, cc index.Coding) (int, error) {
	q := `DELETE FROM localization_entry WHERE pseudonym = ? AND holder_ura = ?`
	args := []any{pseudonym, holderURA}
	if cc != (index.Coding{}) {
		q += ` AND care_context_system = ? AND care_context_code = ?`
		args = append(args, cc.System, cc.Code)
	}
	res, err := s.w.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("delete matching: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Lookup implements index.Store.
func (s *Store) Lookup(ctx context.Context, q index.Query) ([]index.Holder, error) {
	sqlq := `SELECT DISTINCT holder_ura, source_type FROM localization_entry
		WHERE pseudonym = ? AND care_context_system = ? AND care_context_code = ?`
	args := []any{q.Pseudonym, q.CareContext.System, q.CareContext.Code}
	if len(q.SourceTypes) > 0 {
		sqlq += ` AND source_type IN (?` + strings.Repeat(",?", len(q.SourceTypes)-1) + `)`
		for _, t := range q.SourceTypes {
			args = append(args, t)
		}
	}
	sqlq += ` ORDER BY holder_ura, source_type`
	rows, err := s.r.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	defer rows.Close()
	var out []index.Holder
	for rows.Next() {
		var h index.Holder
		if err := rows.Scan(&h.URA, &h.SourceType); err != nil {
			return nil, fmt.Errorf("lookup: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// BulkLoad implements index.BulkLoader: inserts in transactions of 10 000
// rows through one prepared statement.
func (s *Store) BulkLoad(ctx context.Context, entries iter.Seq[index.Entry]) (int64, error) {
	const batch = 10000
	var total int64
	var tx *sql.Tx
	var stmt *sql.Stmt
	commit := func() error {
		if tx == nil {
			return nil
		}
		err := tx.Commit()
		tx, stmt = nil, nil
		return err
	}
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	now := time.Now()
	for e := range entries {
		if tx == nil {
			var err error
			if tx, err = s.w.BeginTx(ctx, nil); err != nil {
				return total, fmt.Errorf("bulk load: %w", err)
			}
			if stmt, err = tx.PrepareContext(ctx, `INSERT INTO localization_entry (`+entryColumns+`) VALUES (?,?,?,?,?,?,?,?)`); err != nil {
				return total, fmt.Errorf("bulk load: %w", err)
			}
		}
		id, err := uuid.NewV7()
		if err != nil {
			return total, fmt.Errorf("bulk load: %w", err)
		}
		e.ID = id.String()
		if e.Created.IsZero() {
			e.Created = now
		}
		if _, err := stmt.ExecContext(ctx, e.ID, e.Pseudonym, e.CareContext.System, e.CareContext.Code, e.HolderURA, e.SourceType, e.Device, e.Created.UnixMicro()); err != nil {
			return total, fmt.Errorf("bulk load: %w", err)
		}
		total++
		if total%batch == 0 {
			if err := commit(); err != nil {
				return total, fmt.Errorf("bulk load: %w", err)
			}
		}
	}
	if err := commit(); err != nil {
		return total, fmt.Errorf("bulk load: %w", err)
	}
	return total, nil
}

type scanner interface{ Scan(dest ...any) error }

func scan(row scanner) (index.Entry, error) {
	var e index.Entry
	var created int64
	if err := row.Scan(&e.ID, &e.Pseudonym, &e.CareContext.System, &e.CareContext.Code, &e.HolderURA, &e.SourceType, &e.Device, &created); err != nil {
		return index.Entry{}, err
	}
	e.Created = time.UnixMicro(created)
	return e, nil
}
