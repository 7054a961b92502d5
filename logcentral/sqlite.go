package logcentral

import (
	"context"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// sqliteStore keeps the shipped records in one SQLite file. It runs with
// synchronous=FULL: an acknowledgement promises the node that it may rely on
// the central copy, so every commit is fsynced before it is answered.
type sqliteStore struct{ db *sql.DB }

const timeFormat = "2006-01-02T15:04:05.000000000Z"

func openSQLite(ctx context.Context, path string) (*sqliteStore, error) {
	dsn := ":memory:"
	if path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "busy_timeout(5000)")
		q.Add("_pragma", "synchronous(FULL)")
		dsn = "file:" + path + "?" + q.Encode()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one writer; the server serialises per node anyway
	sub, err := fs.Sub(migrations, "migrations")
	if err == nil {
		err = sqlitedb.Migrate(ctx, db, sub)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return &sqliteStore{db: db}, nil
}

func (s *sqliteStore) Close() error { return s.db.Close() }

func (s *sqliteStore) Head(ctx context.Context, node string) (Head, error) {
	h := Head{Node: node}
	var hash []byte
	var at string
	err := s.db.QueryRowContext(ctx, `SELECT seq, hash, received FROM node_head WHERE node = ?`, node).Scan(&h.Seq, &hash, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return h, err
	}
	copy(h.Hash[:], hash)
	h.Received, _ = time.Parse(timeFormat, at)
	return h, nil
}

func (s *sqliteStore) Append(ctx context.Context, node string, entries []audit.Entry, received time.Time) error {
	if len(entries) == 0 {
		return nil
	}
	rows, err := decodeEntries(entries)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for len(rows) > 0 {
		n := min(len(rows), 100)
		args := make([]any, 0, n*5)
		for _, r := range rows[:n] {
			args = append(args, node, r.seq, r.prev, r.hash, r.body)
		}
		q := `INSERT INTO shipped_entry (node, seq, prev, hash, body) VALUES (?,?,?,?,?)` + strings.Repeat(",(?,?,?,?,?)", n-1)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			if strings.Contains(err.Error(), "UNIQUE constraint") || strings.Contains(err.Error(), "PRIMARY KEY") {
				return fmt.Errorf("%w: %v", ErrConflict, err)
			}
			return err
		}
		rows = rows[n:]
	}
	last := entries[len(entries)-1]
	lastHash, _ := hex.DecodeString(last.Hash)
	if _, err := tx.ExecContext(ctx, `INSERT INTO node_head (node, seq, hash, received) VALUES (?,?,?,?)
		ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, received = excluded.received`,
		node, last.Seq, lastHash, received.UTC().Format(timeFormat)); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *sqliteStore) Entries(ctx context.Context, node string, after int64, limit int) ([]audit.Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, prev, hash, body FROM shipped_entry WHERE node = ? AND seq > ? ORDER BY seq LIMIT ?`,
		node, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanEntries(rows)
}

func (s *sqliteStore) Heads(ctx context.Context) ([]Head, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, seq, hash, received FROM node_head ORDER BY node`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Head
	for rows.Next() {
		var h Head
		var hash []byte
		var at string
		if err := rows.Scan(&h.Node, &h.Seq, &hash, &at); err != nil {
			return nil, err
		}
		copy(h.Hash[:], hash)
		h.Received, _ = time.Parse(timeFormat, at)
		out = append(out, h)
	}
	return out, rows.Err()
}

// row is an entry with its links decoded, as the stores keep it.
type row struct {
	seq        int64
	prev, hash []byte
	body       string
}

func decodeEntries(entries []audit.Entry) ([]row, error) {
	out := make([]row, len(entries))
	for i, e := range entries {
		prev, hash, err := e.Links()
		if err != nil {
			return nil, err
		}
		out[i] = row{seq: e.Seq, prev: prev[:], hash: hash[:], body: e.Body}
	}
	return out, nil
}
