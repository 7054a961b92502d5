package addressbook

import (
	"os"
	"testing"

	"github.com/schakel-nl/schakel/internal/pgdb/pgtest"
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
func freshSchema(tb testing.TB) string {
	_, schema := pgtest.Schema(tb, "abreplica_test_")
	return schema
}
