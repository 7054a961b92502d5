package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/internal/sqlitedb"
)

// TestVersionsKeptAcrossTheRowidMigration: a store made before
// resource_version had a rowid keeps every version, its history order and
// its current version through the migration, and takes new versions after.
func TestVersionsKeptAcrossTheRowidMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fhir.db")
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sqlitedb.OpenAt(ctx, path, sub, 2)
	if err != nil {
		t.Fatal(err)
	}
	body := func(v string) string {
		return `{"resourceType":"Patient","id":"p1","meta":{"versionId":"` + v + `","lastUpdated":"2025-03-01T10:00:0` + v + `.000Z"},"gender":"male"}`
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO resource_version (tenant, type, id, version, last_updated, body) VALUES
		(?, 'Patient', 'p1', 1, 1740823201000, ?), (?, 'Patient', 'p1', 2, 1740823202000, ?)`, tenantA, body("1"), tenantA, body("2")); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO resource (tenant, type, id, version, last_updated, body) VALUES (?, 'Patient', 'p1', 2, 1740823202000, ?)`,
		tenantA, body("2")); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	s, err := Open(ctx, path, fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A connection of its own: the store's writer keeps its connection.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var ddl string
	if err := other.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = 'resource_version'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(ddl), "WITHOUT ROWID") {
		t.Fatalf("resource_version is still WITHOUT ROWID after the migration: %s", ddl)
	}
	for _, v := range []string{"1", "2"} {
		r, err := s.VRead(ctx, tenantA, "Patient", "p1", v)
		if err != nil || r.VersionID != v || string(r.Body) != body(v) {
			t.Fatalf("version %s after the migration: %+v %v", v, r, err)
		}
	}
	if _, _, err := s.Update(ctx, tenantA, []byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`), "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, tenantA, []byte(`{"resourceType":"Patient","gender":"other"}`)); err != nil {
		t.Fatal(err)
	}
	// A version stored twice is refused by the key index, as by the key.
	if _, err := other.ExecContext(ctx, `INSERT INTO resource_version (tenant, type, id, version, last_updated, body) VALUES (?, 'Patient', 'p1', 3, 0, '{}')`,
		tenantA); err == nil {
		t.Fatal("a second row of version 3 was stored")
	}
	h, err := s.History(ctx, tenantA, store.HistoryQuery{Type: "Patient", ID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range h.Versions {
		got = append(got, r.VersionID)
	}
	if strings.Join(got, ",") != "3,2,1" {
		t.Fatalf("history after the migration: versions %v, want 3,2,1", got)
	}
	all, err := s.History(ctx, tenantA, store.HistoryQuery{})
	if err != nil || all.Total != 4 {
		t.Fatalf("the tenant's history holds %d versions (%v), want 4", all.Total, err)
	}
	// And back: the migration's Down keeps every version too.
	s.Close()
	if err := sqlitedb.MigrateTo(ctx, other, sub, 2); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := other.QueryRowContext(ctx, `SELECT COUNT(*) FROM resource_version`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("after the Down migration resource_version holds %d rows (%v), want 4", n, err)
	}
}
