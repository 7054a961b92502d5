// Package logcentral is the central log and monitoring service of logging
// plateaus 3–4: nodes ship their NEN 7513 audit records to it over mTLS,
// it stores them durably and in chain order per node, refuses a batch that
// does not continue a node's hash chain (a gap or a fork) and reports it,
// and acknowledges the highest record it holds durably. The node's side is
// audit.Shipper. See docs/audit.md, "Shipping to the central log".
package logcentral

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/schakel-nl/schakel/audit"
)

// Head is where a node's chain stands at the central log: the last record
// held and its chain hash (zero for a node not seen yet).
type Head struct {
	Node     string    `json:"node"` // the shipping node's URA
	Seq      int64     `json:"acknowledged"`
	Hash     [32]byte  `json:"-"`
	Received time.Time `json:"received,omitzero"` // when the last batch was stored
}

// Store keeps each node's shipped records. Append is called only with
// entries the server has checked to continue the node's chain, one call per
// node at a time; the store makes them durable before it returns and
// refuses (ErrConflict) a seq it already holds, which is what keeps two
// writers of one node from forking it.
type Store interface {
	Head(ctx context.Context, node string) (Head, error)
	Append(ctx context.Context, node string, entries []audit.Entry, received time.Time) error
	// Entries returns a node's records after seq after, in chain order, at most limit.
	Entries(ctx context.Context, node string, after int64, limit int) ([]audit.Entry, error)
	// Heads returns every node's head, for monitoring.
	Heads(ctx context.Context) ([]Head, error)
	Close() error
}

// ErrConflict is returned by Store.Append for a seq already stored.
var ErrConflict = errors.New("record already stored at this position")

// Open opens the SQLite store at path, or the PostgreSQL store of dsn when
// dsn is set (tables in schema, default "logcentral").
func Open(ctx context.Context, path, dsn, schema string) (Store, error) {
	if dsn != "" {
		st, err := openPostgres(ctx, dsn, schema)
		if err != nil {
			return nil, fmt.Errorf("logcentral postgres: %w", err)
		}
		return st, nil
	}
	st, err := openSQLite(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("logcentral %s: %w", path, err)
	}
	return st, nil
}

// rows is what both drivers' query results offer (database/sql, pgx).
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanEntries reads (seq, prev, hash, body) rows, hashes stored as bytes.
func scanEntries(rs rows) ([]audit.Entry, error) {
	var out []audit.Entry
	for rs.Next() {
		var e audit.Entry
		var prev, hash []byte
		if err := rs.Scan(&e.Seq, &prev, &hash, &e.Body); err != nil {
			return nil, err
		}
		e.Prev, e.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
		out = append(out, e)
	}
	return out, rs.Err()
}
