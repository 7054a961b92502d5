// Package sqlite is the SQLite backend of fhir/store (modernc.org/sqlite, no
// cgo): resources as JSON documents with their full history, a table of
// current versions, and index tables filled on write from the generated
// search parameters (fhir/search) that searches are translated to SQL over.
package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store on one SQLite database.
type Store struct {
	defs *spec.Definitions
	// wdb has a single connection: SQLite allows one writer at a time, and
	// queuing in the pool is cheaper than busy retries. rdb is a pool of
	// read-only connections (the same as wdb for ":memory:").
	wdb, rdb *sql.DB
	now      func() time.Time
}

var _ store.Store = (*Store)(nil)

// Open opens (creating and migrating when needed) the store at path, a file
// name or ":memory:", for FHIR version v.
func Open(ctx context.Context, path string, v fhir.Version) (*Store, error) {
	defs := spec.For(v)
	if defs == nil {
		return nil, fmt.Errorf("sqlite store: unknown FHIR version %q", v)
	}
	s := &Store{defs: defs, now: time.Now}
	const pragmas = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	var err error
	if path == ":memory:" {
		s.wdb, err = sql.Open("sqlite", "file::memory:?"+pragmas+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("sqlite store: %w", err)
		}
		// Every connection to ":memory:" is a database of its own.
		s.wdb.SetMaxOpenConns(1)
		s.rdb = s.wdb
	} else {
		s.wdb, err = sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=journal_mode(WAL)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("sqlite store: %w", err)
		}
		s.wdb.SetMaxOpenConns(1)
	}
	s.wdb.SetConnMaxIdleTime(0)
	if err := s.migrate(ctx); err != nil {
		s.wdb.Close()
		return nil, err
	}
	if s.rdb == nil {
		s.rdb, err = sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
		if err != nil {
			s.wdb.Close()
			return nil, fmt.Errorf("sqlite store: %w", err)
		}
		s.rdb.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
		s.rdb.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.wdb, sub)
	if err != nil {
		return fmt.Errorf("sqlite store: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite store: migrate: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	err := s.wdb.Close()
	if s.rdb != s.wdb {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// idPattern is the FHIR id datatype.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// parsed is a resource body checked and decoded for indexing.
type parsed struct {
	typ, id string
	body    []byte
	doc     map[string]any
}

func (s *Store) parse(body []byte) (*parsed, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", store.ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", store.ErrInvalid)
	}
	typ, ok := doc["resourceType"].(string)
	if !ok || typ == "" {
		return nil, fmt.Errorf("%w: missing resourceType", store.ErrInvalid)
	}
	if !s.defs.IsResourceType(typ) {
		return nil, fmt.Errorf("%w: unknown resourceType %q for FHIR %s", store.ErrInvalid, typ, s.defs.Version)
	}
	p := &parsed{typ: typ, body: body, doc: doc}
	if id, present := doc["id"]; present {
		p.id, ok = id.(string)
		if !ok || !idPattern.MatchString(p.id) {
			return nil, fmt.Errorf("%w: invalid id", store.ErrInvalid)
		}
	}
	return p, nil
}

// Create stores a new resource under a fresh id.
func (s *Store) Create(ctx context.Context, tenant string, body json.RawMessage) (store.Resource, error) {
	p, err := s.parse(body)
	if err != nil {
		return store.Resource{}, err
	}
	p.id = uuid.NewString()
	res, _, err := s.write(ctx, tenant, p, "")
	return res, err
}

// Update stores a new version of the resource with the id in body.
func (s *Store) Update(ctx context.Context, tenant string, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	p, err := s.parse(body)
	if err != nil {
		return store.Resource{}, false, err
	}
	if p.id == "" {
		return store.Resource{}, false, fmt.Errorf("%w: update needs an id", store.ErrInvalid)
	}
	return s.write(ctx, tenant, p, ifMatch)
}

// normalizeETag accepts a versionId as "3", `W/"3"` or `"3"`.
func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

func (s *Store) write(ctx context.Context, tenant string, p *parsed, ifMatch string) (res store.Resource, created bool, err error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return res, false, fmt.Errorf("sqlite store: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var (
		rid     int64
		version int
		deleted bool
	)
	err = tx.QueryRowContext(ctx, `SELECT rid, version, deleted FROM resource WHERE tenant = ? AND type = ? AND id = ?`,
		tenant, p.typ, p.id).Scan(&rid, &version, &deleted)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return res, false, fmt.Errorf("sqlite store: %w", err)
	}
	if ifMatch != "" {
		if want := normalizeETag(ifMatch); !exists || want != strconv.Itoa(version) {
			return res, false, fmt.Errorf("%w: %s/%s is at version %d, not %s", store.ErrVersionConflict, p.typ, p.id, version, want)
		}
	}
	version++
	now := s.now().UTC().Truncate(time.Millisecond)
	body, err := withMeta(p.body, p.id, strconv.Itoa(version), now)
	if err != nil {
		return res, false, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	lu := now.UnixMilli()
	if _, err = tx.ExecContext(ctx, `INSERT INTO resource_version (tenant, type, id, version, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, 0, ?)`,
		tenant, p.typ, p.id, version, lu, body); err != nil {
		return res, false, fmt.Errorf("sqlite store: %w", err)
	}
	if exists {
		if err = deleteIndex(ctx, tx, rid); err != nil {
			return res, false, err
		}
		if _, err = tx.ExecContext(ctx, `UPDATE resource SET version = ?, last_updated = ?, deleted = 0, body = ? WHERE rid = ?`,
			version, lu, body, rid); err != nil {
			return res, false, fmt.Errorf("sqlite store: %w", err)
		}
	} else {
		if err = tx.QueryRowContext(ctx, `INSERT INTO resource (tenant, type, id, version, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, 0, ?) RETURNING rid`,
			tenant, p.typ, p.id, version, lu, body).Scan(&rid); err != nil {
			return res, false, fmt.Errorf("sqlite store: %w", err)
		}
	}
	ix := search.Extract(s.defs, p.typ, p.doc)
	if err = insertIndex(ctx, tx, rid, tenant, p.typ, &ix); err != nil {
		return res, false, err
	}
	if err = tx.Commit(); err != nil {
		return res, false, fmt.Errorf("sqlite store: commit: %w", err)
	}
	return store.Resource{Type: p.typ, ID: p.id, VersionID: strconv.Itoa(version), LastUpdated: now, Body: body}, !exists || deleted, nil
}

var indexTables = []string{"idx_token", "idx_ref", "idx_date", "idx_string", "idx_quantity", "idx_uri", "idx_number"}

func deleteIndex(ctx context.Context, tx *sql.Tx, rid int64) error {
	for _, t := range indexTables {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE rid = ?`, rid); err != nil {
			return fmt.Errorf("sqlite store: %w", err)
		}
	}
	return nil
}

func insertIndex(ctx context.Context, tx *sql.Tx, rid int64, tenant, typ string, ix *search.Index) error {
	exec := func(query string, args ...any) error {
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("sqlite store: index: %w", err)
		}
		return nil
	}
	for _, v := range ix.Tokens {
		if err := exec(`INSERT INTO idx_token (rid, tenant, type, param, system, code, text) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			rid, tenant, typ, v.Param, v.System, v.Code, v.Text); err != nil {
			return err
		}
	}
	for _, v := range ix.Refs {
		if err := exec(`INSERT INTO idx_ref (rid, tenant, type, param, target_type, target_id, url) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			rid, tenant, typ, v.Param, v.Type, v.ID, v.URL); err != nil {
			return err
		}
	}
	for _, v := range ix.Dates {
		if err := exec(`INSERT INTO idx_date (rid, tenant, type, param, low, high) VALUES (?, ?, ?, ?, ?, ?)`,
			rid, tenant, typ, v.Param, v.Low, v.High); err != nil {
			return err
		}
	}
	for _, v := range ix.Strings {
		if err := exec(`INSERT INTO idx_string (rid, tenant, type, param, norm, raw) VALUES (?, ?, ?, ?, ?, ?)`,
			rid, tenant, typ, v.Param, v.Norm, v.Raw); err != nil {
			return err
		}
	}
	for _, v := range ix.Quantities {
		if err := exec(`INSERT INTO idx_quantity (rid, tenant, type, param, value, system, code, unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			rid, tenant, typ, v.Param, v.Value, v.System, v.Code, v.Unit); err != nil {
			return err
		}
	}
	for _, v := range ix.URIs {
		if err := exec(`INSERT INTO idx_uri (rid, tenant, type, param, uri) VALUES (?, ?, ?, ?, ?)`,
			rid, tenant, typ, v.Param, v.URI); err != nil {
			return err
		}
	}
	for _, v := range ix.Numbers {
		if err := exec(`INSERT INTO idx_number (rid, tenant, type, param, value) VALUES (?, ?, ?, ?, ?)`,
			rid, tenant, typ, v.Param, v.Value); err != nil {
			return err
		}
	}
	return nil
}

// Delete marks the resource deleted: a new version without body, and no
// index rows (deleted resources are never found by a search).
func (s *Store) Delete(ctx context.Context, tenant, typ, id string) (err error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var (
		rid     int64
		version int
		deleted bool
	)
	err = tx.QueryRowContext(ctx, `SELECT rid, version, deleted FROM resource WHERE tenant = ? AND type = ? AND id = ?`,
		tenant, typ, id).Scan(&rid, &version, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s/%s", store.ErrNotFound, typ, id)
	}
	if err != nil {
		return fmt.Errorf("sqlite store: %w", err)
	}
	if deleted {
		return tx.Commit()
	}
	version++
	lu := s.now().UTC().Truncate(time.Millisecond).UnixMilli()
	if _, err = tx.ExecContext(ctx, `INSERT INTO resource_version (tenant, type, id, version, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, 1, '')`,
		tenant, typ, id, version, lu); err != nil {
		return fmt.Errorf("sqlite store: %w", err)
	}
	if _, err = tx.ExecContext(ctx, `UPDATE resource SET version = ?, last_updated = ?, deleted = 1, body = '' WHERE rid = ?`, version, lu, rid); err != nil {
		return fmt.Errorf("sqlite store: %w", err)
	}
	if err = deleteIndex(ctx, tx, rid); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlite store: commit: %w", err)
	}
	return nil
}

// Read returns the current version.
func (s *Store) Read(ctx context.Context, tenant, typ, id string) (store.Resource, error) {
	row := s.rdb.QueryRowContext(ctx, `SELECT version, last_updated, deleted, body FROM resource WHERE tenant = ? AND type = ? AND id = ?`, tenant, typ, id)
	return scanOne(row, typ, id)
}

// VRead returns one version; a deleted version is returned with ErrDeleted.
func (s *Store) VRead(ctx context.Context, tenant, typ, id, versionID string) (store.Resource, error) {
	v, err := strconv.Atoi(versionID)
	if err != nil {
		return store.Resource{}, fmt.Errorf("%w: %s/%s version %q", store.ErrNotFound, typ, id, versionID)
	}
	row := s.rdb.QueryRowContext(ctx, `SELECT version, last_updated, deleted, body FROM resource_version WHERE tenant = ? AND type = ? AND id = ? AND version = ?`, tenant, typ, id, v)
	return scanOne(row, typ, id)
}

func scanOne(row *sql.Row, typ, id string) (store.Resource, error) {
	res := store.Resource{Type: typ, ID: id}
	var (
		version int
		lu      int64
		body    []byte
	)
	err := row.Scan(&version, &lu, &res.Deleted, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return res, fmt.Errorf("%w: %s/%s", store.ErrNotFound, typ, id)
	}
	if err != nil {
		return res, fmt.Errorf("sqlite store: %w", err)
	}
	res.VersionID = strconv.Itoa(version)
	res.LastUpdated = time.UnixMilli(lu).UTC()
	if res.Deleted {
		return res, fmt.Errorf("%w: %s/%s", store.ErrDeleted, typ, id)
	}
	res.Body = body
	return res, nil
}
