package notifiedpull

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
)

// decodeSearchPage is parseSearchPage as encoding/json reads the page:
// the reference the splitting reader must agree with.
func decodeSearchPage(body []byte) (searchPage, error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Link         []struct{ Relation, URL string }
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
			Search   struct{ Mode string }
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return searchPage{}, err
	}
	p := searchPage{ResourceType: b.ResourceType, Entries: []searchEntry{}}
	for _, e := range b.Entry {
		p.Entries = append(p.Entries, searchEntry{FullURL: e.FullURL, Resource: e.Resource, Mode: e.Search.Mode})
	}
	for _, l := range b.Link {
		if l.Relation == "next" {
			p.Next = l.URL
		}
	}
	return p, nil
}

var searchPageSeeds = []string{
	`{"resourceType":"Bundle","type":"searchset","total":2,"link":[{"relation":"self","url":"https://h/fhir/Condition?x=1"},{"relation":"next","url":"https://h/fhir/Condition?x=1&_offset=2"}],` +
		`"entry":[{"fullUrl":"https://h/fhir/Condition/1","resource":{"resourceType":"Condition","id":"1","note":[{"text":"a \"b\" <c> & d"}]},"search":{"mode":"match"}},` +
		`{"fullUrl":"https://h/fhir/Patient/p","resource":{"resourceType":"Patient","id":"p"},"search":{"mode":"include"}},` +
		`{"resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}}]}`,
	`{ "resourceType" : "Bundle", "entry" : [ { "fullUrl" : "u\u00e9", "resource" : { "a" : [ 1, 2.5e3, true, null ] } } ] }`,
	`{"resourceType":"Bundle","entry":null,"link":null}`,
	`{"resourceType":"Bundle","Entry":[{"FULLURL":"x","Search":{"Mode":"include"}}],"entry":[{"fullUrl":"y"}]}`,
	`{"resourceType":"Bundle","entry":[null,{"resource":null,"search":null}]}`,
	`{"resourceType":"Bundle","entry":[1]}`,
	`{"resourceType":"Bundle","entry":{}}`,
	`{"resourceType":7}`,
	`[]`,
	`{"resourceType":"Bundle"} x`,
	`{"resourceType":"Bundle","entry":[{"fullUrl":"a"}]`,
}

func TestParseSearchPage(t *testing.T) {
	for _, seed := range searchPageSeeds {
		checkSearchPage(t, []byte(seed))
	}
}

func FuzzParseSearchPage(f *testing.F) {
	for _, seed := range searchPageSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(checkSearchPage)
}

func checkSearchPage(t *testing.T, body []byte) {
	want, werr := decodeSearchPage(body)
	got, gerr := parseSearchPage(body)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("%s: error %v, encoding/json's %v", body, gerr, werr)
	}
	if werr != nil || repeatsArray(body) {
		// encoding/json decodes a repeated array into the elements of
		// the first; the reader takes the last, as for any other member.
		return
	}
	if got.Entries == nil {
		got.Entries = []searchEntry{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", body, got, want)
	}
}

// repeatsArray reports whether the page names entry or link twice.
func repeatsArray(body []byte) bool {
	ms, err := fhir.SplitMembers(body)
	if err != nil {
		return false
	}
	seen := map[string]bool{}
	for _, m := range ms {
		k := strings.ToLower(m.Key)
		if seen[k] && (k == "entry" || k == "link") {
			return true
		}
		seen[k] = true
	}
	return false
}

// TestCollectionBundle checks that the Bundle written byte by byte is the
// one encoding/json writes of the same entries.
func TestCollectionBundle(t *testing.T) {
	c := newCollection()
	c.add("https://h/fhir/Condition/1", json.RawMessage(`{"resourceType":"Condition","id":"1"}`))
	c.add("https://h/fhir/Patient/p?a=<b>&c", json.RawMessage(`{"resourceType":"Patient","id":"p","name":[{"text":"é"}]}`))
	c.add("urn:uuid:x", nil)
	row := Received{Identifier: "urn:uuid:4a0f\"x"}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	}
	var entries []entry
	for _, u := range c.order {
		entries = append(entries, entry{u, c.byURL[u]})
	}
	want, err := json.Marshal(map[string]any{
		"resourceType": "Bundle",
		"identifier":   identifier{System: SystemRFC3986, Value: row.Identifier},
		"type":         "collection",
		"entry":        entries,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.bundle(row); !bytes.Equal(got, want) {
		t.Fatalf("bundle\n got %s\nwant %s", got, want)
	}
}

func BenchmarkParseSearchPage(b *testing.B) {
	body := []byte(searchPageSeeds[0])
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseSearchPage(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSearchPage(b *testing.B) {
	body := []byte(searchPageSeeds[0])
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeSearchPage(body); err != nil {
			b.Fatal(err)
		}
	}
}
