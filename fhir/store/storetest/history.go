package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

func historian(t *testing.T, s store.Store) store.Historian {
	t.Helper()
	h, ok := s.(store.Historian)
	if !ok {
		t.Skip("store keeps no history")
	}
	return h
}

func transactional(t *testing.T, s store.Store) store.Transactional {
	t.Helper()
	x, ok := s.(store.Transactional)
	if !ok {
		t.Skip("store has no transactions")
	}
	return x
}

// versions renders history entries as "Type/id/version" ("-" marks deleted).
func versions(vs []store.Resource) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Type + "/" + v.ID + "/" + v.VersionID
		if v.Deleted {
			out[i] += "-"
		}
	}
	return out
}

func testHistory(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	h := historian(t, s)
	// Writes spaced a few ms apart so that lastUpdated orders them.
	put(t, s, tenantA, `{"resourceType":"Patient","id":"p1","active":true}`)
	waitTick()
	put(t, s, tenantA, `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}`)
	waitTick()
	p1v2 := put(t, s, tenantA, `{"resourceType":"Patient","id":"p1","active":false}`)
	waitTick()
	if err := s.Delete(ctx, tenantA, "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	waitTick()
	put(t, s, tenantA, `{"resourceType":"Patient","id":"p2"}`)
	put(t, s, tenantB, `{"resourceType":"Patient","id":"p1"}`)

	for _, tc := range []struct {
		name string
		q    store.HistoryQuery
		want []string
		next int
	}{
		{"instance", store.HistoryQuery{Type: "Patient", ID: "p1"}, []string{"Patient/p1/3-", "Patient/p1/2", "Patient/p1/1"}, -1},
		{"type", store.HistoryQuery{Type: "Patient"}, []string{"Patient/p2/1", "Patient/p1/3-", "Patient/p1/2", "Patient/p1/1"}, -1},
		{"tenant", store.HistoryQuery{}, []string{"Patient/p2/1", "Patient/p1/3-", "Patient/p1/2", "Observation/o1/1", "Patient/p1/1"}, -1},
		{"since", store.HistoryQuery{Since: p1v2.LastUpdated}, []string{"Patient/p2/1", "Patient/p1/3-", "Patient/p1/2"}, -1},
		{"page 1", store.HistoryQuery{Count: 2}, []string{"Patient/p2/1", "Patient/p1/3-"}, 2},
		{"page 2", store.HistoryQuery{Count: 2, Offset: 2}, []string{"Patient/p1/2", "Observation/o1/1"}, 4},
		{"page 3", store.HistoryQuery{Count: 2, Offset: 4}, []string{"Patient/p1/1"}, -1},
		{"unknown id", store.HistoryQuery{Type: "Patient", ID: "nope"}, []string{}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, err := h.History(ctx, tenantA, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := versions(page.Versions); !slices.Equal(got, tc.want) {
				t.Errorf("versions %v, want %v", got, tc.want)
			}
			if page.NextOffset != tc.next {
				t.Errorf("next offset %d, want %d", page.NextOffset, tc.next)
			}
			if tc.q.Count == 0 && page.Total != len(tc.want) {
				t.Errorf("total %d, want %d", page.Total, len(tc.want))
			}
			if tc.q.Count == 2 && page.Total != 5 {
				t.Errorf("total %d, want 5", page.Total)
			}
			for _, v := range page.Versions {
				if v.Deleted != (len(v.Body) == 0) {
					t.Errorf("%s/%s/%s: deleted %v with body %q", v.Type, v.ID, v.VersionID, v.Deleted, v.Body)
				}
				if v.LastUpdated.IsZero() {
					t.Errorf("%s/%s/%s: no lastUpdated", v.Type, v.ID, v.VersionID)
				}
			}
		})
	}
	// A version in history is the body as stored, meta included.
	page, err := h.History(ctx, tenantA, store.HistoryQuery{Type: "Patient", ID: "p1", Count: 1, Offset: 1})
	if err != nil || len(page.Versions) != 1 || string(page.Versions[0].Body) != string(p1v2.Body) {
		t.Fatalf("history body: %v %+v", err, page)
	}
}

func testHistoryErrors(t *testing.T, open Opener) {
	s := open(t, fhir.STU3)
	h := historian(t, s)
	for _, q := range []store.HistoryQuery{
		{Type: "Nope"},
		{ID: "p1"},
		{Count: -1},
		{Offset: -1},
	} {
		if _, err := h.History(context.Background(), tenantA, q); !errors.Is(err, store.ErrInvalidSearch) {
			t.Errorf("%+v: got %v, want ErrInvalidSearch", q, err)
		}
	}
}

func testInTx(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	x := transactional(t, s)
	put(t, s, tenantA, `{"resourceType":"Patient","id":"p1","identifier":[{"system":"`+bsnSys+`","value":"1"}]}`)

	var created store.Resource
	var leaked store.Tx
	err := x.InTx(ctx, tenantA, func(tx store.Tx) error {
		leaked = tx
		var err error
		created, err = tx.Create(ctx, json.RawMessage(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`))
		if err != nil {
			return err
		}
		// Reads and searches inside see the transaction's own writes.
		if got, err := tx.Read(ctx, "Observation", created.ID); err != nil || string(got.Body) != string(created.Body) {
			return fmt.Errorf("read own create: %v %s", err, got.Body)
		}
		page, err := tx.Search(ctx, store.Query{Type: "Observation", Params: map[string][]string{"patient.identifier": {"1"}}})
		if err != nil || !slices.Equal(ids(page.Matches), []string{"Observation/" + created.ID}) {
			return fmt.Errorf("search own create: %v %+v", err, page)
		}
		if _, _, err := tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"p1","active":true}`), `W/"2"`); !errors.Is(err, store.ErrVersionConflict) {
			return fmt.Errorf("stale If-Match in tx: %v", err)
		}
		res, isNew, err := tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"p1","active":true}`), `W/"1"`)
		if err != nil || isNew || res.VersionID != "2" {
			return fmt.Errorf("update in tx: %v %v %+v", err, isNew, res)
		}
		if err := tx.Delete(ctx, "Patient", "p1"); err != nil {
			return err
		}
		if _, err := tx.Read(ctx, "Patient", "p1"); !errors.Is(err, store.ErrDeleted) {
			return fmt.Errorf("read own delete: %v", err)
		}
		// Nothing is visible outside before the commit.
		if _, err := s.Read(ctx, tenantA, "Observation", created.ID); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("uncommitted create visible outside: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(ctx, tenantA, "Observation", created.ID); err != nil || string(got.Body) != string(created.Body) {
		t.Fatalf("committed create: %v %s", err, got.Body)
	}
	if got, err := s.Read(ctx, tenantA, "Patient", "p1"); !errors.Is(err, store.ErrDeleted) || got.VersionID != "3" {
		t.Fatalf("committed delete: %v %+v", err, got)
	}
	// The Tx is dead after InTx returns.
	if _, err := leaked.Read(ctx, "Patient", "p1"); err == nil {
		t.Fatal("tx usable after InTx returned")
	}
	if _, err := leaked.Create(ctx, json.RawMessage(`{"resourceType":"Patient"}`)); err == nil {
		t.Fatal("tx usable after InTx returned")
	}
	// The tx writes for its tenant only.
	if err := x.InTx(ctx, tenantB, func(tx store.Tx) error {
		_, err := tx.Read(ctx, "Observation", created.ID)
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("read across tenants in tx: %v", err)
		}
		_, _, err = tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"p1"}`), "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(ctx, tenantB, "Patient", "p1"); err != nil || got.VersionID != "1" {
		t.Fatalf("tenant B: %v %+v", err, got)
	}
}

func testInTxRollback(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	x := transactional(t, s)
	boom := errors.New("boom")
	err := x.InTx(ctx, tenantA, func(tx store.Tx) error {
		for i := range 3 {
			if _, _, err := tx.Update(ctx, json.RawMessage(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"system":"%s","value":"%d"}]}`, i, bsnSys, i)), ""); err != nil {
				return err
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx returned %v, want fn's error", err)
	}
	assertEmpty(t, s, tenantA)
	page, err := s.Search(ctx, tenantA, store.Query{Type: "Patient", Params: map[string][]string{"identifier": {"1"}}})
	if err != nil || page.Total != 0 {
		t.Fatalf("rolled back index rows found: %v %+v", err, page)
	}
	// A panic in fn rolls back too, and the store stays usable.
	func() {
		defer func() { recover() }()
		x.InTx(ctx, tenantA, func(tx store.Tx) error {
			tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"px"}`), "")
			panic("fn panics")
		})
	}()
	assertEmpty(t, s, tenantA)
	put(t, s, tenantA, `{"resourceType":"Patient","id":"after"}`)
}

// testInTxFailedWrite: a write that fails inside a transaction leaves
// nothing, and the transaction can go on and commit the others.
func testInTxFailedWrite(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	x := transactional(t, s)
	err := x.InTx(ctx, tenantA, func(tx store.Tx) error {
		if _, _, err := tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"ok1"}`), ""); err != nil {
			return err
		}
		if _, _, err := tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"bad","meta":[]}`), ""); !errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("invalid write: %v", err)
		}
		if _, _, err := tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"new"}`), `W/"1"`); !errors.Is(err, store.ErrVersionConflict) {
			return fmt.Errorf("If-Match on absent resource: %v", err)
		}
		if err := tx.Delete(ctx, "Patient", "nope"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete absent: %v", err)
		}
		_, _, err := tx.Update(ctx, json.RawMessage(`{"resourceType":"Patient","id":"ok2"}`), "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h, ok := s.(store.Historian)
	if !ok {
		return
	}
	page, err := h.History(ctx, tenantA, store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	got := versions(page.Versions)
	slices.Sort(got)
	if want := []string{"Patient/ok1/1", "Patient/ok2/1"}; !slices.Equal(got, want) {
		t.Fatalf("versions %v, want %v", got, want)
	}
}

// testConcurrentUpdates: concurrent writers of one resource each get their
// own version; none is lost or duplicated.
func testConcurrentUpdates(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	put(t, s, tenantA, `{"resourceType":"Patient","id":"p1"}`)
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	seen := make(chan string, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				res, _, err := s.Update(ctx, tenantA, json.RawMessage(fmt.Sprintf(`{"resourceType":"Patient","id":"p1","gender":"other","birthDate":"20%02d-01-01"}`, w*each+i)), "")
				if err != nil {
					errs <- err
					return
				}
				seen <- res.VersionID
			}
		})
	}
	wg.Wait()
	close(errs)
	close(seen)
	for err := range errs {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for v := range seen {
		if distinct[v] {
			t.Fatalf("version %s handed out twice", v)
		}
		distinct[v] = true
	}
	res, err := s.Read(ctx, tenantA, "Patient", "p1")
	if err != nil || res.VersionID != fmt.Sprint(1+writers*each) {
		t.Fatalf("after concurrent updates: %v %+v", err, res)
	}
}

// testHistoryAsOf: a history page says the instant it reflects, and that
// instant is safe as the next _since: every later write is stamped after
// it. (That a write in progress during the read is stamped after it too
// rests on the backends' write lock; see their History.)
func testHistoryAsOf(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.R4)
	h := historian(t, s)
	put(t, s, tenantA, `{"resourceType":"Patient","id":"p1"}`)
	put(t, s, tenantA, `{"resourceType":"Patient","id":"p2"}`)
	page, err := h.History(ctx, tenantA, store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if page.AsOf.IsZero() {
		t.Fatal("a history page without AsOf")
	}
	if len(page.Versions) != 2 {
		t.Fatalf("%d versions, want 2", len(page.Versions))
	}
	later := put(t, s, tenantA, `{"resourceType":"Patient","id":"p3"}`)
	if !later.LastUpdated.After(page.AsOf) {
		t.Errorf("a write after the page is stamped %v, not after AsOf %v: a client syncing from AsOf could miss it", later.LastUpdated, page.AsOf)
	}
	next, err := h.History(ctx, tenantA, store.HistoryQuery{Since: page.AsOf})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(next.Versions, func(r store.Resource) bool { return r.ID == "p3" }) {
		t.Errorf("history since AsOf misses the later write: %+v", next.Versions)
	}
}
