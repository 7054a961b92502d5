package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// Batches of every size up to two full statements are stored whole and in
// order, through no more than seven prepared statements (64, 32, ..., 1
// rows): a statement per batch size would have prepared 64.
func TestBatchesOfEverySizeUseSevenStatements(t *testing.T) {
	ctx := context.Background()
	b := tempSQLite(t, "NORMAL")
	seq := int64(0)
	for size := 1; size <= 2*maxInsertRows+1; size++ {
		rows := make([]row, size)
		for i := range rows {
			seq++
			r := Record{EventID: fmt.Sprintf("event-%d", seq), Time: time.Unix(seq, 0), Action: ActionRead,
				Interaction: "read", Outcome: 200, Node: "node-a", Tenant: "00000001"}
			rows[i] = row{seq: seq, prev: make([]byte, 32), hash: make([]byte, 32), body: []byte(`{"v":1}`), cols: columnsOf(r)}
		}
		if err := b.write(ctx, rows, nil); err != nil {
			t.Fatalf("batch of %d: %v", size, err)
		}
	}
	var next int64
	err := b.scan(ctx, func(r row) error {
		next++
		if r.seq != next || r.cols.EventID != fmt.Sprintf("event-%d", next) {
			return fmt.Errorf("row %d is seq %d, event %s", next, r.seq, r.cols.EventID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next != seq {
		t.Fatalf("%d rows stored, %d written", next, seq)
	}
	if len(b.inserts) > 7 {
		t.Errorf("%d prepared INSERT statements, want at most 7", len(b.inserts))
	}
}

// tempSQLite is a SQLite backend in t's temporary directory, with SQLite's
// synchronous setting sync; it closes when t ends.
func tempSQLite(t *testing.T, sync string) *sqliteBackend {
	t.Helper()
	b, err := openSQLite(context.Background(), filepath.Join(t.TempDir(), "audit.db"), false, sync)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.close() })
	return b
}
