package logcentral

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

// TestEntriesKeptAcrossTheRowidMigration: a central log made before
// shipped_entry had a rowid keeps its records, byte for byte, through the
// migration, stays append-only, and takes the node's next batch after.
func TestEntriesKeptAcrossTheRowidMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "central.db")
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sqlitedb.OpenAt(ctx, path, sub, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	log := nodeLog(t, t.TempDir())
	appendN(t, log, 0, 6)
	entries, err := log.Entries(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old := &sqliteStore{db: raw}
	if err := old.Append(ctx, uraA, entries[:4], at); err != nil {
		t.Fatal(err)
	}

	st, err := openSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ddl string
	if err := st.db.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = 'shipped_entry'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(ddl), "WITHOUT ROWID") {
		t.Fatalf("shipped_entry is still WITHOUT ROWID after the migration: %s", ddl)
	}
	if err := st.Append(ctx, uraA, entries[3:4], at); !errors.Is(err, ErrConflict) {
		t.Fatalf("a seq stored twice after the migration: %v, want ErrConflict", err)
	}
	if err := st.Append(ctx, uraA, entries[4:], at); err != nil {
		t.Fatal(err)
	}
	got, err := st.Entries(ctx, uraA, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("%d records after the migration, want 6", len(got))
	}
	for i := range got {
		if got[i] != entries[i] {
			t.Fatalf("record %d after the migration: %+v, want %+v", i+1, got[i], entries[i])
		}
	}
	for _, q := range []string{`UPDATE shipped_entry SET body = '' WHERE seq = 1`, `DELETE FROM shipped_entry WHERE seq = 1`} {
		if _, err := st.db.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("%s after the migration: %v, want refused as append-only", q, err)
		}
	}
	// And back: the Down migration keeps every record too.
	if err := sqlitedb.MigrateTo(ctx, st.db, sub, 1); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM shipped_entry`).Scan(&n); err != nil || n != 6 {
		t.Fatalf("after the Down migration shipped_entry holds %d rows (%v), want 6", n, err)
	}
}
