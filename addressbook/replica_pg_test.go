package addressbook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestReplicaOnPostgres runs the replica's tests again with every replica
// in PostgreSQL (a fresh schema each), when SCHAKEL_TEST_POSTGRES is set:
// the copy means the same on both backends.
func TestReplicaOnPostgres(t *testing.T) {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	replicaDSN = dsn
	t.Cleanup(func() { replicaDSN = "" })
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"InitialLoadAcrossPages", TestReplicaInitialLoadAcrossPages},
		{"Incremental", TestReplicaIncremental},
		{"AntiSpoofing", TestReplicaAntiSpoofing},
		{"InterruptedSyncChangesNothing", TestReplicaInterruptedSyncChangesNothing},
		{"InterruptedInitialLoadLeavesItEmpty", TestReplicaInterruptedInitialLoadLeavesItEmpty},
		{"HonoursRetryAfter", TestReplicaHonoursRetryAfter},
		{"SyncerKeepsGoingThroughFailures", TestSyncerKeepsGoingThroughFailures},
	} {
		t.Run(tc.name, tc.test)
	}
}

// freshSchema is a new schema name, dropped when the test ends.
func freshSchema(tb testing.TB, dsn string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "abreplica_test_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	})
	return schema
}
