package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/consent"
	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
)

// TestNodeAsRestrictedRole: the schema's owner starts the node once (its
// migrations create every table), then the node runs as a role that may
// only use the tables — read and write its state, append to the audit log
// but not change it — as a DBA sets it up (docs/operations.md).
func TestNodeAsRestrictedRole(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "node_role_")
	ctx := context.Background()
	cfg := startableConfig(t)
	cfg.Store = StoreConfig{Postgres: dsn, Schema: schema}
	cfg.Consent.Local = true
	serve := func(cfg Config, while func(n *Node)) {
		t.Helper()
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		n, err := New(sctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		served := make(chan error, 1)
		go func() { served <- n.Serve(sctx) }()
		while(n)
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	serve(cfg, func(*Node) {}) // the owner's start: the migrations

	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	role := schema + "_app"
	roleDSN := pgtest.Role(t, dsn, role)
	r := pgx.Identifier{role}.Sanitize()
	rows, err := c.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, schema)
	if err != nil {
		t.Fatal(err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(schemas) == 0 {
		t.Fatalf("the node's schemas: %v %v", schemas, err)
	}
	var stmts []string
	for _, name := range schemas {
		s := pgx.Identifier{name}.Sanitize()
		stmts = append(stmts,
			`GRANT USAGE ON SCHEMA `+s+` TO `+r,
			`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA `+s+` TO `+r,
			`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA `+s+` TO `+r)
	}
	// The audit log: append and read only.
	var auditSchema string
	if err := c.QueryRow(ctx, `SELECT table_schema FROM information_schema.tables
		WHERE table_name = 'audit_event' AND starts_with(table_schema, $1)`, schema).Scan(&auditSchema); err != nil {
		t.Fatalf("the node's audit log: %v", err)
	}
	as := pgx.Identifier{auditSchema}.Sanitize()
	stmts = append(stmts, `REVOKE UPDATE, DELETE ON `+as+`.audit_event, `+as+`.audit_checkpoint FROM `+r)
	for _, stmt := range stmts {
		if _, err := c.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	cfg.Store.Postgres = roleDSN
	serve(cfg, func(n *Node) {
		resp, err := http.Get(n.InternalURL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz as %s: %d %s", role, resp.StatusCode, b)
		}
		// A write to the node's state, audited.
		body, _ := json.Marshal(consent.Registration{PatientBSN: "999911120", Effect: consent.Permit, HolderType: "Z3"})
		req, _ := http.NewRequest(http.MethodPost, n.InternalURL()+"/internal/consent", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cfg.Participants[0].InternalToken)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("register a consent as %s: %d %s", role, resp.StatusCode, b)
		}
	})
	rc, err := pgx.Connect(ctx, cfg.Store.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	var n int
	if err := rc.QueryRow(ctx, `SELECT count(*) FROM `+as+`.audit_event`).Scan(&n); err != nil || n == 0 {
		t.Errorf("audit records written as %s: %d %v", role, n, err)
	}
	if _, err := rc.Exec(ctx, `UPDATE `+as+`.audit_event SET node = 'x'`); err == nil {
		t.Errorf("%s changed an audit record", role)
	}
}
