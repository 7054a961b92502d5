package importer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

const tenant = "00000001"

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhir.db"), fhir.STU3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newImporter(t testing.TB, st store.Store) *importer.Importer {
	t.Helper()
	im, err := importer.New(importer.Config{Store: st, Version: fhir.STU3, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func read(t *testing.T, st store.Store, typ, id string) map[string]any {
	t.Helper()
	res, err := st.Read(context.Background(), tenant, typ, id)
	if err != nil {
		t.Fatalf("read %s/%s: %v", typ, id, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(res.Body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func count(t *testing.T, st store.Store, typ string) int {
	t.Helper()
	page, err := st.Search(context.Background(), tenant, store.Query{Type: typ, Params: map[string][]string{}})
	if err != nil {
		t.Fatal(err)
	}
	return page.Total
}

const patient = `{"resourceType":"Patient","id":"p1","meta":{"profile":["http://fhir.nl/fhir/StructureDefinition/nl-core-patient"]},"identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999909587"}],"birthDate":"1954-07-25"}`

// transaction has two urn:uuid entries, one referring to the other, and a
// PUT with an id of its own.
const transaction = `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:5e0b5e32-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911259"}]},"request":{"method":"POST","url":"Patient"}},
 {"fullUrl":"urn:uuid:5e0b5e32-0000-4000-8000-000000000002","resource":{"resourceType":"Condition","subject":{"reference":"urn:uuid:5e0b5e32-0000-4000-8000-000000000001","display":"B"},"code":{"text":"x","coding":[{"system":"http://snomed.info/sct","code":"1.50"}]}},"request":{"method":"POST","url":"Condition"}},
 {"resource":{"resourceType":"Organization","id":"org1","name":"Ziekenhuis"},"request":{"method":"PUT","url":"Organization/org1"}}
]}`

func TestSingleResourceIdempotent(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	im := newImporter(t, st)
	steps := []struct {
		name string
		doc  string
		want importer.Counts
		ver  string
	}{
		{"first import creates", patient, importer.Counts{Created: 1}, "1"},
		{"same content again is unchanged", patient, importer.Counts{Unchanged: 1}, "1"},
		{"reordered members and whitespace are unchanged", `{ "birthDate":"1954-07-25", "resourceType":"Patient","id":"p1",
			"identifier":[{"value":"999909587","system":"http://fhir.nl/fhir/NamingSystem/bsn"}],"meta":{"profile":["http://fhir.nl/fhir/StructureDefinition/nl-core-patient"]}}`, importer.Counts{Unchanged: 1}, "1"},
		{"changed content is a new version", strings.Replace(patient, "1954-07-25", "1954-07-26", 1), importer.Counts{Updated: 1}, "2"},
		{"a changed profile is a change", strings.Replace(patient, "nl-core-patient", "BgZ-Patient", 1), importer.Counts{Updated: 1}, "3"},
	}
	for _, s := range steps {
		sum := &importer.Summary{}
		if err := im.Import(ctx, "p.json", []byte(s.doc), sum); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := sum.Total(); got != s.want {
			t.Errorf("%s: counts %+v, want %+v", s.name, got, s.want)
		}
		res, err := st.Read(ctx, tenant, "Patient", "p1")
		if err != nil {
			t.Fatal(err)
		}
		if res.VersionID != s.ver {
			t.Errorf("%s: version %s, want %s", s.name, res.VersionID, s.ver)
		}
	}
}

func TestTransactionDeterministicIDs(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	im := newImporter(t, st)
	sum := &importer.Summary{}
	if err := im.Import(ctx, "tx.json", []byte(transaction), sum); err != nil {
		t.Fatal(err)
	}
	if got := sum.Total(); got != (importer.Counts{Created: 3}) {
		t.Fatalf("counts %+v", got)
	}
	page, err := st.Search(ctx, tenant, store.Query{Type: "Condition", Params: map[string][]string{}})
	if err != nil || len(page.Matches) != 1 {
		t.Fatalf("conditions: %v %d", err, len(page.Matches))
	}
	var cond struct {
		Subject struct{ Reference, Display string }
		Code    json.RawMessage
	}
	if err := json.Unmarshal(page.Matches[0].Body, &cond); err != nil {
		t.Fatal(err)
	}
	patID, ok := strings.CutPrefix(cond.Subject.Reference, "Patient/")
	if !ok {
		t.Fatalf("reference not rewritten: %q", cond.Subject.Reference)
	}
	if cond.Subject.Display != "B" {
		t.Errorf("display lost: %q", cond.Subject.Display)
	}
	if string(cond.Code) != `{"text":"x","coding":[{"system":"http://snomed.info/sct","code":"1.50"}]}` {
		t.Errorf("content not kept byte for byte: %s", cond.Code)
	}
	read(t, st, "Patient", patID)
	read(t, st, "Organization", "org1")
	condID := page.Matches[0].ID

	// A second run, in a fresh importer, assigns the same ids and writes nothing.
	sum = &importer.Summary{}
	if err := newImporter(t, st).Import(ctx, "tx.json", []byte(transaction), sum); err != nil {
		t.Fatal(err)
	}
	if got := sum.Total(); got != (importer.Counts{Unchanged: 3}) {
		t.Fatalf("re-run counts %+v", got)
	}
	if n := count(t, st, "Condition"); n != 1 {
		t.Errorf("%d conditions after re-run", n)
	}
	res, err := st.Read(ctx, tenant, "Condition", condID)
	if err != nil || res.VersionID != "1" {
		t.Errorf("condition after re-run: %v, version %s", err, res.VersionID)
	}
	if sum.Types["Patient"] != (importer.Counts{Unchanged: 1}) || sum.Types["Condition"] != (importer.Counts{Unchanged: 1}) {
		t.Errorf("per type: %+v", sum.Types)
	}
}

func TestBundleKinds(t *testing.T) {
	cases := []struct {
		name      string
		doc       string
		want      importer.Counts
		wantErr   error
		wantLoc   string
		wantTypes map[string]int // resources in the store afterwards
	}{
		{
			name: "collection with absolute fullUrls",
			doc: `{"resourceType":"Bundle","type":"collection","entry":[
				{"fullUrl":"http://ehr.example/fhir/Patient/a","resource":{"resourceType":"Patient","id":"a"}},
				{"fullUrl":"http://ehr.example/fhir/Flag/f","resource":{"resourceType":"Flag","id":"f","status":"active","subject":{"reference":"http://ehr.example/fhir/Patient/a"},"code":{"text":"x"}}}]}`,
			want:      importer.Counts{Created: 2},
			wantTypes: map[string]int{"Patient": 1, "Flag": 1},
		},
		{
			name: "searchset skips the outcome entry",
			doc: `{"resourceType":"Bundle","type":"searchset","entry":[
				{"fullUrl":"http://x/fhir/Patient/a","resource":{"resourceType":"Patient","id":"a"},"search":{"mode":"match"}},
				{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"informational"}]},"search":{"mode":"outcome"}}]}`,
			want:      importer.Counts{Created: 1},
			wantTypes: map[string]int{"Patient": 1, "OperationOutcome": 0},
		},
		{
			name: "transaction with an invalid entry writes nothing",
			doc: `{"resourceType":"Bundle","type":"transaction","entry":[
				{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/a"}},
				{"resource":{"resourceType":"Patient","id":"b"},"request":{"method":"PUT","url":"Flag/b"}}]}`,
			wantErr:   importer.ErrInput,
			wantLoc:   "Bundle.entry[1]",
			wantTypes: map[string]int{"Patient": 0},
		},
		{
			name: "transaction with a failing conditional update writes nothing",
			doc: `{"resourceType":"Bundle","type":"transaction","entry":[
				{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/a"}},
				{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient?no-such-param=1"}}]}`,
			wantErr:   store.ErrInvalidSearch,
			wantLoc:   "Bundle.entry[1]",
			wantTypes: map[string]int{"Patient": 0},
		},
		{
			name: "batch entries fail alone",
			doc: `{"resourceType":"Bundle","type":"batch","entry":[
				{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/a"}},
				{"resource":{"resourceType":"NoSuchType","id":"b"},"request":{"method":"PUT","url":"Patient/b"}},
				{"request":{"method":"GET","url":"Patient/a"}},
				{"resource":{"resourceType":"Patient","id":"c"},"request":{"method":"PUT","url":"Patient/c"}}]}`,
			want:      importer.Counts{Created: 2},
			wantErr:   importer.ErrInput,
			wantLoc:   "Bundle.entry[1]",
			wantTypes: map[string]int{"Patient": 2},
		},
		{
			name: "transaction PUT with its own id",
			doc: `{"resourceType":"Bundle","type":"transaction","entry":[
				{"resource":{"resourceType":"Patient","id":"seed","identifier":[{"system":"urn:s","value":"1"}]},"request":{"method":"PUT","url":"Patient/seed"}}]}`,
			want:      importer.Counts{Created: 1},
			wantTypes: map[string]int{"Patient": 1},
		},
		{
			name:    "history bundles are refused",
			doc:     `{"resourceType":"Bundle","type":"history","entry":[]}`,
			wantErr: importer.ErrUnsupported,
			wantLoc: "Bundle.type",
		},
		{
			name:      "document bundles are kept whole",
			doc:       `{"resourceType":"Bundle","id":"doc1","type":"document","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Composition","status":"final"}}]}`,
			want:      importer.Counts{Created: 1},
			wantTypes: map[string]int{"Bundle": 1, "Composition": 0},
		},
		{
			name:    "R4 resource type into an STU3 store",
			doc:     `{"resourceType":"ServiceRequest","id":"s","status":"active","intent":"order","subject":{"reference":"Patient/a"}}`,
			wantErr: importer.ErrVersion,
		},
		{
			name:    "R4 elements into an STU3 store",
			doc:     `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"encounter":{"reference":"Encounter/e"}}`,
			wantErr: importer.ErrVersion,
		},
		{
			name:    "not FHIR",
			doc:     `[1,2,3]`,
			wantErr: importer.ErrInput,
		},
		{
			name:    "invalid id",
			doc:     `{"resourceType":"Patient","id":"no spaces allowed"}`,
			wantErr: importer.ErrInput,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			sum := &importer.Summary{}
			err := newImporter(t, st).Import(context.Background(), "in.json", []byte(tc.doc), sum)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("error %v", err)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				var p importer.Problem
				if !errors.As(err, &p) || p.File != "in.json" || p.Location != tc.wantLoc {
					t.Errorf("problem %#v, want location %q", p, tc.wantLoc)
				}
				if sum.Failed != 1 || len(sum.Problems) == 0 {
					t.Errorf("summary %+v", sum)
				}
			}
			if got := sum.Total(); got != tc.want {
				t.Errorf("counts %+v, want %+v", got, tc.want)
			}
			for typ, n := range tc.wantTypes {
				if got := count(t, st, typ); got != n {
					t.Errorf("%d %s stored, want %d", got, typ, n)
				}
			}
		})
	}
}

func TestConditionalAndDelete(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	im := newImporter(t, st)
	seed := `{"resourceType":"Patient","id":"seed","identifier":[{"system":"urn:s","value":"1"}]}`
	if err := im.Import(ctx, "seed.json", []byte(seed), &importer.Summary{}); err != nil {
		t.Fatal(err)
	}
	doc := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:aa","resource":{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"1"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:s|1"}},
		{"fullUrl":"urn:uuid:bb","resource":{"resourceType":"Flag","status":"active","code":{"text":"x"},"subject":{"reference":"urn:uuid:aa"}},"request":{"method":"POST","url":"Flag"}},
		{"resource":{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"1"}],"gender":"male"},"request":{"method":"PUT","url":"Patient?identifier=urn:s|1"}},
		{"request":{"method":"DELETE","url":"Organization/gone"}}]}`
	sum := &importer.Summary{}
	if err := im.Import(ctx, "tx.json", []byte(doc), sum); err != nil {
		t.Fatal(err)
	}
	want := map[string]importer.Counts{
		"Patient":      {Unchanged: 1, Updated: 1},
		"Flag":         {Created: 1},
		"Organization": {Unchanged: 1},
	}
	for typ, c := range want {
		if sum.Types[typ] != c {
			t.Errorf("%s: %+v, want %+v", typ, sum.Types[typ], c)
		}
	}
	if n := count(t, st, "Patient"); n != 1 {
		t.Errorf("%d patients", n)
	}
	if g := read(t, st, "Patient", "seed")["gender"]; g != "male" {
		t.Errorf("conditional update missed: gender %v", g)
	}
	page, _ := st.Search(ctx, tenant, store.Query{Type: "Flag", Params: map[string][]string{}})
	if len(page.Matches) != 1 || !strings.Contains(string(page.Matches[0].Body), `"reference":"Patient/seed"`) {
		t.Errorf("flag does not refer to the matched patient: %+v", page.Matches)
	}

	del := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Patient/seed"}}]}`
	for i, want := range []importer.Counts{{Deleted: 1}, {Unchanged: 1}} {
		sum := &importer.Summary{}
		if err := im.Import(ctx, "del.json", []byte(del), sum); err != nil {
			t.Fatal(err)
		}
		if sum.Total() != want {
			t.Errorf("delete run %d: %+v, want %+v", i, sum.Total(), want)
		}
	}
	if _, err := st.Read(ctx, tenant, "Patient", "seed"); !errors.Is(err, store.ErrDeleted) {
		t.Errorf("read after delete: %v", err)
	}
}

func TestNDJSON(t *testing.T) {
	st := openStore(t)
	doc := `{"resourceType":"Patient","id":"a"}
{"resourceType":"Patient","id":"b"}

{"resourceType":"Patient","id":"c"
{"resourceType":"Flag","id":"f","status":"active","code":{"text":"x"}}
`
	sum := &importer.Summary{}
	err := newImporter(t, st).Import(context.Background(), "bulk.ndjson", []byte(doc), sum)
	var p importer.Problem
	if !errors.As(err, &p) || p.Location != "line 4" {
		t.Fatalf("error %v, want a problem at line 4", err)
	}
	if got := sum.Total(); got != (importer.Counts{Created: 3}) {
		t.Errorf("counts %+v", got)
	}
}

// TestDuplicateKeys: a document with a property twice is refused whole, at
// the location of the duplicate; other lines of an NDJSON file still load.
func TestDuplicateKeys(t *testing.T) {
	st := openStore(t)
	doc := `{"resourceType":"Patient","id":"a"}
{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"b","gender":"male","gender":"female"},"request":{"method":"PUT","url":"Patient/b"}}]}
{"resourceType":"Patient","id":"c"}
`
	sum := &importer.Summary{}
	err := newImporter(t, st).Import(context.Background(), "bulk.ndjson", []byte(doc), sum)
	var p importer.Problem
	if !errors.As(err, &p) || p.Location != "line 2 Bundle.entry[0].resource.gender" || !errors.Is(err, importer.ErrInput) {
		t.Fatalf("error %v, want an input problem at line 2 Bundle.entry[0].resource.gender", err)
	}
	if len(sum.Problems) != 1 {
		t.Errorf("problems %v", sum.Problems)
	}
	if got := sum.Total(); got != (importer.Counts{Created: 2}) {
		t.Errorf("counts %+v", got)
	}
	if _, err := st.Read(context.Background(), tenant, "Patient", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Patient/b was stored: %v", err)
	}
}

func TestXMLUsesDecoder(t *testing.T) {
	st := openStore(t)
	var gotVersion fhir.Version
	im, err := importer.New(importer.Config{Store: st, Version: fhir.STU3, Tenant: tenant,
		DecodeXML: func(v fhir.Version, data []byte) (json.RawMessage, error) {
			gotVersion = v
			if !strings.Contains(string(data), `<Patient xmlns="http://hl7.org/fhir">`) {
				return nil, fmt.Errorf("unexpected input")
			}
			return json.RawMessage(patient), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	sum := &importer.Summary{}
	xmlDoc := "\xef\xbb\xbf<?xml version=\"1.0\"?>\n<!-- c --><Patient xmlns=\"http://hl7.org/fhir\"><id value=\"p1\"/></Patient>"
	if err := im.Import(context.Background(), "p.xml", []byte(xmlDoc), sum); err != nil {
		t.Fatal(err)
	}
	if gotVersion != fhir.STU3 || sum.Total() != (importer.Counts{Created: 1}) {
		t.Errorf("version %s, counts %+v", gotVersion, sum.Total())
	}
	// An R4-only root element is refused before decoding.
	err = im.Import(context.Background(), "s.xml", []byte(`<ServiceRequest xmlns="http://hl7.org/fhir"/>`), sum)
	if !errors.Is(err, importer.ErrVersion) {
		t.Errorf("R4 XML: %v", err)
	}
}

func TestImportFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("a.json", patient)
	write("b/bad.json", `{"resourceType":`)
	write("b/tx.json", transaction)
	write("b/readme.txt", "not imported")
	write(".hidden/x.json", patient)
	files, err := importer.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.json"), filepath.Join(dir, "b/bad.json"), filepath.Join(dir, "b/tx.json")}
	if strings.Join(files, "\n") != strings.Join(want, "\n") {
		t.Fatalf("files %q, want %q", files, want)
	}

	t.Run("lenient", func(t *testing.T) {
		st := openStore(t)
		var seen []string
		sum, err := newImporter(t, st).ImportFiles(context.Background(), files, importer.RunOptions{
			OnFile: func(path string, err error) {
				seen = append(seen, fmt.Sprintf("%s:%v", filepath.Base(path), err != nil))
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Files != 3 || sum.Failed != 1 || len(sum.Problems) != 1 || sum.Problems[0].File != want[1] {
			t.Errorf("summary %+v", sum)
		}
		if got := sum.Total(); got != (importer.Counts{Created: 4}) {
			t.Errorf("counts %+v", got)
		}
		if strings.Join(seen, " ") != "a.json:false bad.json:true tx.json:false" {
			t.Errorf("progress %v", seen)
		}
	})
	t.Run("strict", func(t *testing.T) {
		st := openStore(t)
		sum, err := newImporter(t, st).ImportFiles(context.Background(), files, importer.RunOptions{Strict: true})
		if !errors.Is(err, importer.ErrInput) {
			t.Fatalf("error %v", err)
		}
		if sum.Files != 2 || count(t, st, "Organization") != 0 {
			t.Errorf("strict went on after the failure: %+v", sum)
		}
	})
	t.Run("size limit", func(t *testing.T) {
		st := openStore(t)
		im, _ := importer.New(importer.Config{Store: st, Version: fhir.STU3, Tenant: tenant, MaxFileBytes: 10})
		sum, _ := im.ImportFiles(context.Background(), files[:1], importer.RunOptions{})
		if sum.Failed != 1 || !errors.Is(sum.Problems[0], importer.ErrInput) {
			t.Errorf("summary %+v", sum)
		}
	})
}

func TestConfig(t *testing.T) {
	st := openStore(t)
	for _, cfg := range []importer.Config{
		{Version: fhir.STU3, Tenant: tenant},
		{Store: st, Version: "dstu2", Tenant: tenant},
		{Store: st, Version: fhir.STU3},
		{Store: st, Version: fhir.STU3, Tenant: tenant, MaxFileBytes: -1},
	} {
		if _, err := importer.New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

// failingStore fails the write of one id, inside or outside a transaction,
// to show that a transaction Bundle failing in the store writes nothing.
type failingStore struct {
	*sqlite.Store
	failID string
}

func (s failingStore) InTx(ctx context.Context, tenant string, fn func(tx store.Tx) error) error {
	return s.Store.InTx(ctx, tenant, func(tx store.Tx) error { return fn(failingTx{tx, s.failID}) })
}

type failingTx struct {
	store.Tx
	failID string
}

func (tx failingTx) Update(ctx context.Context, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	if strings.Contains(string(body), `"id":"`+tx.failID+`"`) {
		return store.Resource{}, false, fmt.Errorf("%w: refused by the test", store.ErrInvalid)
	}
	return tx.Tx.Update(ctx, body, ifMatch)
}

func TestTransactionRollback(t *testing.T) {
	st := failingStore{openStore(t), "boom"}
	doc := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":{"resourceType":"Organization","id":"ok","type":[{"text":"hospital"}]},"request":{"method":"PUT","url":"Organization/ok"}},
		{"resource":{"resourceType":"Organization","id":"boom"},"request":{"method":"PUT","url":"Organization/boom"}}]}`
	sum := &importer.Summary{}
	err := newImporter(t, st).Import(context.Background(), "tx.json", []byte(doc), sum)
	var p importer.Problem
	if !errors.As(err, &p) || p.Location != "Bundle.entry[1]" || !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("error %v", err)
	}
	if n := count(t, st, "Organization"); n != 0 || sum.Total().Sum() != 0 {
		t.Errorf("%d organisations stored, counts %+v: the failed transaction was not rolled back", n, sum.Total())
	}
	// The same resource alone (a resource with an array "type") imports.
	one := `{"resourceType":"Organization","id":"ok","type":[{"text":"hospital"}]}`
	if err := newImporter(t, st).Import(context.Background(), "o.json", []byte(one), sum); err != nil {
		t.Fatal(err)
	}
}
