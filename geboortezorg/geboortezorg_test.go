package geboortezorg

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/internal/benchfloor"
)

const docID = "3b0c8a4e-5d6f-4a7b-9c8d-0e1f2a3b4c5d"

func demo(t testing.TB) []byte {
	t.Helper()
	raw, err := Document(Demo(docID, "90000020", "Verloskundigenpraktijk De Waterlelie", time.Date(2026, 3, 12, 10, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// edit changes the demo document's JSON through f; find locates an entry
// by resource type and a profile or code it carries.
func edit(t *testing.T, f func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(demo(t), &doc); err != nil {
		t.Fatal(err)
	}
	f(doc)
	out, _ := json.Marshal(doc)
	return out
}

func find(doc map[string]any, typ, marker string) map[string]any {
	for _, e := range doc["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		b, _ := json.Marshal(r)
		if r["resourceType"] == typ && strings.Contains(string(b), marker) {
			return r
		}
	}
	panic("no " + typ + " with " + marker)
}

func TestDemoIsValidSTU3(t *testing.T) {
	raw := demo(t)
	for _, i := range validate.Resource(fhir.STU3, raw) {
		if i.Severity == "error" || i.Severity == "fatal" {
			t.Errorf("STU3: %s: %s", i.Expression, i.Diagnostics)
		}
	}
	tr, err := Read(raw)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Mother.BSN != DemoMotherBSN || tr.Child.BSN != DemoChildBSN || tr.Child.Name() != "Noor de Wit" || tr.PracticeURA != "90000020" {
		t.Fatalf("read %+v", tr)
	}
	want := map[string]string{"birth weight": "3480 g", "gestation at birth": "40+2 weeks", "Apgar score at 5 minutes": "10",
		"gravidity": "2", "blood loss": "300 mL", "place of birth": "thuisbevalling"}
	got := map[string]string{}
	for _, o := range tr.Observations {
		got[o.Label] = o.Value
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}

func TestValidate(t *testing.T) {
	letter, err := correspondentie.Letter(correspondentie.LetterSpec{ID: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
		Type: correspondentie.DischargeLetter, PatientBSN: DemoMotherBSN, PatientName: "S. de Wit", BirthDate: "1993-05-14",
		AuthorUZI: "900012345", AuthorName: "dr. A. Gynaecoloog", CustodianURA: "90000002", Custodian: "Ziekenhuis",
		Date: time.Now(), Text: "Ontslagen."})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, want, patient string
		payload             func(t *testing.T) []byte
	}{
		{"valid transfer", "", DemoMotherBSN, func(t *testing.T) []byte { return demo(t) }},
		{"a letter sent as geboortezorg", "correspondentie", DemoMotherBSN, func(*testing.T) []byte { return letter }},
		{"other document type", "LOINC 57057-2", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Composition", "57057-2")["type"] = map[string]any{"coding": []any{map[string]any{"system": SystemLOINC, "code": "11488-4"}}}
			})
		}},
		{"mother without BSN", "mother (Composition.subject) must be identified by BSN", "", func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) { delete(find(d, "Patient", ProfileWoman), "identifier") })
		}},
		{"mother's BSN fails the 11-proef", "mother's BSN", "", func(t *testing.T) []byte {
			return []byte(strings.ReplaceAll(string(demo(t)), DemoMotherBSN, "999942105"))
		}},
		{"mother not bc-Woman", ProfileWoman, DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Patient", ProfileWoman)["meta"] = map[string]any{"profile": []any{ProfileNLCorePatient}}
			})
		}},
		{"child not bc-Child", ProfileChild, DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Patient", ProfileChild)["meta"] = map[string]any{"profile": []any{ProfileWoman}}
			})
		}},
		{"observation of another profile", "observation profiles", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Observation", CodeApgar5)["meta"] = map[string]any{"profile": []any{"http://nictiz.nl/fhir/StructureDefinition/zib-ApgarScore"}}
			})
		}},
		{"child without BSN", "child must be identified by BSN", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) { delete(find(d, "Patient", ProfileChild), "identifier") })
		}},
		{"mother and child not linked", "not linked", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) { delete(find(d, "Patient", ProfileWoman), "link") })
		}},
		{"delivery of someone else", "not linked", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Procedure", ProfileDelivery)["subject"] = find(d, "Procedure", ProfileBirth)["subject"]
			})
		}},
		{"no birth weight", "birth weight", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Observation", CodeBirthWeight)["code"] = map[string]any{"coding": []any{map[string]any{"system": SystemLOINC, "code": "29463-7"}}}
			})
		}},
		{"FHIR R4 observation", "FHIR R4", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				o := find(d, "Observation", CodeApgar5)
				o["encounter"], o["context"] = o["context"], nil
				delete(o, "context")
			})
		}},
		{"FHIR R4 condition", "FHIR R4", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Condition", ProfilePregnancy)["clinicalStatus"] = map[string]any{"coding": []any{map[string]any{"code": "inactive"}}}
			})
		}},
		{"zib2020 profile", "FHIR R4", DemoMotherBSN, func(t *testing.T) []byte {
			return edit(t, func(d map[string]any) {
				find(d, "Patient", ProfileChild)["meta"] = map[string]any{"profile": []any{"http://nictiz.nl/fhir/StructureDefinition/nl-core-Patient"}}
			})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := New().Validate(c.payload(t))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				fe := fhir.AsError(err)
				if fe == nil || fe.Status != 422 || !strings.Contains(fe.Error(), c.want) {
					t.Fatalf("got %v, want a 422 naming %q", err, c.want)
				}
			}
			if p.PatientBSN != c.patient {
				t.Fatalf("patient %q, want %q", p.PatientBSN, c.patient)
			}
		})
	}
}

func TestDocumentRefusesInvalidSpec(t *testing.T) {
	s := Demo(docID, "90000020", "Praktijk", time.Now())
	s.Child.BSN = "123456789"
	if _, err := Document(s); err == nil {
		t.Fatal("a child BSN failing the 11-proef was accepted")
	}
	s = Demo("short", "90000020", "Praktijk", time.Now())
	if _, err := Document(s); err == nil {
		t.Fatal("an id that is no UUID was accepted")
	}
}

// BenchmarkValidate measures the receiver's check of the demo transfer
// (about 15 KB) on its own, with the machine's floors in the same run.
func BenchmarkValidate(b *testing.B) {
	benchfloor.Run(b, "")
	raw := demo(b)
	b.Run("transfer", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := New().Validate(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRelativeReferences: a document whose entries have RESTful fullUrls
// and reference each other relatively ("Patient/…") reads as the same
// transfer.
func TestRelativeReferences(t *testing.T) {
	raw := string(demo(t))
	var doc struct {
		Entry []struct {
			FullURL  string `json:"fullUrl"`
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	for _, e := range doc.Entry[1:] {
		id := strings.TrimPrefix(e.FullURL, "urn:uuid:")
		rel := e.Resource.ResourceType + "/" + id
		raw = strings.ReplaceAll(raw, `"reference":"`+e.FullURL+`"`, `"reference":"`+rel+`"`)
		raw = strings.ReplaceAll(raw, `"fullUrl":"`+e.FullURL+`"`, `"fullUrl":"https://verloskundigen.example/fhir/`+rel+`"`)
	}
	if strings.Count(raw, "urn:uuid:") != 2 { // the Composition's fullUrl and the Bundle identifier
		t.Fatalf("references left as urn:uuid: %d", strings.Count(raw, "urn:uuid:"))
	}
	tr, err := Read([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Mother.BSN != DemoMotherBSN || tr.Child.BSN != DemoChildBSN || len(tr.Observations) != 9 {
		t.Fatalf("read %+v", tr)
	}
}

// FuzzRead: whatever a partner sends, the check answers with a transfer
// or a *fhir.Error (422), never a panic.
func FuzzRead(f *testing.F) {
	f.Add(demo(f))
	f.Add([]byte(`{"resourceType":"Bundle","type":"document","identifier":{"value":"x"},"entry":[{"fullUrl":"a","resource":{}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := Read(b); err != nil && fhir.AsError(err) == nil {
			t.Fatalf("not a FHIR error: %v", err)
		}
	})
}

// TestMalformed: JSON of the wrong shape is refused naming the element,
// never a Go type.
func TestMalformed(t *testing.T) {
	for body, want := range map[string]string{
		`[]`:                        "JSON array",
		`{"resourceType":"Bundle",`: "invalid JSON",
		`{"resourceType":"Bundle","type":"document","identifier":{"value":"x"},"entry":[{"fullUrl":"a","resource":{}},{"fullUrl":"b","resource":{"resourceType":"Patient","identifier":"x"}}]}`: "identifier must not be a JSON string",
	} {
		_, err := Read([]byte(body))
		fe := fhir.AsError(err)
		if fe == nil || fe.Status != 422 || !strings.Contains(fe.Error(), want) || strings.Contains(fe.Error(), "Go ") || strings.Contains(fe.Error(), "geboortezorg.") {
			t.Errorf("%s: got %v, want a 422 naming %q", body, err, want)
		}
	}
}

// TestMutationsNeverPanic: every element of every resource of the demo
// transfer removed, or replaced by a value of each JSON type, is either
// still a valid transfer or refused with a *fhir.Error — never a panic.
func TestMutationsNeverPanic(t *testing.T) {
	values := []any{nil, "x", 1, true, []any{}, []any{"x"}, map[string]any{}, map[string]any{"reference": "urn:uuid:nowhere"}}
	var doc map[string]any
	if err := json.Unmarshal(demo(t), &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	check := func() {
		n++
		b, _ := json.Marshal(doc)
		if _, err := Read(b); err != nil && fhir.AsError(err) == nil {
			t.Fatalf("not a FHIR error: %v", err)
		}
	}
	for _, e := range doc["entry"].([]any) {
		entry := e.(map[string]any)
		for _, k := range []string{"fullUrl", "resource"} {
			orig := entry[k]
			for _, v := range values {
				entry[k] = v
				check()
			}
			entry[k] = orig
		}
		res := entry["resource"].(map[string]any)
		for k, orig := range res {
			delete(res, k)
			check()
			for _, v := range values {
				res[k] = v
				check()
			}
			res[k] = orig
		}
	}
	t.Logf("%d mutations", n)
}
