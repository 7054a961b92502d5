// Package storetest is the conformance suite every fhir/store backend runs:
// CRUD and versioning, If-Match, tenant isolation, every search parameter
// type and modifier, chains, _include/_revinclude, $lastn, strict and lenient
// parsing, malformed values, history, transactions and atomicity, and the
// bulk load against one write at a time. A backend's
// test calls Run with a function that opens an empty store.
package storetest

import (
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

// Opener opens a new, empty store for FHIR version v, closed when t ends.
type Opener func(t *testing.T, v fhir.Version) store.Store

// Run runs the suite against the stores open returns. Stores that implement
// store.Historian and store.Transactional are tested on those too; a backend
// that must implement them should assert so at compile time.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"CRUD", testCRUD},
		{"Invalid", testInvalid},
		{"TenantIsolation", testTenantIsolation},
		{"Search", testSearch},
		{"SearchR4Addressbook", testSearchR4Addressbook},
		{"SearchErrors", testSearchErrors},
		{"PagingAndSort", testPagingAndSort},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"History", testHistory},
		{"HistoryAsOf", testHistoryAsOf},
		{"HistoryErrors", testHistoryErrors},
		{"InTx", testInTx},
		{"InTxRollback", testInTxRollback},
		{"InTxFailedWrite", testInTxFailedWrite},
		{"Load", testLoad},
		{"LoadInvalid", testLoadInvalid},
		{"LoadSameAsWrites", testLoadSameAsWrites},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

const (
	tenantA = "00000001"
	tenantB = "00000002"
	bsnSys  = "http://fhir.nl/fhir/NamingSystem/bsn"
	sct     = "http://snomed.info/sct"
	loinc   = "http://loinc.org"
	// lastUpdatedLayout is how stores write meta.lastUpdated.
	lastUpdatedLayout = "2006-01-02T15:04:05.000Z07:00"
)

// put stores body (with its id) for tenant and returns the stored resource.
func put(t *testing.T, s store.Store, tenant, body string) store.Resource {
	t.Helper()
	res, _, err := s.Update(context.Background(), tenant, json.RawMessage(body), "")
	if err != nil {
		t.Fatalf("update %s: %v", body, err)
	}
	return res
}

func ids(rs []store.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Type + "/" + r.ID
	}
	sort.Strings(out)
	return out
}

func loadFixtures(t *testing.T, s store.Store, tenant string, fixtures []string) {
	t.Helper()
	for _, f := range fixtures {
		put(t, s, tenant, f)
	}
}

// assertEmpty fails when the tenant has any version of any resource (seen
// through history when the store keeps it, else through searches).
func assertEmpty(t *testing.T, s store.Store, tenant string) {
	t.Helper()
	ctx := context.Background()
	if h, ok := s.(store.Historian); ok {
		page, err := h.History(ctx, tenant, store.HistoryQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 0 || len(page.Versions) != 0 {
			t.Fatalf("%d versions left behind: %+v", page.Total, page.Versions)
		}
		return
	}
	for _, typ := range []string{"Patient", "Observation"} {
		page, err := s.Search(ctx, tenant, store.Query{Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 0 {
			t.Fatalf("%d %s left behind", page.Total, typ)
		}
	}
}

// waitTick makes the next write get a later lastUpdated (milliseconds).
func waitTick() { time.Sleep(3 * time.Millisecond) }
