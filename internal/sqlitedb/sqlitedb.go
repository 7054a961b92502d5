// Package sqlitedb opens the embedded SQLite databases Schakel's components
// keep their own state in, and applies their goose migrations.
package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Open opens (creating when needed) the database at path with WAL journaling
// and a busy timeout, and migrates it with the SQL files in migrations.
// Path ":memory:" gives a private in-memory database (one connection).
func Open(ctx context.Context, path string, migrations fs.FS) (*sql.DB, error) {
	db, err := open(path)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, db, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return db, nil
}

// OpenAt opens the database at path as Open does, at migration version of
// migrations instead of the newest: a store as an earlier release left it.
func OpenAt(ctx context.Context, path string, migrations fs.FS, version int64) (*sql.DB, error) {
	db, err := open(path)
	if err != nil {
		return nil, err
	}
	if err := MigrateTo(ctx, db, migrations, version); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s to %d: %w", path, version, err)
	}
	return db, nil
}

// open opens the database at path with Open's settings, unmigrated.
func open(path string) (*sql.DB, error) {
	dsn := path
	memory := path == ":memory:"
	if !memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "busy_timeout(5000)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(ON)")
		dsn = "file:" + path + "?" + q.Encode()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: these are small, write-mostly databases. Go's pool
	// queues writers cheaply, where concurrent SQLite connections would
	// collide and sleep in SQLite's busy handler.
	db.SetMaxOpenConns(1)
	return db, nil
}

// Migrate applies the goose migrations in fsys (SQL files at its root).
func Migrate(ctx context.Context, db *sql.DB, fsys fs.FS) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// MigrateTo brings the database to migration version of fsys, up or down:
// a store as an earlier release left it, or as a rollback leaves it.
func MigrateTo(ctx context.Context, db *sql.DB, fsys fs.FS, version int64) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		return err
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return err
	}
	if current > version {
		_, err = p.DownTo(ctx, version)
	} else {
		_, err = p.UpTo(ctx, version)
	}
	return err
}
