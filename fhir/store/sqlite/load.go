package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/internal/sqlstore"
)

var _ store.Loader = (*Store)(nil)

// Load writes bodies in one transaction; see store.Loader. The statements
// are the writer's prepared ones, reused for every resource of the batch.
func (s *Store) Load(ctx context.Context, tenant string, bodies []json.RawMessage) (res []store.LoadResult, err error) {
	ps, err := s.eng.ParseAll(bodies)
	if err != nil {
		return nil, err
	}
	err = s.w.loadTx(ctx, func(c sqlstore.Conn) error {
		res, err = s.eng.Load(ctx, c, tenant, ps)
		return err
	})
	return res, err
}

// Sync makes every committed write durable. The store commits with
// synchronous=NORMAL: a commit appends to the WAL without fsync, and the
// WAL is synced at checkpoints. A FULL checkpoint syncs the WAL and then
// the database file; when a reader keeps it from completing, syncing the
// WAL file itself is enough, as the WAL holds every frame not yet synced
// into the database.
func (s *Store) Sync(ctx context.Context) error {
	if s.path == "" {
		return nil // ":memory:" has nothing to make durable
	}
	var busy, logFrames, done int
	err := s.w.run(ctx, func(c sqlstore.Conn) error {
		rs, err := c.Query(ctx, `PRAGMA wal_checkpoint(FULL)`)
		if err != nil {
			return err
		}
		defer rs.Close()
		if rs.Next() {
			if err := rs.Scan(&busy, &logFrames, &done); err != nil {
				return err
			}
		}
		return rs.Err()
	})
	if err != nil {
		return fmt.Errorf("sqlite store: sync: %w", err)
	}
	if busy == 0 {
		return nil
	}
	f, err := os.OpenFile(s.path+"-wal", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sqlite store: sync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sqlite store: sync: %w", err)
	}
	return nil
}
