// Package postgres is the PostgreSQL backend of the referral index, for
// indexes of national size.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/localization/index"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationTable keeps this component's goose history apart from other
// components sharing the database.
const migrationTable = "localization_goose_version"

// Store is the PostgreSQL index.
type Store struct {
	pool *pgxpool.Pool
}

var (
	_ index.Store      = (*Store)(nil)
	_ index.BulkLoader = (*Store)(nil)
)

// Open connects to dsn (a libpq URL or key=value string; runtime parameters
// such as search_path pass through) and migrates the schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgdb.PoolConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("localization index: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("localization index: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("localization index: migrate: %w", err)
	}
	return &Store{pool: pool}, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithTableName(migrationTable))
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
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
	// Microseconds: what timestamptz keeps.
	e.Created = e.Created.Truncate(time.Microsecond)
	tag, err := s.pool.Exec(ctx, `INSERT INTO localization_entry (`+entryColumns+`)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING`,
		e.ID, e.Pseudonym, e.CareContext.System, e.CareContext.Code, e.HolderURA, e.SourceType, e.Device, e.Created)
	if err != nil {
		return index.Entry{}, false, fmt.Errorf("register: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return e, true, nil
	}
	existing, err := scan(s.pool.QueryRow(ctx, `SELECT `+entryColumns+` FROM localization_entry
		WHERE pseudonym = $1 AND care_context_system = $2 AND care_context_code = $3 AND holder_ura = $4 AND source_type = $5`,
		e.Pseudonym, e.CareContext.System, e.CareContext.Code, e.HolderURA, e.SourceType))
	if err != nil {
		return index.Entry{}, false, fmt.Errorf("register: read existing: %w", err)
	}
	return existing, false, nil
}

// Get implements index.Store.
func (s *Store) Get(ctx context.Context, id string) (index.Entry, error) {
	if uuid.Validate(id) != nil {
		return index.Entry{}, index.ErrNotFound
	}
	e, err := scan(s.pool.QueryRow(ctx, `SELECT `+entryColumns+` FROM localization_entry WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return index.Entry{}, index.ErrNotFound
	}
	return e, err
}

// Delete implements index.Store.
func (s *Store) Delete(ctx context.Context, holderURA, id string) (bool, error) {
	if uuid.Validate(id) != nil {
		return false, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM localization_entry WHERE id = $1 AND holder_ura = $2`, id, holderURA)
	if err != nil {
		return false, fmt.Errorf("delete: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// DeleteMatching implements index.Store.
func (s *Store) DeleteMatching(ctx context.Context, holderURA string, pseudonym []byte, cc index.Coding) (int, error) {
	q := `DELETE FROM localization_entry WHERE pseudonym = $1 AND holder_ura = $2`
	args := []any{pseudonym, holderURA}
	if cc != (index.Coding{}) {
		q += ` AND care_context_system = $3 AND care_context_code = $4`
		args = append(args, cc.System, cc.Code)
	}
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("delete matching: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Lookup implements index.Store. One statement for both cases, so the pool
// prepares it once per connection: an empty types array means any type.
func (s *Store) Lookup(ctx context.Context, q index.Query) ([]index.Holder, error) {
	types := q.SourceTypes
	if types == nil {
		types = []string{}
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT holder_ura, source_type FROM localization_entry
		WHERE pseudonym = $1 AND care_context_system = $2 AND care_context_code = $3
		AND (cardinality($4::text[]) = 0 OR source_type = ANY($4::text[]))
		ORDER BY holder_ura, source_type`,
		q.Pseudonym, q.CareContext.System, q.CareContext.Code, types)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (index.Holder, error) {
		var h index.Holder
		err := row.Scan(&h.URA, &h.SourceType)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	return out, nil
}

// Index definitions the bulk load drops and recreates; they must equal those
// of migrations/00001_entries.sql (TestBulkLoadKeepsSchema checks).
var bulkIndexes = []struct{ drop, create string }{
	{`ALTER TABLE localization_entry DROP CONSTRAINT localization_entry_pkey`,
		`ALTER TABLE localization_entry ADD CONSTRAINT localization_entry_pkey PRIMARY KEY (id)`},
	{`DROP INDEX localization_entry_lookup`,
		`CREATE UNIQUE INDEX localization_entry_lookup ON localization_entry (pseudonym, care_context_system, care_context_code, holder_ura, source_type)`},
	{`DROP INDEX localization_entry_holder`,
		`CREATE INDEX localization_entry_holder ON localization_entry (holder_ura)`},
}

// BulkLoad implements index.BulkLoader. Into an empty index it copies
// straight into the table with the indexes dropped and builds them after,
// the fastest way to fill PostgreSQL (an import, or a benchmark); duplicate
// entries then fail the whole load. Into a filled index it copies into a
// temporary table and inserts from there in index order, so the B-trees
// fill sequentially rather than at random places (pseudonyms are random).
// Either way the load is one transaction.
func (s *Store) BulkLoad(ctx context.Context, entries iter.Seq[index.Entry]) (int64, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("bulk load: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("bulk load: %w", err)
	}
	defer tx.Rollback(ctx)
	exec := func(sql string, args ...any) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}
	if err := exec(`SET LOCAL work_mem = '256MB'`); err != nil {
		return 0, fmt.Errorf("bulk load: %w", err)
	}
	if err := exec(`SET LOCAL maintenance_work_mem = '512MB'`); err != nil {
		return 0, fmt.Errorf("bulk load: %w", err)
	}
	// Registrations wait for the load; the emptiness check stays true.
	if err := exec(`LOCK TABLE localization_entry IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return 0, fmt.Errorf("bulk load: %w", err)
	}
	var empty bool
	if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM localization_entry)`).Scan(&empty); err != nil {
		return 0, fmt.Errorf("bulk load: %w", err)
	}
	target := "localization_entry"
	if empty {
		for _, ix := range bulkIndexes {
			if err := exec(ix.drop); err != nil {
				return 0, fmt.Errorf("bulk load: %w", err)
			}
		}
	} else {
		target = "localization_entry_load"
		if err := exec(`CREATE TEMPORARY TABLE localization_entry_load
			(LIKE localization_entry INCLUDING DEFAULTS) ON COMMIT DROP`); err != nil {
			return 0, fmt.Errorf("bulk load: %w", err)
		}
	}
	next, stop := iter.Pull(entries)
	defer stop()
	now := time.Now()
	var genErr error
	src := pgx.CopyFromFunc(func() ([]any, error) {
		e, ok := next()
		if !ok {
			return nil, nil
		}
		id, err := uuid.NewV7()
		if err != nil {
			genErr = err
			return nil, err
		}
		if e.Created.IsZero() {
			e.Created = now
		}
		return []any{id, e.Pseudonym, e.CareContext.System, e.CareContext.Code, e.HolderURA, e.SourceType, e.Device, e.Created}, nil
	})
	n, err := tx.CopyFrom(ctx, pgx.Identifier{target},
		[]string{"id", "pseudonym", "care_context_system", "care_context_code", "holder_ura", "source_type", "device", "created_at"}, src)
	if err != nil {
		return 0, fmt.Errorf("bulk load: copy: %w", errors.Join(genErr, err))
	}
	if empty {
		for _, ix := range bulkIndexes {
			if err := exec(ix.create); err != nil {
				return 0, fmt.Errorf("bulk load: build index (duplicate entries?): %w", err)
			}
		}
	} else {
		tag, err := tx.Exec(ctx, `INSERT INTO localization_entry SELECT * FROM localization_entry_load
			ORDER BY pseudonym, care_context_system, care_context_code, holder_ura, source_type ON CONFLICT DO NOTHING`)
		if err != nil {
			return 0, fmt.Errorf("bulk load: insert: %w", err)
		}
		n = tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("bulk load: %w", err)
	}
	// Fresh statistics, so the planner uses the lookup index at once.
	if _, err := s.pool.Exec(ctx, `ANALYZE localization_entry`); err != nil {
		return n, fmt.Errorf("bulk load: analyze: %w", err)
	}
	return n, nil
}

func scan(row pgx.Row) (index.Entry, error) {
	var e index.Entry
	var id uuid.UUID
	if err := row.Scan(&id, &e.Pseudonym, &e.CareContext.System, &e.CareContext.Code, &e.HolderURA, &e.SourceType, &e.Device, &e.Created); err != nil {
		return index.Entry{}, err
	}
	e.ID = id.String()
	return e, nil
}
