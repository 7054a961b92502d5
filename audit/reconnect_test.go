package audit

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
)

// A writer connection the server dropped while it sat idle (a PostgreSQL
// restart, a cut network path) looks open until a statement fails on it.
// The first record after such a break must not be that statement: the
// connection is pinged before use when it sat idle, and replaced.
func TestAppendAfterIdleConnectionDropped(t *testing.T) {
	dsn, schema := pgtest.Schema(t, "audit_reconnect_")
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	s := newTestStore(t, Config{Postgres: dsn, Schema: schema}, nil)
	if err := s.Append(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	var pid uint32
	if err := s.be.(*pgBackend).writer.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
		pid = c.Conn().PgConn().PID()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var dropped bool
	if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&dropped); err != nil || !dropped {
		t.Fatalf("terminate the writer's backend %d: %v %v", pid, dropped, err)
	}
	// pgxpool pings a connection idle for a second or more before use.
	time.Sleep(1200 * time.Millisecond)
	if err := s.Append(ctx, record(1)); err != nil {
		t.Fatalf("the first record after the writer's connection was dropped: %v", err)
	}
	recs, err := s.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Errorf("%d records, want 2", len(recs))
	}
}
