package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/internal/sqlstore"
)

var _ store.Loader = (*Store)(nil)

// Load writes bodies in one transaction; see store.Loader. Versions and
// index rows go in by COPY, the current rows by one set-based statement
// each for new and for existing resources.
func (s *Store) Load(ctx context.Context, tenant string, bodies []json.RawMessage) (res []store.LoadResult, err error) {
	ps, err := s.eng.ParseAll(bodies)
	if err != nil {
		return nil, err
	}
	err = s.inTx(ctx, func(c sqlstore.Conn) error {
		res, err = s.eng.Load(ctx, c, tenant, ps)
		return err
	})
	return res, unavailable(err)
}

// Sync does nothing: every commit is durable (synchronous_commit is the
// server's to set, and on by default).
func (s *Store) Sync(context.Context) error { return nil }

// CopyRows puts rows into table with COPY; see sqlstore.Copier.
func (c conn) CopyRows(ctx context.Context, table string, cols []string, rows [][]any) error {
	tx, ok := c.q.(pgx.Tx)
	if !ok {
		return fmt.Errorf("copy into %s outside a transaction", table)
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
	if err != nil {
		return mapError(err)
	}
	if int(n) != len(rows) {
		return fmt.Errorf("copy into %s: %d of %d rows", table, n, len(rows))
	}
	return nil
}
