package bgz_test

// Acceptance test against the Nictiz BgZ MSZ 2.0 qualification fixtures
// (testdata/nictiz-bgz-msz-2.0, see its README for the source): every
// fixture is imported with fhir/importer into a fresh store, served by
// fhir/rest on a real listener, and every BgZ query is run for the fixture
// patients. What each answer must hold follows the Nictiz serving
// testscripts (BgZ-MSZ-2-0 Cert/Serving-XIS*): a searchset Bundle with a
// self link carrying every parameter of the request (all parameters
// handled), absolute fullUrls that agree with the resource id, meta.profile
// on every resource, total not above the number of matches, and exactly the
// patient's resources. The expected resources are computed here from the
// fixture XML itself (subject/patient references, codes, categories,
// statuses, effective dates, references followed by _include), not taken
// from the server's answer.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
)

const fixtureDir = "testdata/nictiz-bgz-msz-2.0"

// The fixture patients (README).
var fixturePatients = map[string]string{
	"A": "999909587", "B": "999911259", "E": "999906276", "F": "999906410", "G": "999911119",
}

// knownImportRepairs are fixture files the importer loads only after a
// repair, with what it repairs. The test fails when a repair is missing or
// one appears that is not listed.
var knownImportRepairs = map[string]string{
	// STU3 ProcedureRequest.performer is 0..1; this fixture has two
	// performer elements: the first is kept and the import says so.
	"zib-ProcedureRequest-msz-c0b2df96-6b45-11ec-0000-2.xml": "ProcedureRequest.performer: occurs more than once",
}

// knownImportProblems are fixture files the importer refuses, with why.
// They stay in the expectation: what they would add to an answer shows up
// as a known deviation.
var knownImportProblems = map[string]string{}

// knownDeviations are answers that differ from the fixtures' expectation
// for a reason outside this test's reach, keyed "Block patient". The test
// fails when one of them no longer differs, so the list stays honest.
var knownDeviations = map[string]string{}

// node is an XML element of a fixture, generically.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []node     `xml:",any"`
}

func (n node) value() string {
	for _, a := range n.Attrs {
		if a.Name.Local == "value" {
			return a.Value
		}
	}
	return ""
}

// all returns the elements at path (child names, any repetition).
func (n node) all(path ...string) []node {
	cur := []node{n}
	for _, name := range path {
		var next []node
		for _, c := range cur {
			for _, k := range c.Nodes {
				if k.XMLName.Local == name {
					next = append(next, k)
				}
			}
		}
		cur = next
	}
	return cur
}

func (n node) values(path ...string) []string {
	var out []string
	for _, e := range n.all(path...) {
		if v := e.value(); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (n node) first(path ...string) string {
	if vs := n.values(path...); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// codings returns "system|code" of the Codings under path (a CodeableConcept).
func (n node) codings(path ...string) []string {
	var out []string
	for _, c := range n.all(append(path, "coding")...) {
		out = append(out, c.first("system")+"|"+c.first("code"))
	}
	return out
}

// refs returns the "Type/id" references at path (Reference elements).
func (n node) refs(path ...string) []string {
	var out []string
	for _, r := range n.all(path...) {
		ref := r.first("reference")
		segs := strings.Split(ref, "/")
		if len(segs) >= 2 {
			out = append(out, segs[len(segs)-2]+"/"+segs[len(segs)-1])
		}
	}
	return out
}

type fixture struct {
	file     string
	key      string // Type/id
	typ      string
	profiles []string
	root     node
}

func loadFixtures(t *testing.T) (map[string]*fixture, []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("fixtures: %v (%d files)", err, len(files))
	}
	out := make(map[string]*fixture)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var root node
		if err := xml.Unmarshal(data, &root); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fx := &fixture{file: filepath.Base(f), typ: root.XMLName.Local, root: root, profiles: root.values("meta", "profile")}
		fx.key = fx.typ + "/" + root.first("id")
		out[fx.key] = fx
	}
	return out, files
}

// patientRef is the reference the "patient" search parameter of each BgZ
// resource type follows (STU3 search parameter definitions).
var patientRef = map[string]string{
	"Consent": "patient", "Observation": "subject", "Condition": "subject", "NutritionOrder": "patient",
	"Flag": "subject", "AllergyIntolerance": "patient", "MedicationStatement": "subject",
	"MedicationRequest": "subject", "MedicationDispense": "subject", "DeviceUseStatement": "subject",
	"Immunization": "patient", "Encounter": "subject", "Procedure": "subject",
	"ProcedureRequest": "subject", "CareTeam": "subject", "Coverage": "beneficiary",
}

// expectation is what one BgZ query must answer.
type expectation struct {
	matches, included []string // Type/id, sorted
}

// expect computes the answer to block b for the patient with the BSN from
// the fixtures alone.
func expect(fx map[string]*fixture, b bgz.Block, bsn string) expectation {
	patients := map[string]bool{}
	for k, f := range fx {
		if f.typ == "Patient" && slices.Contains(identifiers(f.root), "http://fhir.nl/fhir/NamingSystem/bsn|"+bsn) {
			patients[k] = true
		}
	}
	typ, _, params, err := bgz.ParseQuery(b.Query(bsn))
	if err != nil {
		panic(err)
	}
	ofPatient := func(f *fixture) bool {
		if f.typ == "Patient" {
			return patients[f.key]
		}
		for _, r := range f.root.refs(patientRef[f.typ]) {
			if patients[r] {
				return true
			}
		}
		return false
	}
	anyOf := func(have []string, want ...string) bool {
		for _, w := range want {
			if slices.Contains(have, w) {
				return true
			}
		}
		return false
	}
	split := func(p string) []string { return strings.Split(params.Get(p), ",") }
	var matches []*fixture
	for _, f := range fx {
		if f.typ != typ || !ofPatient(f) {
			continue
		}
		ok := true
		if params.Has("category") {
			ok = ok && anyOf(f.root.codings("category"), split("category")...)
		}
		if params.Has("code") {
			ok = ok && anyOf(f.root.codings("code"), split("code")...)
		}
		if params.Has("status") {
			ok = ok && f.root.first("status") == params.Get("status")
		}
		if ok {
			matches = append(matches, f)
		}
	}
	if strings.Contains(b.Template, "$lastn") {
		matches = lastN(matches)
	}
	var e expectation
	inMatches := map[string]bool{}
	for _, f := range matches {
		e.matches = append(e.matches, f.key)
		inMatches[f.key] = true
	}
	included := map[string]bool{}
	for _, inc := range params["_include"] {
		// Type:param; the element each BgZ _include follows (STU3).
		path := map[string][]string{
			"Patient:general-practitioner":   {"generalPractitioner"},
			"Coverage:payor":                 {"payor"},
			"MedicationStatement:medication": {"medicationReference"},
			"MedicationRequest:medication":   {"medicationReference"},
			"MedicationDispense:medication":  {"medicationReference"},
			"DeviceUseStatement:device":      {"device"},
			"Observation:related-target":     {"related", "target"},
			"Procedure:based-on":             {"basedOn"},
			"CareTeam:participant":           {"participant", "member"},
		}[inc]
		if path == nil {
			panic("no include path for " + inc)
		}
		for _, f := range matches {
			for _, r := range f.root.refs(path...) {
				if _, exists := fx[r]; exists && !inMatches[r] {
					included[r] = true
				}
			}
		}
	}
	for k := range included {
		e.included = append(e.included, k)
	}
	sort.Strings(e.matches)
	sort.Strings(e.included)
	return e
}

func identifiers(n node) []string {
	var out []string
	for _, id := range n.all("identifier") {
		out = append(out, id.first("system")+"|"+id.first("value"))
	}
	return out
}

// lastN keeps, per code (each system|code of Observation.code), the most
// recent Observation by effective[x]: what $lastn with max=1 answers.
func lastN(obs []*fixture) []*fixture {
	newest := map[string]*fixture{}
	for _, o := range obs {
		for _, c := range o.root.codings("code") {
			cur := newest[c]
			if cur == nil || effective(o).After(effective(cur)) ||
				(effective(o).Equal(effective(cur)) && o.key > cur.key) {
				newest[c] = o
			}
		}
	}
	seen := map[string]bool{}
	var out []*fixture
	for _, o := range newest {
		if !seen[o.key] {
			seen[o.key] = true
			out = append(out, o)
		}
	}
	return out
}

func effective(f *fixture) time.Time {
	v := f.root.first("effectiveDateTime")
	if v == "" {
		v = f.root.first("effectivePeriod", "start")
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t
		}
	}
	return time.Time{}
}

type nictizBackend struct {
	name string
	open func(t *testing.T) store.Store
}

func backends() []nictizBackend {
	out := []nictizBackend{{"sqlite", func(t *testing.T) store.Store {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fhir.db"), fhir.STU3)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}}}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		out = append(out, nictizBackend{"postgres", func(t *testing.T) store.Store { return openPostgres(t, dsn) }})
	}
	return out
}

// openPostgres opens a store in a fresh schema, dropped when t ends.
func openPostgres(t testing.TB, dsn string) store.Store {
	t.Helper()
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	schema := "bgztest_" + hex.EncodeToString(b[:])
	st, err := postgres.Open(ctx, dsn, fhir.STU3, postgres.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
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
	return st
}

func TestNictizBgZFixtures(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 425 XML fixtures")
	}
	fx, files := loadFixtures(t)
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			testNictiz(t, be.open(t), fx, files)
		})
	}
}

func testNictiz(t *testing.T, st store.Store, fx map[string]*fixture, files []string) {
	ctx := context.Background()
	const tenant = "00000099"
	im, err := importer.New(importer.Config{Store: st, Version: fhir.STU3, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := im.ImportFiles(ctx, files, importer.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	problems := map[string]bool{}
	for _, p := range sum.Problems {
		base := filepath.Base(p.File)
		problems[base] = true
		if want, known := knownImportProblems[base]; !known || !strings.Contains(p.Err.Error(), want) {
			t.Errorf("import: %v", p)
		}
	}
	for f := range knownImportProblems {
		if !problems[f] {
			t.Errorf("import of %s no longer fails: take it out of knownImportProblems", f)
		}
	}
	repaired := map[string]bool{}
	for _, w := range sum.Warnings {
		base := filepath.Base(w.File)
		repaired[base] = true
		if want, known := knownImportRepairs[base]; !known || !strings.Contains(w.Err.Error(), want) {
			t.Errorf("unexpected import repair: %v", w)
		}
	}
	for f := range knownImportRepairs {
		if !repaired[f] {
			t.Errorf("import of %s needs no repair now: take it out of knownImportRepairs", f)
		}
	}
	if got, want := sum.Total().Created, len(fx)-len(knownImportProblems); got != want {
		t.Errorf("import created %d resources, want %d (the distinct fixtures less the refused ones)", got, want)
	}

	srv := rest.New(rest.Config{Store: st, Version: fhir.STU3, Logger: slog.New(slog.DiscardHandler)})
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/stu3/{ura}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		srv.Serve(w, r, r.PathValue("ura"), "http://"+r.Host+"/fhir/stu3/"+r.PathValue("ura"), r.PathValue("path"))
	})
	hs := httptest.NewServer(mux)
	defer hs.Close()
	base := hs.URL + "/fhir/stu3/" + tenant

	names := make([]string, 0, len(fixturePatients))
	for n := range fixturePatients {
		names = append(names, n)
	}
	sort.Strings(names)
	differs := map[string]bool{}
	expected := 0
	for _, name := range names {
		bsn := fixturePatients[name]
		for _, b := range bgz.Queries() {
			key := b.Name + " " + name
			got, problems := runQuery(t, base, b.Query(bsn), fx)
			want := expect(fx, b, bsn)
			if !slices.Equal(got.matches, want.matches) {
				problems = append(problems, "matches "+strings.Join(got.matches, " ")+"; want "+strings.Join(want.matches, " "))
			}
			if !slices.Equal(got.included, want.included) {
				problems = append(problems, "included "+strings.Join(got.included, " ")+"; want "+strings.Join(want.included, " "))
			}
			expected += len(want.matches) + len(want.included)
			if len(problems) == 0 {
				continue
			}
			differs[key] = true
			if reason, known := knownDeviations[key]; known {
				t.Logf("%s (known: %s): %s", key, reason, strings.Join(problems, "; "))
				continue
			}
			t.Errorf("%s: %s\n  query %s", key, strings.Join(problems, "\n  "), b.Query(bsn))
		}
	}
	if expected < 300 {
		t.Errorf("the fixtures let only %d resources be expected over all queries: the expectation is broken", expected)
	}
	for key := range knownDeviations {
		if !differs[key] {
			t.Errorf("%s answers as expected now: take it out of knownDeviations", key)
		}
	}
}

type bundleDoc struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

// runQuery runs one BgZ query and checks what the Nictiz serving
// testscripts assert of every answer; it returns the resources found and
// the problems seen.
func runQuery(t *testing.T, base, query string, fx map[string]*fixture) (expectation, []string) {
	t.Helper()
	var problems []string
	resp, err := http.Get(base + "/" + query)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return expectation{}, []string{"HTTP " + resp.Status + ": " + string(body)}
	}
	var b bundleDoc
	if err := json.Unmarshal(body, &b); err != nil {
		return expectation{}, []string{"answer is not JSON: " + err.Error()}
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" {
		problems = append(problems, "not a searchset Bundle: "+b.ResourceType+" "+b.Type)
	}
	self := ""
	for _, l := range b.Link {
		if l.Relation == "self" {
			self = l.URL
		}
	}
	_, _, asked, _ := bgz.ParseQuery(query)
	if su, err := url.Parse(self); self == "" || err != nil {
		problems = append(problems, "no self link")
	} else if used := su.Query(); !sameParams(used, asked) {
		problems = append(problems, "self link "+self+" does not carry the query's parameters")
	}
	var got expectation
	matches := 0
	for _, e := range b.Entry {
		if e.Search.Mode == "outcome" {
			problems = append(problems, "OperationOutcome entry (a parameter not handled): "+string(e.Resource))
			continue
		}
		var r struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Meta         struct {
				Profile []string `json:"profile"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(e.Resource, &r); err != nil {
			problems = append(problems, "entry resource: "+err.Error())
			continue
		}
		key := r.ResourceType + "/" + r.ID
		if e.FullURL != base+"/"+key {
			problems = append(problems, "entry "+key+": fullUrl "+e.FullURL)
		}
		if f := fx[key]; f == nil {
			problems = append(problems, "entry "+key+" is no fixture")
		} else if !slices.Equal(r.Meta.Profile, f.profiles) || len(r.Meta.Profile) == 0 {
			problems = append(problems, "entry "+key+": meta.profile "+strings.Join(r.Meta.Profile, " ")+", fixture has "+strings.Join(f.profiles, " "))
		}
		switch e.Search.Mode {
		case "match":
			matches++
			got.matches = append(got.matches, key)
		case "include":
			got.included = append(got.included, key)
		default:
			problems = append(problems, "entry "+key+": search.mode "+e.Search.Mode)
		}
	}
	if b.Total == nil || *b.Total > matches {
		problems = append(problems, "Bundle.total missing or above the number of matches")
	}
	sort.Strings(got.matches)
	sort.Strings(got.included)
	return got, problems
}

// sameParams compares parameters after decoding, the order of
// comma-separated alternatives aside.
func sameParams(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, vs := range b {
		ws := a[k]
		if len(ws) != len(vs) {
			return false
		}
		for i := range vs {
			x := strings.Split(vs[i], ",")
			y := strings.Split(ws[i], ",")
			sort.Strings(x)
			sort.Strings(y)
			if !slices.Equal(x, y) {
				return false
			}
		}
	}
	return true
}
