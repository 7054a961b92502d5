package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/internal/sqlstore"
	"github.com/schakel-nl/schakel/fhir/store/storetest"
)

const (
	tenantA = "00000001"
	bsnSys  = "http://fhir.nl/fhir/NamingSystem/bsn"
)

func openStore(t testing.TB, v fhir.Version) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "fhir.db"), v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, v fhir.Version) store.Store { return openStore(t, v) })
}

func TestFailedWriteLeavesNothing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	if _, _, err := s.Update(ctx, tenantA, json.RawMessage(`{"resourceType":"Patient","id":"p1","identifier":[{"system":"`+bsnSys+`","value":"1"}]}`), ""); err != nil {
		t.Fatal(err)
	}
	// Make index writes fail halfway through a write (an update changing
	// one identifier updates its index row in place).
	if err := s.w.run(ctx, func(c sqlstore.Conn) error {
		if err := c.Exec(ctx, `CREATE TRIGGER fail BEFORE INSERT ON idx_token WHEN NEW.code = '2' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
			return err
		}
		return c.Exec(ctx, `CREATE TRIGGER fail_update BEFORE UPDATE ON idx_token WHEN NEW.code = '2' BEGIN SELECT RAISE(ABORT, 'boom'); END`)
	}); err != nil {
		t.Fatal(err)
	}
	body := json.RawMessage(`{"resourceType":"Patient","id":"p1","identifier":[{"system":"` + bsnSys + `","value":"2"}]}`)
	if _, _, err := s.Update(ctx, tenantA, body, ""); err == nil {
		t.Fatal("write succeeded")
	}
	// Inside a transaction the failed write is undone alone.
	if err := s.InTx(ctx, tenantA, func(tx store.Tx) error {
		if _, _, err := tx.Update(ctx, body, ""); err == nil {
			return errors.New("write in tx succeeded")
		}
		_, _, err := tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"p2"}`), "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Read(ctx, tenantA, "Patient", "p1")
	if err != nil || res.VersionID != "1" {
		t.Fatalf("after failed write: %v %+v", err, res)
	}
	page, err := s.Search(ctx, tenantA, store.Query{Type: "Patient", Params: url.Values{"identifier": {"1"}}})
	if err != nil || page.Total != 1 {
		t.Fatalf("index of version 1 lost: %v %+v", err, page)
	}
	if _, err := s.VRead(ctx, tenantA, "Patient", "p1", "2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("version 2 stored: %v", err)
	}
	if _, err := s.Read(ctx, tenantA, "Patient", "p2"); err != nil {
		t.Fatalf("write after the failed one in tx: %v", err)
	}
}

func TestMemory(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, ":memory:", fhir.R4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Create(ctx, tenantA, json.RawMessage(`{"resourceType":"Patient","name":[{"family":"Test"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.Search(ctx, tenantA, store.Query{Type: "Patient", Params: url.Values{"family": {"test"}}})
	if err != nil || len(page.Matches) != 1 || page.Matches[0].ID != res.ID {
		t.Fatalf("%v %+v", err, page)
	}
	// A transaction on the single connection of ":memory:" does not deadlock.
	if err := s.InTx(ctx, tenantA, func(tx store.Tx) error {
		if _, err := tx.Read(ctx, "Patient", res.ID); err != nil {
			return err
		}
		_, err := tx.Search(ctx, store.Query{Type: "Patient", Params: url.Values{"family": {"test"}}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, tenantA, store.HistoryQuery{Type: "Patient"})
	if err != nil || h.Total != 1 {
		t.Fatalf("history: %v %+v", err, h)
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fhir.db")
	s, err := Open(ctx, path, fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Create(ctx, tenantA, json.RawMessage(`{"resourceType":"Patient"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Analyze(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path, fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Read(ctx, tenantA, "Patient", res.ID); err != nil || string(got.Body) != string(res.Body) {
		t.Fatalf("after reopen: %v %s", err, got.Body)
	}
}

// TestLoadRestoresPragmas: a Load runs without the foreign-key check of
// every row and with a larger WAL checkpoint interval; after it, succeeded
// or failed halfway, the writer checks foreign keys again and checkpoints
// at SQLite's default.
func TestLoadRestoresPragmas(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	pragma := func(name string) int {
		t.Helper()
		var on int
		if err := s.w.run(ctx, func(c sqlstore.Conn) error {
			rs, err := c.Query(ctx, `PRAGMA `+name)
			if err != nil {
				return err
			}
			defer rs.Close()
			if rs.Next() {
				if err := rs.Scan(&on); err != nil {
					return err
				}
			}
			return rs.Err()
		}); err != nil {
			t.Fatal(err)
		}
		return on
	}
	// A load also raises the WAL's automatic checkpoint; the writer's
	// other transactions get SQLite's default back.
	fk := func() int {
		t.Helper()
		if n := pragma("wal_autocheckpoint"); n != 1000 {
			t.Errorf("wal_autocheckpoint %d after a load", n)
		}
		return pragma("foreign_keys")
	}
	patient := func(id, bsn string) json.RawMessage {
		return json.RawMessage(`{"resourceType":"Patient","id":"` + id + `","identifier":[{"system":"` + bsnSys + `","value":"` + bsn + `"}]}`)
	}
	if _, err := s.Load(ctx, tenantA, []json.RawMessage{patient("p1", "1"), patient("p2", "2")}); err != nil {
		t.Fatal(err)
	}
	if fk() != 1 {
		t.Fatal("foreign keys off after a load")
	}
	if err := s.w.run(ctx, func(c sqlstore.Conn) error {
		return c.Exec(ctx, `CREATE TRIGGER fail BEFORE INSERT ON idx_token WHEN NEW.code = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END`)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, tenantA, []json.RawMessage{patient("p3", "3"), patient("p4", "boom")}); err == nil {
		t.Fatal("load succeeded")
	}
	if fk() != 1 {
		t.Fatal("foreign keys off after a failed load")
	}
	// The failed load left nothing; the one before is whole.
	if _, err := s.Read(ctx, tenantA, "Patient", "p3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("p3 of the failed load: %v", err)
	}
	page, err := s.Search(ctx, tenantA, store.Query{Type: "Patient", Params: url.Values{"identifier": {bsnSys + "|2"}}})
	if err != nil || len(page.Matches) != 1 {
		t.Fatalf("search after loads: %d matches, %v", len(page.Matches), err)
	}
}

func TestIndexAfterUpdates(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fhir.STU3)
	storetest.IndexAfterUpdates(t, s, func(t *testing.T, typ, id string) []string {
		var rows []string
		if err := s.w.run(ctx, func(c sqlstore.Conn) (err error) {
			rows, err = s.eng.IndexRows(ctx, c, tenantA, typ, id)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return rows
	})
}
