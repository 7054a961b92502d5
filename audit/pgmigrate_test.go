package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
)

// TestReplicaStartsBesideAppends: a replica that opens the log while
// another appends to it (a restart in a rolling upgrade) starts, and the
// appends go on: opening takes no lock on the log's tables. Before the
// tables' creation ran under a migration history, every open re-created
// the triggers and could deadlock with an append.
func TestReplicaStartsBesideAppends(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "audit_open_")
	ctx := context.Background()
	key, err := ephemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	open := func() (*Store, error) {
		return OpenWith(ctx, Config{Postgres: dsn, Schema: schema, Node: "node-a", Key: key,
			CheckpointEvery: 3, Logger: slog.New(slog.DiscardHandler)})
	}
	writer, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var appendErr error
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rec := record(i)
				rec.Query = fmt.Sprintf("writer=%d&i=%d", w, i)
				if err := writer.Append(ctx, rec); err != nil {
					appendErr = err
					return
				}
			}
		}()
	}
	for i := range 20 {
		s, err := open()
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("open %d beside the appends: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if appendErr != nil {
		t.Fatalf("append beside the opens: %v", appendErr)
	}
}

// TestLogFromBeforeTheMigrationHistory: a log whose tables were created
// before they had a migration history opens, keeps its records, and stays
// append-only.
func TestLogFromBeforeTheMigrationHistory(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "audit_old_")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// The tables as the node created them before, with one record.
	q := func(s string) string { return strings.ReplaceAll(s, "{s}", pgx.Identifier{schema}.Sanitize()) }
	if _, err := c.Exec(ctx, q(`CREATE SCHEMA {s};
CREATE TABLE {s}.audit_event (seq bigint PRIMARY KEY, prev bytea NOT NULL, hash bytea NOT NULL, body text NOT NULL,
    event_id text NOT NULL UNIQUE, recorded_at text NOT NULL, action text NOT NULL, interaction text NOT NULL,
    outcome integer NOT NULL, outcome_text text NOT NULL, node text NOT NULL, tenant text NOT NULL,
    actor_ura text NOT NULL, actor_system text NOT NULL, actor_user text NOT NULL, actor_role text NOT NULL,
    network_address text NOT NULL, patient text NOT NULL, resource_types text NOT NULL, resources text NOT NULL,
    query text NOT NULL, task text NOT NULL);
CREATE INDEX audit_event_patient ON {s}.audit_event (patient, recorded_at);
CREATE TABLE {s}.audit_checkpoint (seq bigint PRIMARY KEY, head bytea NOT NULL, created_at text NOT NULL, jws text NOT NULL);
CREATE FUNCTION {s}.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON {s}.audit_event
    FOR EACH ROW EXECUTE FUNCTION {s}.audit_append_only();`)); err != nil {
		t.Fatal(err)
	}
	key, err := ephemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Postgres: dsn, Schema: schema, Node: "node-a", Key: key, Logger: slog.New(slog.DiscardHandler)}
	s, err := OpenWith(ctx, cfg)
	if err != nil {
		t.Fatalf("open the log from before: %v", err)
	}
	if err := s.Append(ctx, record(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What was missing was added: the other index, and the triggers
	// against changing either table.
	for _, stmt := range []string{`UPDATE {s}.audit_event SET node = 'x'`, `DELETE FROM {s}.audit_checkpoint`,
		`TRUNCATE {s}.audit_event`, `TRUNCATE {s}.audit_checkpoint`} {
		_, err := c.Exec(ctx, q(stmt))
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || !strings.Contains(pe.Message, "append-only") {
			t.Errorf("%s: %v; want refused as append-only", q(stmt), err)
		}
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'audit_event_tenant'`, schema).Scan(&n); err != nil || n != 1 {
		t.Errorf("index audit_event_tenant: %d, %v", n, err)
	}
	// Opened again: the history says it is done, and nothing runs.
	s, err = OpenWith(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestRestrictedRole: once an owner has opened the log, a node running as
// a role with only the privileges docs/audit.md lists opens it, appends,
// and cannot change a row.
func TestRestrictedRole(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "audit_role_")
	ctx := context.Background()
	key, err := ephemeralKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Postgres: dsn, Schema: schema, Node: "node-a", Key: key, Logger: slog.New(slog.DiscardHandler)}
	owner, err := OpenWith(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	owner.Close()

	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	role := schema + "_node"
	cfg.Postgres = pgtest.Role(t, dsn, role)
	s := pgx.Identifier{schema}.Sanitize()
	r := pgx.Identifier{role}.Sanitize()
	for _, stmt := range []string{
		`GRANT USAGE ON SCHEMA ` + s + ` TO ` + r,
		`GRANT INSERT, SELECT ON ` + s + `.audit_event, ` + s + `.audit_checkpoint TO ` + r,
		`GRANT SELECT ON ` + s + `.audit_goose_version TO ` + r,
	} {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	node, err := OpenWith(ctx, cfg)
	if err != nil {
		t.Fatalf("open as %s: %v", role, err)
	}
	if err := node.Append(ctx, record(1)); err != nil {
		t.Fatalf("append as %s: %v", role, err)
	}
	node.Close()
	rc, err := pgx.Connect(ctx, cfg.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	if _, err := rc.Exec(ctx, `UPDATE `+s+`.audit_event SET node = 'x'`); err == nil {
		t.Error("the restricted role changed a record")
	}
}
