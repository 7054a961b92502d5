package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// referenceBody is the canonical encoding as encoding/json makes it, which
// encodeBody reproduces without reflection.
func referenceBody(t testing.TB, r Record) []byte {
	t.Helper()
	b := canonical(r)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// awkward are strings whose JSON encoding takes care: quotes, backslashes,
// every control character, HTML characters (not escaped), invalid UTF-8,
// U+2028/U+2029 and multi-byte runes.
var awkward = []string{"", "plain", `quote " and \ backslash`, "\b\f\n\r\t\x00\x01\x1f\x7f", "<a href='x'>&amp;</a>",
	"bad \xff\xfe utf8 \xe2\x82", "line\u2028para\u2029end", "Zoë — €5 ✓ 𝄞", "Condition?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120&_include=Condition:subject"}

func TestEncodeBodyMatchesEncodingJSON(t *testing.T) {
	recs := []Record{
		record(0), record(1), {},
		{NotRequestor: true, Outcome: -1, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("CET", 3600)), Types: []string{}, Resources: []string{}, Checks: []string{}},
		{Types: []string{"A", "B", "A"}, Resources: []string{"A/1"}, Checks: []string{""}},
	}
	for i, s := range awkward {
		recs = append(recs, Record{EventID: s, Action: s, Type: s, Interaction: awkward[(i+1)%len(awkward)], OutcomeText: s, Node: s, Tenant: s,
			ActorURA: s, ActorSystem: s, ActorUser: s, ActorAltID: s, ActorName: s, ActorRole: s, PurposeOfUse: s, Address: s,
			Patient: s, Types: []string{s, s}, Resources: awkward, Query: s, Sensitivity: s, Task: s, AuthzProtocol: s,
			ConsentProfile: s, Checks: []string{s}, Time: time.Unix(int64(i)*1e9, int64(i)), Outcome: i * 100})
	}
	for i, r := range recs {
		got, err := encodeBody(r)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if want := referenceBody(t, r); !bytes.Equal(got, want) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if _, err := encodeBody(Record{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("a time past year 9999 was encoded; encoding/json refuses it")
	}
}

func FuzzEncodeBody(f *testing.F) {
	for _, s := range awkward {
		f.Add(s, s, int64(0), 200)
	}
	f.Fuzz(func(t *testing.T, a, b string, nanos int64, outcome int) {
		r := Record{EventID: a, Action: b, Interaction: a, OutcomeText: b, Node: a, Tenant: b, Query: a + b,
			Types: []string{a, b}, Resources: []string{b}, Checks: []string{a}, Outcome: outcome, Time: time.Unix(0, nanos)}
		got, err := encodeBody(r)
		if err != nil {
			t.Skip() // a time encoding/json refuses too
		}
		if want := referenceBody(t, r); !bytes.Equal(got, want) {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	})
}

// Every field of body is written by appendJSON: set all of them (by
// reflection, so that a field added later is set too) and compare.
func TestAppendJSONWritesEveryField(t *testing.T) {
	var b body
	v := reflect.ValueOf(&b).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(v.Type().Field(i).Name)
		case reflect.Int:
			f.SetInt(int64(i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{v.Type().Field(i).Name, "x"}))
		case reflect.Struct: // the time
			f.Set(reflect.ValueOf(time.Date(2026, 12, 7, 5, 40, 0, 1, time.UTC)))
		default:
			t.Fatalf("body.%s: a kind (%s) this test does not fill", v.Type().Field(i).Name, f.Kind())
		}
	}
	got, err := b.appendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		t.Fatal(err)
	}
	if want := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(got, want) {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

// The index's INSERT gets each row's columns in columns.args' order, the
// repeated values reused from the row before.
func TestColumnBoxesKeepTheOrder(t *testing.T) {
	var boxes columnBoxes
	for i := range 6 {
		rec := record(i / 2)
		rec.EventID, rec.Time, rec.Node = newID(), time.Now(), "node-a"
		c := columnsOf(rec)
		if got, want := boxes.appendArgs(nil, &c), c.args(); !reflect.DeepEqual(got, want) {
			t.Fatalf("row %d:\n got %v\nwant %v", i, got, want)
		}
	}
}

// The body, bound as bytes, is stored as TEXT, byte for byte.
func TestSQLiteStoresTheBodyAsText(t *testing.T) {
	ctx := context.Background()
	b := tempSQLite(t, "FULL")
	var head [32]byte
	var rows []row
	for i := range 3 {
		rec := record(i)
		rec.EventID, rec.Time, rec.Node, rec.OutcomeText = newID(), time.Now(), "node-a", awkward[i+3]
		body, err := encodeBody(rec)
		if err != nil {
			t.Fatal(err)
		}
		prev := head
		head = chainHash(prev, body)
		rows = append(rows, row{seq: int64(i + 1), prev: prev[:], hash: bytes32(head), body: body, cols: columnsOf(rec)})
	}
	if err := b.write(ctx, rows, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		var typ, body string
		if err := b.db.QueryRowContext(ctx, `SELECT typeof(body), body FROM audit_event WHERE seq = ?`, r.seq).Scan(&typ, &body); err != nil {
			t.Fatal(err)
		}
		if typ != "text" || body != string(r.body) {
			t.Errorf("seq %d: stored as %s: %q, want text %q", r.seq, typ, body, r.body)
		}
	}
}
