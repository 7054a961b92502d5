// Package sqlite is the SQLite backend of fhir/store (modernc.org/sqlite, no
// cgo): resources as JSON documents with their full history, a table of
// current versions, and index tables filled on write from the generated
// search parameters (fhir/search) that searches are translated to SQL over.
// The SQL itself is shared with the PostgreSQL backend
// (fhir/store/internal/sqlstore).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/internal/sqlstore"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// LastUpdatedLayout is how meta.lastUpdated is written: UTC, milliseconds.
const LastUpdatedLayout = sqlstore.LastUpdatedLayout

// Store is a store.Store on one SQLite database.
type Store struct {
	eng sqlstore.Engine
	// w is the single writer connection: SQLite allows one writer at a
	// time, and queuing on a mutex is cheaper than busy retries. rdb is a
	// pool of read-only connections with its statement cache rc; for
	// ":memory:" there is no rdb and reads use w too.
	w   *writer
	wdb *sql.DB
	rdb *sql.DB
	rc  *stmtCache
	// path is the database file; empty for ":memory:".
	path string
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.Historian     = (*Store)(nil)
	_ store.Transactional = (*Store)(nil)
)

// Open opens (creating and migrating when needed) the store at path, a file
// name or ":memory:", for FHIR version v.
func Open(ctx context.Context, path string, v fhir.Version) (*Store, error) {
	defs := spec.For(v)
	if defs == nil {
		return nil, fmt.Errorf("sqlite store: unknown FHIR version %q", v)
	}
	s := &Store{eng: sqlstore.Engine{Defs: defs, Dialect: sqlstore.Dialect{Name: "sqlite store"}, Now: time.Now}}
	// temp_store(MEMORY) keeps the sub-journals of InTx's savepoints off
	// the disk; the writer's 64 MiB page cache keeps index pages of large
	// writes from spilling (readers get 16 MiB each).
	const pragmas = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_pragma=temp_store(MEMORY)"
	const writerCache, readerCache = "&_pragma=cache_size(-65536)", "&_pragma=cache_size(-16384)"
	var err error
	memory := path == ":memory:"
	if !memory {
		s.path = path
	}
	if memory {
		s.wdb, err = sql.Open("sqlite", "file::memory:?"+pragmas+writerCache)
	} else {
		// A bulk load lets the WAL grow to 256 MiB between checkpoints
		// (see loadTx); journal_size_limit shrinks the file back to 64 MiB
		// when the WAL starts over after a checkpoint.
		s.wdb, err = sql.Open("sqlite", "file:"+path+"?"+pragmas+writerCache+"&_pragma=journal_mode(WAL)&_pragma=journal_size_limit(67108864)")
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	// Every connection to ":memory:" is a database of its own; and a file
	// has one writer at a time.
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetConnMaxIdleTime(0)
	if err := s.migrate(ctx); err != nil {
		s.wdb.Close()
		return nil, err
	}
	wc, err := s.wdb.Conn(ctx)
	if err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	s.w = &writer{conn: wc, stmts: map[string]*sql.Stmt{}}
	if !memory {
		s.rdb, err = sql.Open("sqlite", "file:"+path+"?"+pragmas+readerCache+"&_pragma=query_only(1)")
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite store: %w", err)
		}
		// One reader fewer than the CPUs (at least one). Every write makes
		// each reader that then begins read its pages afresh (SQLite keeps
		// no page cache across a change of the WAL), and two readers
		// searching side by side mostly take turns on the driver's
		// process-wide locks (its C allocator; SQLite's page cache, shared
		// by all connections in this build), spinning while they wait: on
		// 2 CPUs the BgZ query set costs 1.7× the CPU two at a time in the
		// same wall time as one at a time. The writer and the rest of the
		// node need a CPU too. On 2 CPUs, 1 reader instead of 2 took the
		// Notified Pull to 0.97× the time and 0.94× the CPU, 2 instead of 4
		// to 0.91× the CPU (docs/performance.md). The price: on such a
		// machine a long read holds up the reads behind it.
		readers := max(1, runtime.GOMAXPROCS(0)-1)
		s.rdb.SetMaxOpenConns(readers)
		s.rdb.SetMaxIdleConns(readers)
		s.rc = newStmtCache(s.rdb)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := sqlitedb.Migrate(ctx, s.wdb, sub); err != nil {
		return fmt.Errorf("sqlite store: migrate: %w", err)
	}
	return nil
}

// Analyze refreshes the query planner's statistics (ANALYZE); worth running
// after a bulk import. Searches do not depend on it.
func (s *Store) Analyze(ctx context.Context) error {
	return s.w.run(ctx, func(c sqlstore.Conn) error {
		if err := c.Exec(ctx, `PRAGMA analysis_limit = 1000`); err != nil {
			return fmt.Errorf("sqlite store: analyze: %w", err)
		}
		if err := c.Exec(ctx, `ANALYZE`); err != nil {
			return fmt.Errorf("sqlite store: analyze: %w", err)
		}
		return nil
	})
}

// Close closes the database.
func (s *Store) Close() error {
	var err error
	if s.rc != nil {
		err = errors.Join(s.rc.close(), s.rdb.Close())
	}
	if s.w != nil {
		err = errors.Join(err, s.w.close())
	}
	return errors.Join(err, s.wdb.Close())
}

// stmtCacheSize bounds the prepared statements kept per database handle;
// statements past it are prepared per use.
const stmtCacheSize = 1024

// stmtCache keeps prepared statements by SQL text. SQLite spends more time
// parsing the search statements than running them, and a search of one
// shape (the BgZ set, say) repeats the same text with other arguments.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

// get returns the prepared statement of query, or nil when the cache is full.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	if len(c.m) >= stmtCacheSize {
		return nil, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m[query] = st
	return st, nil
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for _, st := range c.m {
		err = errors.Join(err, st.Close())
	}
	c.m = nil
	return err
}

// conn adapts the read pool to sqlstore.Conn, running statements through
// its statement cache.
type conn struct{ cache *stmtCache }

func (c conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	st, err := c.cache.get(ctx, query)
	if err != nil {
		return nil, err
	}
	var rs *sql.Rows
	if st != nil {
		rs, err = st.QueryContext(ctx, args...)
	} else {
		rs, err = c.cache.db.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	return rows{rs}, nil
}

func (c conn) Exec(ctx context.Context, query string, args ...any) error {
	return errors.New("sqlite store: write on the read-only pool")
}

// writer is the single write connection, its prepared statements, and the
// mutex that queues its users.
type writer struct {
	mu    sync.Mutex
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
	fkOff bool // a loadTx turned the foreign-key checks off
}

// run runs fn with the writer, outside a transaction.
func (w *writer) run(ctx context.Context, fn func(c sqlstore.Conn) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.foreignKeysOn(ctx); err != nil {
		return err
	}
	return fn(writerConn{w})
}

// inTx runs fn in an immediate transaction on the writer. A failing or
// panicking fn rolls back.
func (w *writer) inTx(ctx context.Context, fn func(c sqlstore.Conn) error) (err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tx(ctx, fn)
}

// loadTx is inTx without the foreign-key check of every row: a Load's
// index rows point at resources it has inserted or read in the same
// transaction. Without the check, and with INSERT OR ROLLBACK, SQLite needs
// no statement journal for the multi-row INSERTs of a Load.
func (w *writer) loadTx(ctx context.Context, fn func(c sqlstore.Conn) error) (err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := writerConn{w}
	w.fkOff = true // set before: a half-done switch is undone too
	defer func() {
		// The next transaction tries again when this fails.
		if ferr := w.foreignKeysOn(context.WithoutCancel(ctx)); ferr != nil && err == nil {
			err = ferr
		}
	}()
	if err := c.Exec(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return fmt.Errorf("sqlite store: load: %w", err)
	}
	if err := c.Exec(ctx, loadCheckpoint); err != nil {
		return fmt.Errorf("sqlite store: load: %w", err)
	}
	return w.tx(ctx, fn)
}

// A load's commit checkpoints the WAL only past 65 536 pages (256 MiB of
// 4 KiB pages) instead of SQLite's 1 000. A batch of a bulk import
// dirties index pages all over the B-trees, and the next batch the same
// ones again: checkpointing after every batch wrote each of them into the
// database file once per batch. A crash leaves the store consistent as
// before (with synchronous=NORMAL a power loss can take the commits since
// the WAL was last synced, here more of them: an import is not done before
// Sync). Sync's FULL checkpoint at the end of an import copies the pages
// once and syncs them. Other transactions keep the default and checkpoint
// what a load left in the WAL at their commit.
const (
	loadCheckpoint   = "PRAGMA wal_autocheckpoint = 65536"
	normalCheckpoint = "PRAGMA wal_autocheckpoint = 1000"
)

// foreignKeysOn turns the foreign-key checks back on after a loadTx, and
// the WAL's automatic checkpoint back to its default.
func (w *writer) foreignKeysOn(ctx context.Context) error {
	if !w.fkOff {
		return nil
	}
	c := writerConn{w}
	if err := c.Exec(ctx, `PRAGMA foreign_keys = ON`); err != nil {
		return fmt.Errorf("sqlite store: foreign keys: %w", err)
	}
	if err := c.Exec(ctx, normalCheckpoint); err != nil {
		return fmt.Errorf("sqlite store: checkpoint: %w", err)
	}
	w.fkOff = false
	return nil
}

// tx runs fn in an immediate transaction; w.mu is held.
func (w *writer) tx(ctx context.Context, fn func(c sqlstore.Conn) error) (err error) {
	if err := w.foreignKeysOn(ctx); err != nil {
		return err
	}
	c := writerConn{w}
	if err := c.Exec(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("sqlite store: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Without ctx: the rollback must happen even when ctx is done.
			c.Exec(context.WithoutCancel(ctx), `ROLLBACK`)
		}
	}()
	if err := fn(c); err != nil {
		return err
	}
	if err := c.Exec(ctx, `COMMIT`); err != nil {
		return fmt.Errorf("sqlite store: commit: %w", err)
	}
	committed = true
	return nil
}

func (w *writer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	for _, st := range w.stmts {
		err = errors.Join(err, st.Close())
	}
	w.stmts = nil
	return errors.Join(err, w.conn.Close())
}

// writerConn is the sqlstore.Conn of the writer; its user holds w.mu.
type writerConn struct{ w *writer }

func (c writerConn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.w.stmts[query]; ok {
		return st, nil
	}
	if len(c.w.stmts) >= stmtCacheSize {
		return nil, nil
	}
	st, err := c.w.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.w.stmts[query] = st
	return st, nil
}

func (c writerConn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	var rs *sql.Rows
	if st != nil {
		rs, err = st.QueryContext(ctx, args...)
	} else {
		rs, err = c.w.conn.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	return rows{rs}, nil
}

func (c writerConn) Exec(ctx context.Context, query string, args ...any) error {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return err
	}
	if st != nil {
		_, err = st.ExecContext(ctx, args...)
	} else {
		_, err = c.w.conn.ExecContext(ctx, query, args...)
	}
	return err
}

type rows struct{ *sql.Rows }

func (r rows) Close() { r.Rows.Close() }

// inTx runs fn in a write transaction.
func (s *Store) inTx(ctx context.Context, fn func(c sqlstore.Conn) error) error {
	return s.w.inTx(ctx, fn)
}

// read runs fn with a reading Conn: the read pool, or for ":memory:" the
// writer (waiting for any write in progress).
func (s *Store) read(ctx context.Context, fn func(c sqlstore.Conn) error) error {
	if s.rc != nil {
		return fn(conn{cache: s.rc})
	}
	return s.w.run(ctx, fn)
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
	return res, err
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
	return res, created, err
}

// Delete marks the resource deleted: a new version without body, and no
// index rows (deleted resources are never found by a search).
func (s *Store) Delete(ctx context.Context, tenant, typ, id string) error {
	return s.inTx(ctx, func(c sqlstore.Conn) error { return s.eng.Delete(ctx, c, tenant, typ, id) })
}

// Read returns the current version.
func (s *Store) Read(ctx context.Context, tenant, typ, id string) (res store.Resource, err error) {
	err = s.read(ctx, func(c sqlstore.Conn) error {
		res, err = s.eng.Read(ctx, c, tenant, typ, id)
		return err
	})
	return res, err
}

// VRead returns one version; a deleted version is returned with ErrDeleted.
func (s *Store) VRead(ctx context.Context, tenant, typ, id, versionID string) (res store.Resource, err error) {
	err = s.read(ctx, func(c sqlstore.Conn) error {
		res, err = s.eng.VRead(ctx, c, tenant, typ, id, versionID)
		return err
	})
	return res, err
}

// Search runs a search; see store.Store.
func (s *Store) Search(ctx context.Context, tenant string, q store.Query) (page store.Page, err error) {
	err = s.read(ctx, func(c sqlstore.Conn) error {
		page, err = s.eng.Search(ctx, c, tenant, q)
		return err
	})
	return page, err
}

// History lists versions newest first; see store.Historian.
func (s *Store) History(ctx context.Context, tenant string, q store.HistoryQuery) (page store.HistoryPage, err error) {
	// A version's lastUpdated is taken inside its write transaction, before
	// the commit. Taking the write lock (of every process on the file) for
	// a moment waits out the writes in progress, and every later write is
	// stamped after now: what is not visible below is newer than AsOf.
	var now time.Time
	if err := s.w.inTx(ctx, func(sqlstore.Conn) error {
		now = s.eng.Now()
		return nil
	}); err != nil {
		return page, err
	}
	err = s.read(ctx, func(c sqlstore.Conn) error {
		page, err = s.eng.History(ctx, c, tenant, q)
		return err
	})
	page.AsOf = sqlstore.AsOf(now)
	return page, err
}

// InTx runs fn in one transaction; see store.Transactional. fn must use tx,
// not the Store, to write: the transaction holds the only write connection
// (and, for ":memory:", the only connection, so there reads too), and a
// write through the Store from inside fn would wait for InTx to return.
func (s *Store) InTx(ctx context.Context, tenant string, fn func(tx store.Tx) error) error {
	return s.inTx(ctx, func(c sqlstore.Conn) error {
		view := sqlstore.NewTxView(&s.eng, c, tenant)
		defer view.Finish()
		return fn(view)
	})
}
