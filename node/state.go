package node

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/schakel-nl/schakel/addressbook"
	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/oauth/replaydb"
)

// The node's state follows one switch, store.postgres: without it every
// store is an SQLite file in datadir (the embedded default, one process per
// datadir); with it every store is a set of tables in store.schema, which a
// node's replicas share (docs/operations.md, "State on PostgreSQL").

// auditSchema is where the audit log's tables go on PostgreSQL: the node's
// schema, or "audit" (the audit tools' default) when the node has none.
func (c Config) auditSchema() string {
	if c.Store.Schema != "" {
		return c.Store.Schema
	}
	return "audit"
}

// addressbookStorage is where the directory replicas go: their files in
// datadir, or a schema per directory next to the node's.
func (c Config) addressbookStorage() addressbook.Storage {
	if c.Store.Postgres == "" {
		return addressbook.Storage{}
	}
	return addressbook.Storage{Postgres: c.Store.Postgres, Schema: c.Store.Schema}
}

// openAudit opens the audit log: the journaled SQLite file in datadir, or
// the shared PostgreSQL log, whose writers (the replicas) take turns.
func (n *Node) openAudit(ctx context.Context, key jwk.Key) error {
	cfg := audit.Config{Node: n.cfg.Name, Key: key, Logger: n.log, Observe: n.metrics.observeAudit,
		Siblings: func() int { return int(n.requests.Load()) }}
	setting := "datadir: audit log"
	if n.cfg.Store.Postgres != "" {
		cfg.Postgres, cfg.Schema, setting = n.cfg.Store.Postgres, n.cfg.auditSchema(), "store.postgres: audit log"
	} else {
		cfg.Path = filepath.Join(n.cfg.DataDir, "audit.db")
	}
	var err error
	if n.auditLog, err = audit.OpenWith(ctx, cfg); err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	return nil
}

// openReplay opens the authorization server's replay cache. On PostgreSQL
// it is a table the replicas share, so an assertion used at one is refused
// at the others. The embedded node keeps it in memory: one process owns the
// datadir, and a token request then costs no database write; what a
// restart forgets is an assertion whose use also needs the client's TLS key
// and which expires within minutes.
func (n *Node) openReplay(ctx context.Context) error {
	if n.cfg.Store.Postgres == "" {
		n.replay = oauth.NewMemoryReplayCache(0, nil)
		return nil
	}
	c, err := replaydb.OpenPostgres(ctx, n.cfg.Store.Postgres, n.cfg.Store.Schema, replaydb.Options{Logger: n.log})
	if err != nil {
		return fmt.Errorf("store.postgres: %w", err)
	}
	n.replay, n.replayDB = c, c
	return nil
}

// openConsentRegistry opens the local consent registry (consent.local).
func (n *Node) openConsentRegistry(ctx context.Context) error {
	if n.cfg.Store.Postgres != "" {
		st, err := consent.OpenPostgres(ctx, n.cfg.Store.Postgres, n.cfg.Store.Schema)
		if err != nil {
			return fmt.Errorf("consent.local: registry in store.postgres: %w", err)
		}
		n.consents = st
		return nil
	}
	st, err := consent.OpenSQLite(ctx, filepath.Join(n.cfg.DataDir, "consent.db"))
	if err != nil {
		return fmt.Errorf("consent.local: registry in datadir: %w", err)
	}
	n.consents = st
	return nil
}

// openHits keeps the localization hits of the participants' lookups where
// every replica finds them: in memory for the embedded node, in a table on
// PostgreSQL.
func (n *Node) openHits(ctx context.Context) error {
	if n.cfg.Store.Postgres == "" {
		return nil // the memory New made
	}
	h, err := openHitTable(ctx, n.cfg.Store.Postgres, n.cfg.Store.Schema, n.log)
	if err != nil {
		return fmt.Errorf("store.postgres: %w", err)
	}
	n.hits, n.hitTable = h, h
	return nil
}
