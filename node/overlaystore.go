package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"time"

	"github.com/schakel-nl/schakel/internal/pgdb"
)

// overlayStore keeps the changes made through the admin API: a file in
// the datadir for a node on its own, a row in PostgreSQL for a node whose
// replicas share their state there. A change made at one replica reaches
// the others within overlayPoll.
type overlayStore interface {
	// load returns the changes and the version they were saved at.
	load(ctx context.Context) (overlay, int64, error)
	// save replaces the changes saved at version prev and returns the new
	// version; errOverlayMoved when another process saved since.
	save(ctx context.Context, o overlay, prev int64) (int64, error)
	// shared is whether other processes save changes too.
	shared() bool
	Close() error
	String() string
}

var (
	_ overlayStore = overlayFile{}
	_ overlayStore = (*overlayTable)(nil)
)

// errOverlayMoved: another replica saved changes since they were read.
var errOverlayMoved = errors.New("run-time changes saved by another replica meanwhile")

// overlayPoll is how often a replica looks for changes another made.
const overlayPoll = 2 * time.Second

// overlayFile is <dir>/OverlayFile, written by this process alone.
type overlayFile struct{ dir string }

func (f overlayFile) load(context.Context) (overlay, int64, error) {
	o, err := readOverlay(f.dir)
	return o, 0, err
}

func (f overlayFile) save(_ context.Context, o overlay, _ int64) (int64, error) {
	if f.dir == "" {
		return 0, errors.New("no datadir")
	}
	return 0, o.write(f.dir)
}

func (overlayFile) shared() bool     { return false }
func (overlayFile) Close() error     { return nil }
func (f overlayFile) String() string { return filepath.Join(f.dir, OverlayFile) }

// overlayTable is the node's row of node_runtime_changes.
type overlayTable struct {
	db   *sql.DB
	node string
}

// openOverlayTable opens the table; on a node's first start on
// PostgreSQL it takes over the changes its datadir holds.
func openOverlayTable(ctx context.Context, dsn, schema, node, dataDir string) (*overlayTable, error) {
	sub, err := fs.Sub(nodePGMigrations, "pgmigrations")
	if err != nil {
		return nil, err
	}
	db, err := pgdb.Open(ctx, dsn, schema, "node_goose_version", sub)
	if err != nil {
		return nil, fmt.Errorf("run-time changes: %w", err)
	}
	t := &overlayTable{db: db, node: node}
	if _, v, err := t.load(ctx); err != nil || v > 0 {
		if err != nil {
			db.Close()
			return nil, err
		}
		return t, nil
	}
	if o, err := readOverlay(dataDir); err != nil || !o.empty() {
		if err == nil {
			_, err = t.save(ctx, o, 0)
		}
		if err != nil && !errors.Is(err, errOverlayMoved) { // moved: another replica took it over first
			db.Close()
			return nil, err
		}
	}
	return t, nil
}

func (t *overlayTable) load(ctx context.Context) (overlay, int64, error) {
	var (
		v    int64
		body string
	)
	err := t.db.QueryRowContext(ctx, `SELECT version, body FROM node_runtime_changes WHERE node = $1`, t.node).Scan(&v, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return emptyOverlay(), 0, nil
	}
	if err != nil {
		return emptyOverlay(), 0, fmt.Errorf("run-time changes: %w", err)
	}
	o, err := decodeOverlay([]byte(body), "store.postgres: run-time changes")
	return o, v, err
}

func (t *overlayTable) save(ctx context.Context, o overlay, prev int64) (int64, error) {
	b, err := o.encode()
	if err != nil {
		return prev, err
	}
	var res sql.Result
	if prev == 0 {
		res, err = t.db.ExecContext(ctx, `INSERT INTO node_runtime_changes (node, version, body) VALUES ($1, 1, $2)
			ON CONFLICT (node) DO NOTHING`, t.node, string(b))
	} else {
		res, err = t.db.ExecContext(ctx, `UPDATE node_runtime_changes SET version = version + 1, body = $2, updated_at = now()
			WHERE node = $1 AND version = $3`, t.node, string(b), prev)
	}
	if err != nil {
		return prev, fmt.Errorf("run-time changes: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return prev, errOverlayMoved
	}
	return prev + 1, nil
}

func (*overlayTable) shared() bool     { return true }
func (t *overlayTable) Close() error   { return t.db.Close() }
func (t *overlayTable) String() string { return "store.postgres (node_runtime_changes)" }

// watchOverlay takes up, every overlayPoll until ctx ends, the changes
// another replica saved.
func (n *Node) watchOverlay(ctx context.Context) {
	t := time.NewTicker(overlayPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.takeOverlay(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("admin: run-time changes of another replica not taken up", "err", err)
		}
	}
}

// takeOverlay applies the stored changes when another process saved them
// since this node last read or saved them.
func (n *Node) takeOverlay(ctx context.Context) error {
	st := n.admin
	o, v, err := st.store.load(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if v == st.version {
		return nil
	}
	next := o.apply(st.seed)
	if err := next.Validate(); err != nil {
		return fmt.Errorf("version %d: %w", v, err)
	}
	// Participants first: an agreement may name one.
	var loaded []*participant
	for i, pc := range next.Participants {
		if old, ok := participantByURA(st.current, pc.URA); ok && reflect.DeepEqual(old, pc) {
			continue
		}
		p, err := n.loadParticipant(fmt.Sprintf("participants[%d]", i), pc)
		if err != nil {
			return fmt.Errorf("version %d: %w", v, err)
		}
		if n.cfg.Localization.URL != "" {
			if err := n.attachIndex(p); err != nil {
				return fmt.Errorf("version %d: %w", v, err)
			}
		}
		loaded = append(loaded, p)
	}
	if err := n.install(o, next, v, loaded); err != nil {
		return fmt.Errorf("version %d: %w", v, err)
	}
	n.log.Info("admin: took up the run-time changes of another replica", "version", v,
		"participants", len(next.Participants), "agreements", len(next.Partners.Agreements))
	return nil
}

// install makes next, seed with overlay o (saved at version) applied, what
// the node runs with: the agreements to the enforcer, the participants in
// loaded (new or changed) served, those next no longer lists dropped.
// n.admin.mu is held.
func (n *Node) install(o overlay, next Config, version int64, loaded []*participant) error {
	st := n.admin
	partners := next.Partners
	partners.IdentityIssuers = n.cfg.Identity.trustedIssuerNames(partners.IdentityIssuers)
	if err := n.plateaus.SetAgreements(partners); err != nil {
		return err
	}
	for _, p := range loaded {
		n.parts.put(p)
	}
	for _, pc := range st.current.Participants {
		if _, ok := participantByURA(next, pc.URA); ok {
			continue
		}
		if old, ok := n.parts.get(pc.URA); ok {
			n.parts.remove(pc.URA)
			old.party.HTTP.CloseIdleConnections()
		}
	}
	st.ov, st.current, st.version = o, next, version
	return nil
}

func participantByURA(cfg Config, ura string) (ParticipantConfig, bool) {
	for _, p := range cfg.Participants {
		if p.URA == ura {
			return p, true
		}
	}
	return ParticipantConfig{}, false
}
