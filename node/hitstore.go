package node

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/schakel-nl/schakel/internal/pgdb"
	"github.com/schakel-nl/schakel/localization"
)

// hitKeeper remembers the holders a participant's last localization of a
// patient named, with their hits: in memory (hitMemory, one process) or in
// PostgreSQL (hitTable, shared by a node's replicas).
type hitKeeper interface {
	remember(tenant, bsn string, res localization.LocalizeResult)
	lookup(tenant, bsn, holder string) (rememberedHit, []byte, bool)
}

var (
	_ hitKeeper = (*hitMemory)(nil)
	_ hitKeeper = (*hitTable)(nil)
)

//go:embed pgmigrations/*.sql
var nodePGMigrations embed.FS

// hitTable is the hit memory in a PostgreSQL table. A failure to remember
// is logged and a failure to look up counts as no hit: a Direct Pull then
// is refused as not localized (fail closed), never let through.
type hitTable struct {
	db        *sql.DB
	now       func() time.Time
	log       *slog.Logger
	nextSweep atomic.Int64 // Unix ms
}

func openHitTable(ctx context.Context, dsn, schema string, log *slog.Logger) (*hitTable, error) {
	sub, err := fs.Sub(nodePGMigrations, "pgmigrations")
	if err != nil {
		return nil, err
	}
	db, err := pgdb.Open(ctx, dsn, schema, "node_goose_version", sub)
	if err != nil {
		return nil, fmt.Errorf("localization hits: %w", err)
	}
	return &hitTable{db: db, now: time.Now, log: log}, nil
}

func (h *hitTable) Close() error { return h.db.Close() }

// remember replaces what is remembered of tenant's localization of bsn.
func (h *hitTable) remember(tenant, bsn string, res localization.LocalizeResult) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := memoryKey(tenant, bsn)
	now := h.now()
	err := func() error {
		tx, err := h.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		if _, err := tx.ExecContext(ctx, `DELETE FROM localization_hit WHERE key = $1`, key[:]); err != nil {
			return err
		}
		for _, hd := range res.Holders {
			if hd.Hit == "" {
				continue
			}
			hit, err := localization.PeekHit(hd.Hit)
			if err != nil || hit.Holder != hd.URA || !now.Before(hit.Expires) {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO localization_hit (key, holder, hit, salt, expires_at) VALUES ($1,$2,$3,$4,$5)
				ON CONFLICT (key, holder) DO UPDATE SET hit = excluded.hit, salt = excluded.salt, expires_at = excluded.expires_at`,
				key[:], hd.URA, hd.Hit, append([]byte{}, res.Salt...), hit.Expires.UnixMilli()); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		h.log.Error("localization hits not remembered: a Direct Pull through another replica will ask to localize again", "err", err)
	}
	if now.UnixMilli() >= h.nextSweep.Load() {
		h.nextSweep.Store(now.Add(time.Minute).UnixMilli())
		if _, err := h.db.ExecContext(ctx, `DELETE FROM localization_hit WHERE expires_at <= $1`, now.UnixMilli()); err != nil {
			h.log.Warn("expired localization hits not swept", "err", err)
		}
	}
}

// lookup returns the unexpired hit naming holder from tenant's last
// localization of bsn, and the salt of its patient binding.
func (h *hitTable) lookup(tenant, bsn, holder string) (rememberedHit, []byte, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := memoryKey(tenant, bsn)
	var raw string
	var salt []byte
	err := h.db.QueryRowContext(ctx, `SELECT hit, salt FROM localization_hit WHERE key = $1 AND holder = $2 AND expires_at > $3`,
		key[:], holder, h.now().UnixMilli()).Scan(&raw, &salt)
	if err != nil {
		if err != sql.ErrNoRows {
			h.log.Error("localization hits not readable: the Direct Pull is refused as not localized", "err", err)
		}
		return rememberedHit{}, nil, false
	}
	hit, err := localization.PeekHit(raw)
	if err != nil || hit.Holder != holder || !h.now().Before(hit.Expires) {
		return rememberedHit{}, nil, false
	}
	return rememberedHit{raw: raw, hit: hit}, salt, true
}
