package audit

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A writer connection the server dropped while it sat idle (a PostgreSQL
// restart, a cut network path) looks open until a statement fails on it.
// The first record after such a break must not be that statement: the
// store pings an idle connection before it uses it and reconnects.
func TestAppendAfterIdleConnectionDropped(t *testing.T) {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	ctx := context.Background()
	schema := fmt.Sprintf("audit_reconnect_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	defer func(d time.Duration) { idlePing = d }(idlePing)
	idlePing = 50 * time.Millisecond

	s := newTestStore(t, Config{Postgres: dsn, Schema: schema}, nil)
	if err := s.Append(ctx, record(0)); err != nil {
		t.Fatal(err)
	}
	w := &s.be.(*pgBackend).writer
	w.mu.Lock()
	pid := w.c.PgConn().PID()
	w.mu.Unlock()
	var dropped bool
	if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&dropped); err != nil || !dropped {
		t.Fatalf("terminate the writer's backend %d: %v %v", pid, dropped, err)
	}
	time.Sleep(2 * idlePing)
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
