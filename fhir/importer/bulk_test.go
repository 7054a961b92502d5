package importer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

// bulkAll adds docs to a bulk import with small batches and finishes it.
func bulkAll(t *testing.T, st store.Store, batch int, docs ...string) (*importer.Summary, error) {
	t.Helper()
	sum := &importer.Summary{}
	bk, err := newImporter(t, st).NewBulk(sum, importer.BulkOptions{BatchResources: batch})
	if err != nil {
		t.Fatal(err)
	}
	var first error
	for i, d := range docs {
		if err := bk.Add(context.Background(), "doc"+string(rune('0'+i)), []byte(d)); err != nil && first == nil {
			first = err
		}
	}
	if err := bk.Finish(context.Background()); err != nil && first == nil {
		first = err
	}
	return sum, first
}

func TestBulkSameAsImport(t *testing.T) {
	patients, err := demo.Generate(demo.Options{Count: 12, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, p := range patients {
		docs = append(docs, string(demo.TransactionBundle(p)))
	}
	for name, open := range testStores() {
		t.Run(name, func(t *testing.T) { testBulkSameAsImport(t, open, docs) })
	}
}

func testBulkSameAsImport(t *testing.T, open func(t *testing.T) store.Store, docs []string) {
	one := open(t)
	want := &importer.Summary{}
	for i, d := range docs {
		if err := newImporter(t, one).Import(context.Background(), "doc"+string(rune('0'+i)), []byte(d), want); err != nil {
			t.Fatal(err)
		}
	}
	bulk := open(t)
	// Batches of ~100 resources: shared practices recur within a batch and
	// across batches.
	got, err := bulkAll(t, bulk, 100, docs...)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total() != want.Total() || got.Files != want.Files {
		t.Fatalf("bulk %+v (%d files), one by one %+v (%d files)", got.Total(), got.Files, want.Total(), want.Files)
	}
	for _, typ := range got.TypeNames() {
		if got.Types[typ] != want.Types[typ] {
			t.Errorf("%s: bulk %+v, one by one %+v", typ, got.Types[typ], want.Types[typ])
		}
		if a, b := count(t, bulk, typ), count(t, one, typ); a != b {
			t.Errorf("%s: bulk store holds %d, the other %d", typ, a, b)
		}
	}
	// Again: nothing written, no new versions.
	again, err := bulkAll(t, bulk, 100, docs...)
	if err != nil {
		t.Fatal(err)
	}
	if c := again.Total(); c.Unchanged != c.Sum() || c.Sum() != want.Total().Sum() {
		t.Fatalf("re-run %+v", c)
	}
	h, err := bulk.(store.Historian).History(context.Background(), tenant, store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Total != want.Total().Created {
		t.Fatalf("%d versions after the re-run, want %d", h.Total, want.Total().Created)
	}
}

func TestBulkOrder(t *testing.T) {
	pat := func(active string) string {
		return `{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999909587"}],"active":` + active + `}`
	}
	// A conditional create must find the patient queued before it, a
	// DELETE must remove it, and another content of a queued resource
	// becomes its next version.
	condCreate := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:5e0b5e32-0000-4000-8000-000000000009",
		"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://fhir.nl/fhir/NamingSystem/bsn|999909587"}}]}`
	del := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Organization/o1"}}]}`
	st := openStore(t)
	sum, err := bulkAll(t, st, 1000, pat("true"), condCreate, `{"resourceType":"Organization","id":"o1"}`, del, pat("false"), pat("false"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sum.Types["Patient"], (importer.Counts{Created: 1, Updated: 1, Unchanged: 2}); got != want {
		t.Errorf("patients %+v, want %+v", got, want)
	}
	if got, want := sum.Types["Organization"], (importer.Counts{Created: 1, Deleted: 1}); got != want {
		t.Errorf("organizations %+v, want %+v", got, want)
	}
	if n := count(t, st, "Patient"); n != 1 {
		t.Errorf("%d patients", n)
	}
	if doc := read(t, st, "Patient", "p1"); doc["active"] != false || doc["meta"].(map[string]any)["versionId"] != "2" {
		t.Errorf("p1 is %v", doc)
	}
}

func TestBulkFailingBatch(t *testing.T) {
	for name, open := range testStores() {
		t.Run(name, func(t *testing.T) { testBulkFailingBatch(t, open(t)) })
	}
}

// testStores are the stores the bulk tests run on: SQLite, and PostgreSQL
// when $SCHAKEL_TEST_POSTGRES is set.
func testStores() map[string]func(t *testing.T) store.Store {
	stores := map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store { return openStore(t) },
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		stores["postgres"] = func(t *testing.T) store.Store { return openPostgres(t, dsn) }
	}
	return stores
}

func testBulkFailingBatch(t *testing.T, st store.Store) {
	good := func(id string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"` + id + `"},"request":{"method":"PUT","url":"Patient/` + id + `"}}]}`
	}
	// Accepted by the importer, refused by the store (meta is no object):
	// the batch fails and is written again document by document.
	bad := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Patient","id":"b1"},"request":{"method":"PUT","url":"Patient/b1"}},
		{"resource":{"resourceType":"Patient","id":"b2","meta":[]},"request":{"method":"PUT","url":"Patient/b2"}}]}`
	sum, err := bulkAll(t, st, 1000, good("a1"), bad, good("a2"))
	var p importer.Problem
	if !errors.As(err, &p) || !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("error %v", err)
	}
	if sum.Failed != 1 || len(sum.Problems) != 1 || sum.Problems[0].File != "doc1" || sum.Problems[0].Location != "Bundle.entry[1]" {
		t.Errorf("problems %+v", sum.Problems)
	}
	if got := sum.Total(); got != (importer.Counts{Created: 2}) {
		t.Errorf("counts %+v", got)
	}
	if n := count(t, st, "Patient"); n != 2 {
		t.Errorf("%d patients stored, want a1 and a2", n)
	}
}

// TestBulkDurable checks that a finished import is in the database file
// itself, not only in the WAL that synchronous=NORMAL leaves unsynced.
func TestBulkDurable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fhir.db")
	st, err := sqlite.Open(context.Background(), path, fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := bulkAll(t, st, 1000, patient); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := sqlite.Open(context.Background(), copyPath, fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if _, err := cp.Read(context.Background(), tenant, "Patient", "p1"); err != nil {
		t.Fatalf("the database file without its WAL lacks the import: %v", err)
	}
}

func TestNewBulkNeedsLoader(t *testing.T) {
	im := newImporter(t, noLoader{openStore(t)})
	if _, err := im.NewBulk(&importer.Summary{}, importer.BulkOptions{}); err == nil || !strings.Contains(err.Error(), "bulk") {
		t.Fatalf("error %v", err)
	}
}

// noLoader hides the store's bulk load.
type noLoader struct{ store.Store }
