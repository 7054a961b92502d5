// Package postgres is the PostgreSQL backend of fhir/store (pgx, pgxpool):
// the same tables, indexes and SQL as the SQLite backend (shared in
// fhir/store/internal/sqlstore), with bodies kept as the exact bytes written
// (bytea) and every search answered from the index tables.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/internal/sqlstore"
	"github.com/schakel-nl/schakel/internal/pgdb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store on a PostgreSQL database (one schema).
type Store struct {
	eng  sqlstore.Engine
	pool *pgxpool.Pool
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.Historian     = (*Store)(nil)
	_ store.Transactional = (*Store)(nil)
)

type options struct {
	schema   string
	maxConns int32
}

// Option configures Open.
type Option func(*options)

// WithSchema keeps the store's tables in the given schema, created when
// missing (default: the connection's search_path, normally "public"). A
// database can hold the stores of several FHIR versions in different schemas.
func WithSchema(name string) Option { return func(o *options) { o.schema = name } }

// WithMaxConns bounds the connection pool (default: pgxpool's, the larger of
// 4 and the number of CPUs).
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects to the database at dsn (a PostgreSQL URL or key=value
// string), migrates it and returns the store for FHIR version v.
func Open(ctx context.Context, dsn string, v fhir.Version, opts ...Option) (*Store, error) {
	defs := spec.For(v)
	if defs == nil {
		return nil, fmt.Errorf("postgres store: unknown FHIR version %q", v)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgdb.PoolConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	if o.schema != "" {
		if !schemaPattern.MatchString(o.schema) {
			return nil, fmt.Errorf("postgres store: invalid schema name %q", o.schema)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = o.schema
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	s := &Store{
		eng:  sqlstore.Engine{Defs: defs, Dialect: sqlstore.Dialect{Name: "postgres store", Postgres: true}, Now: time.Now},
		pool: pool,
	}
	if err := s.migrate(ctx, o.schema); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context, schema string) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	if schema != "" {
		if err := pgdb.EnsureSchema(ctx, db, schema); err != nil {
			return fmt.Errorf("postgres store: %w", err)
		}
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("postgres store: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("postgres store: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres store: migrate: %w", err)
	}
	return nil
}

// Analyze refreshes the query planner's statistics; worth running after a
// bulk import (autovacuum gets there too, later).
func (s *Store) Analyze(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("postgres store: analyze: %w", err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// conn adapts a pool or transaction to sqlstore.Conn: "?" placeholders
// become "$n", and a unique violation (two writers creating the same
// resource at once) becomes store.ErrVersionConflict.
type conn struct {
	q interface {
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	}
}

func (c conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rs, err := c.q.Query(ctx, numbered(query), args...)
	if err != nil {
		return nil, mapError(err)
	}
	return rows{rs}, nil
}

func (c conn) Exec(ctx context.Context, query string, args ...any) error {
	_, err := c.q.Exec(ctx, numbered(query), args...)
	return mapError(err)
}

type rows struct{ pgx.Rows }

func (r rows) Err() error { return mapError(r.Rows.Err()) }

func mapError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: concurrent write of the same resource", store.ErrVersionConflict)
	}
	return err
}

// numbered rewrites "?" placeholders to "$1", "$2", ... The shared SQL has
// no "?" anywhere else (values are always arguments).
func numbered(query string) string {
	n := strings.Count(query, "?")
	if n == 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 3*n)
	i := 0
	for {
		j := strings.IndexByte(query, '?')
		if j < 0 {
			b.WriteString(query)
			return b.String()
		}
		i++
		b.WriteString(query[:j])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(i))
		query = query[j+1:]
	}
}

// inTx runs fn in a transaction.
func (s *Store) inTx(ctx context.Context, fn func(c sqlstore.Conn) error) (err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres store: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// A fresh context: the rollback must happen even when ctx is done.
			tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// Held until commit, before any version is stamped: History waits for
	// the writes holding it (see History).
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, writeLockKey); err != nil {
		return fmt.Errorf("postgres store: begin: %w", mapError(err))
	}
	if err := fn(conn{tx}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres store: commit: %w", mapError(err))
	}
	committed = true
	return nil
}

// Create stores a new resource under a fresh id.
func (s *Store) Create(ctx context.Context, tenant string, body json.RawMessage) (res store.Resource, err error) {
	p, err := s.eng.ParseCreate(body)
	if err != nil {
		return res, err
	}
	err = s.inTx(ctx, func(c sqlstore.Conn) error {
		res, _, err = s.eng.Write(ctx, c, tenant, p, "")
		return err
	})
	return res, unavailable(err)
}

// Update stores a new version of the resource with the id in body.
func (s *Store) Update(ctx context.Context, tenant string, body json.RawMessage, ifMatch string) (res store.Resource, created bool, err error) {
	p, err := s.eng.ParseUpdate(body)
	if err != nil {
		return res, false, err
	}
	err = s.inTx(ctx, func(c sqlstore.Conn) error {
		res, created, err = s.eng.Write(ctx, c, tenant, p, ifMatch)
		return err
	})
	return res, created, unavailable(err)
}

// Delete marks the resource deleted.
func (s *Store) Delete(ctx context.Context, tenant, typ, id string) error {
	return unavailable(s.inTx(ctx, func(c sqlstore.Conn) error { return s.eng.Delete(ctx, c, tenant, typ, id) }))
}

// Read returns the current version.
func (s *Store) Read(ctx context.Context, tenant, typ, id string) (store.Resource, error) {
	r, err := s.eng.Read(ctx, conn{s.pool}, tenant, typ, id)
	return r, unavailable(err)
}

// VRead returns one version; a deleted version is returned with ErrDeleted.
func (s *Store) VRead(ctx context.Context, tenant, typ, id, versionID string) (store.Resource, error) {
	r, err := s.eng.VRead(ctx, conn{s.pool}, tenant, typ, id, versionID)
	return r, unavailable(err)
}

// Search runs a search; see store.Store.
func (s *Store) Search(ctx context.Context, tenant string, q store.Query) (store.Page, error) {
	p, err := s.eng.Search(ctx, conn{s.pool}, tenant, q)
	return p, unavailable(err)
}

// History lists versions newest first; see store.Historian.
func (s *Store) History(ctx context.Context, tenant string, q store.HistoryQuery) (store.HistoryPage, error) {
	// A version's lastUpdated is taken inside its write transaction, before
	// the commit. Taking the write lock exclusively for a moment waits out
	// the writes in progress (of every process on the database), and every
	// later write is stamped after now: what is not visible below is newer
	// than AsOf.
	var now time.Time
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return store.HistoryPage{}, unavailable(fmt.Errorf("postgres store: begin: %w", err))
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, writeLockKey); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return store.HistoryPage{}, unavailable(fmt.Errorf("postgres store: history: %w", mapError(err)))
	}
	now = s.eng.Now()
	if err := tx.Commit(ctx); err != nil {
		return store.HistoryPage{}, unavailable(fmt.Errorf("postgres store: history: %w", mapError(err)))
	}
	page, err := s.eng.History(ctx, conn{s.pool}, tenant, q)
	page.AsOf = sqlstore.AsOf(now)
	return page, unavailable(err)
}

// writeLockKey is the advisory lock every write transaction holds shared
// and History takes exclusively for a moment.
const writeLockKey int64 = 0x5343484b4c48 // "SCHKLH"

// InTx runs fn in one transaction; see store.Transactional.
func (s *Store) InTx(ctx context.Context, tenant string, fn func(tx store.Tx) error) error {
	return unavailable(s.inTx(ctx, func(c sqlstore.Conn) error {
		view := sqlstore.NewTxView(&s.eng, c, tenant)
		defer view.Finish()
		return fn(view)
	}))
}

// unavailable marks an error that means PostgreSQL could not be reached
// with store.ErrUnavailable, for the edges to answer 503.
func unavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || !pgdb.Unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
