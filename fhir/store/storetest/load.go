package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

func loader(t *testing.T, s store.Store) store.Loader {
	t.Helper()
	l, ok := s.(store.Loader)
	if !ok {
		t.Skip("store has no bulk load")
	}
	return l
}

func load(t *testing.T, l store.Loader, tenant string, bodies ...string) []store.LoadResult {
	t.Helper()
	raw := make([]json.RawMessage, len(bodies))
	for i, b := range bodies {
		raw[i] = json.RawMessage(b)
	}
	res, err := l.Load(context.Background(), tenant, raw)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return res
}

// outcomes renders results as "Type/id/version outcome".
func outcomes(rs []store.LoadResult) []string {
	names := map[store.LoadOutcome]string{store.Created: "created", store.Updated: "updated", store.Unchanged: "unchanged"}
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/%s/%s %s", r.Type, r.ID, r.Version, names[r.Outcome])
	}
	return out
}

func count(t *testing.T, s store.Store, tenant, typ string, params url.Values) int {
	t.Helper()
	page, err := s.Search(context.Background(), tenant, store.Query{Type: typ, Params: params, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	return page.Total
}

// testLoad checks that a bulk load keeps what one write at a time keeps:
// versions, meta, index rows, history, the no-op on unchanged content,
// tenants apart.
func testLoad(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, fhir.STU3)
	l := loader(t, s)
	pat := func(id, bsn string, active bool) string {
		return fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"profile":["x"]},"identifier":[{"system":%q,"value":%q}],"active":%v}`, id, bsnSys, bsn, active)
	}
	obs := `{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"` + loinc + `","code":"8867-4"}]}}`

	got := outcomes(load(t, l, tenantA, pat("p1", "111", true), obs))
	if want := []string{"Patient/p1/1 created", "Observation/o1/1 created"}; !slices.Equal(got, want) {
		t.Fatalf("first load %v, want %v", got, want)
	}
	p1, err := s.Read(ctx, tenantA, "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	wantBody := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"` + p1.LastUpdated.Format(lastUpdatedLayout) +
		`","profile":["x"]},"identifier":[{"system":"` + bsnSys + `","value":"111"}],"active":true}`
	if string(p1.Body) != wantBody {
		t.Fatalf("body\n got %s\nwant %s", p1.Body, wantBody)
	}
	if n := count(t, s, tenantA, "Observation", url.Values{"patient.identifier": {bsnSys + "|111"}, "code": {loinc + "|8867-4"}}); n != 1 {
		t.Fatalf("chained search after load found %d", n)
	}

	// The same content again writes nothing; other content a new version.
	got = outcomes(load(t, l, tenantA, obs, pat("p1", "111", true)))
	if want := []string{"Observation/o1/1 unchanged", "Patient/p1/1 unchanged"}; !slices.Equal(got, want) {
		t.Fatalf("reload %v, want %v", got, want)
	}
	got = outcomes(load(t, l, tenantA, pat("p1", "222", false)))
	if want := []string{"Patient/p1/2 updated"}; !slices.Equal(got, want) {
		t.Fatalf("changed load %v, want %v", got, want)
	}
	if n := count(t, s, tenantA, "Patient", url.Values{"identifier": {bsnSys + "|111"}}); n != 0 {
		t.Fatalf("old index value still found (%d)", n)
	}
	if n := count(t, s, tenantA, "Patient", url.Values{"identifier": {bsnSys + "|222"}, "active": {"false"}}); n != 1 {
		t.Fatalf("new index value found %d times", n)
	}
	// A deleted resource loaded again comes back as a new version.
	if err := s.Delete(ctx, tenantA, "Observation", "o1"); err != nil {
		t.Fatal(err)
	}
	got = outcomes(load(t, l, tenantA, obs))
	if want := []string{"Observation/o1/3 created"}; !slices.Equal(got, want) {
		t.Fatalf("load of deleted %v, want %v", got, want)
	}
	if h, ok := s.(store.Historian); ok {
		page, err := h.History(ctx, tenantA, store.HistoryQuery{})
		if err != nil {
			t.Fatal(err)
		}
		got := versions(page.Versions)
		slices.Sort(got)
		want := []string{"Observation/o1/1", "Observation/o1/2-", "Observation/o1/3", "Patient/p1/1", "Patient/p1/2"}
		if !slices.Equal(got, want) {
			t.Fatalf("history %v, want %v", got, want)
		}
	}

	// Tenants stay apart: the same id for another tenant is its own.
	got = outcomes(load(t, l, tenantB, pat("p1", "111", true)))
	if want := []string{"Patient/p1/1 created"}; !slices.Equal(got, want) {
		t.Fatalf("other tenant %v, want %v", got, want)
	}
	if n := count(t, s, tenantA, "Patient", url.Values{"identifier": {bsnSys + "|111"}}); n != 0 {
		t.Fatalf("tenant A sees tenant B's patient")
	}
}

// testLoadInvalid checks that a load with one bad body writes nothing.
func testLoadInvalid(t *testing.T, open Opener) {
	s := open(t, fhir.STU3)
	l := loader(t, s)
	good := `{"resourceType":"Patient","id":"p1"}`
	for name, bad := range map[string]string{
		"no id":           `{"resourceType":"Patient"}`,
		"not json":        `{"resourceType":`,
		"unknown type":    `{"resourceType":"ServiceRequest","id":"s1"}`,
		"meta not object": `{"resourceType":"Patient","id":"p2","meta":[]}`,
		"twice":           `{"resourceType":"Patient","id":"p1","active":true}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := l.Load(context.Background(), tenantA, []json.RawMessage{json.RawMessage(good), json.RawMessage(bad)})
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	assertEmpty(t, s, tenantA)
	if _, err := l.Load(context.Background(), tenantA, nil); err != nil {
		t.Fatalf("empty load: %v", err)
	}
}

// testLoadSameAsWrites loads demo patients in bulk into one store and one
// resource at a time into another, and compares what the BgZ searches of
// each patient answer.
func testLoadSameAsWrites(t *testing.T, open Opener) {
	if testing.Short() {
		t.Skip("generates demo patients")
	}
	ctx := context.Background()
	bulk, single := open(t, fhir.STU3), open(t, fhir.STU3)
	l := loader(t, bulk)
	var patients []BenchPatient
	// Template patients and a copy of one (other ids, other BSN).
	for _, i := range []int{0, 1, 2, 3, templateCount + 1} {
		p, err := BenchData(i)
		if err != nil {
			t.Fatal(err)
		}
		patients = append(patients, p)
	}
	for _, p := range patients {
		// One load per patient: practices and hospitals shared between
		// patients are created by the first and unchanged after.
		seen := map[string]bool{}
		var bodies []json.RawMessage
		for _, r := range p.Resources {
			var head struct{ ResourceType, ID string }
			if err := json.Unmarshal(r, &head); err != nil {
				t.Fatal(err)
			}
			if k := head.ResourceType + "/" + head.ID; !seen[k] {
				seen[k] = true
				bodies = append(bodies, r)
			}
			// What an import does one resource at a time: unchanged
			// content gets no new version.
			if cur, err := single.Read(ctx, tenantA, head.ResourceType, head.ID); err == nil && fhir.SameContent(cur.Body, r) {
				continue
			}
			if _, _, err := single.Update(ctx, tenantA, r, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Load(ctx, tenantA, bodies); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range patients {
		qs, err := bgzQueries(p.BSN)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, q := range qs {
			a, err := bulk.Search(ctx, tenantA, q.q)
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			b, err := single.Search(ctx, tenantA, q.q)
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			if ga, gb := pageContent(t, a), pageContent(t, b); ga != gb {
				t.Fatalf("patient %s, %s:\n bulk   %s\n single %s", p.PatientID, q.name, ga, gb)
			}
			found += a.Total
		}
		if found == 0 {
			t.Fatalf("patient %s: the BgZ searches found nothing", p.PatientID)
		}
	}
}

// pageContent renders a page as its total and its resources, bodies without
// meta.versionId and meta.lastUpdated, sorted: matches that tie on the
// search's order fall back to lastUpdated, which a bulk load stamps the same
// for all resources of a batch and single writes do not.
func pageContent(t *testing.T, p store.Page) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "total %d next %d;", p.Total, p.NextOffset)
	for _, set := range [][]store.Resource{p.Matches, p.Included} {
		var items []string
		for _, r := range set {
			var doc map[string]any
			if err := json.Unmarshal(r.Body, &doc); err != nil {
				t.Fatal(err)
			}
			if m, ok := doc["meta"].(map[string]any); ok {
				delete(m, "versionId")
				delete(m, "lastUpdated")
			}
			body, _ := json.Marshal(doc)
			items = append(items, fmt.Sprintf("%s/%s/%s %s", r.Type, r.ID, r.VersionID, body))
		}
		slices.Sort(items)
		b.WriteString(" " + strings.Join(items, " ") + " |")
	}
	return b.String()
}
