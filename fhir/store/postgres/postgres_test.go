package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/storetest"
)

// testDSN returns the test database, or skips when none is configured.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	return dsn
}

// openStore opens a store in a fresh schema, dropped when t ends.
func openStore(t testing.TB, v fhir.Version) *Store {
	t.Helper()
	dsn := testDSN(t)
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	schema := "storetest_" + hex.EncodeToString(b[:])
	s, err := Open(ctx, dsn, v, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, v fhir.Version) store.Store { return openStore(t, v) })
}

func TestNumbered(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT 1":                     "SELECT 1",
		"a = ? AND b IN (?, ?)":        "a = $1 AND b IN ($2, $3)",
		"?":                            "$1",
		"LIMIT ? OFFSET ?":             "LIMIT $1 OFFSET $2",
		"x(?,?,?,?,?,?,?,?,?,?,?) = ?": "x($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) = $12",
	} {
		if got := numbered(in); got != want {
			t.Errorf("numbered(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "postgres://u:secret@127.0.0.1:1/x?sslmode=bogus", fhir.STU3); err == nil || contains(err.Error(), "secret") {
		t.Fatalf("bad DSN: %v", err)
	}
	if _, err := Open(ctx, "postgres://127.0.0.1/x", "dstu2"); err == nil {
		t.Fatal("unknown version accepted")
	}
	if _, err := Open(ctx, "postgres://127.0.0.1/x", fhir.STU3, WithSchema(`x"; DROP TABLE y; --`)); err == nil {
		t.Fatal("bad schema accepted")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	res, err := s.Create(ctx, "00000001", []byte(`{"resourceType":"Patient"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Analyze(ctx); err != nil {
		t.Fatal(err)
	}
	// Opening the migrated schema again is a no-op migration.
	schema := s.pool.Config().ConnConfig.RuntimeParams["search_path"]
	s2, err := Open(ctx, testDSN(t), fhir.STU3, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Read(ctx, "00000001", "Patient", res.ID); err != nil || string(got.Body) != string(res.Body) {
		t.Fatalf("after reopen: %v %s", err, got.Body)
	}
}

// TestIndexRowsHaveTheirResources: the index tables carry no foreign key
// (migration 00002); after loads, updates and deletions every index row
// still points at a current, not deleted resource.
func TestIndexRowsHaveTheirResources(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	obs := func(id, code string) json.RawMessage {
		return json.RawMessage(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-0` + code[:1] + `","valueQuantity":{"value":1.5,"unit":"mmol/l","system":"http://unitsofmeasure.org","code":"mmol/L"}}`)
	}
	patient := json.RawMessage(`{"resourceType":"Patient","id":"p1","identifier":[{"system":"` + bsnSys + `","value":"1"}],"name":[{"family":"Jansen"}]}`)
	if _, err := s.Load(ctx, tenantA, []json.RawMessage{patient, obs("o1", "1-1"), obs("o2", "2-2"), obs("o3", "3-3")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, tenantA, []json.RawMessage{obs("o1", "4-4"), obs("o4", "5-5")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, tenantA, obs("o2", "6-6"), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, tenantA, "Observation", "o3"); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, table := range []string{"idx_token", "idx_ref", "idx_date", "idx_string", "idx_quantity", "idx_uri", "idx_number"} {
		var rows, orphans int
		err := s.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE r.rid IS NULL OR r.deleted)
			FROM `+table+` i LEFT JOIN resource r ON r.rid = i.rid`).Scan(&rows, &orphans)
		if err != nil {
			t.Fatal(err)
		}
		if orphans != 0 {
			t.Errorf("%s: %d of %d rows without a current resource", table, orphans, rows)
		}
		total += rows
	}
	var stale int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM idx_token i JOIN resource r ON r.rid = i.rid
		WHERE r.id IN ('o1', 'o2') AND i.param = 'code' AND i.code IN ('1-1', '2-2')`).Scan(&stale); err != nil {
		t.Fatal(err)
	}
	if stale != 0 || total == 0 {
		t.Errorf("%d index rows of replaced versions left, %d rows in all", stale, total)
	}
}

func TestIndexAfterUpdates(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	storetest.IndexAfterUpdates(t, s, func(t *testing.T, typ, id string) []string {
		rows, err := s.eng.IndexRows(ctx, conn{s.pool}, tenantA, typ, id)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	})
}
