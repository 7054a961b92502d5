package correspondentie

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
)

func spec() LetterSpec {
	return LetterSpec{ID: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890", Type: DischargeLetter, PatientBSN: "999911120",
		PatientName: "J. Jansen", BirthDate: "1950-01-01", AuthorUZI: "900012345", AuthorName: "dr. A. Internist",
		CustodianURA: "00000002", Custodian: "Ziekenhuis", Date: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC),
		Text: "Ontslagen in goede conditie (controle over 6 weken)."}
}

// edit changes the letter's JSON through f.
func edit(t *testing.T, f func(doc map[string]any)) []byte {
	t.Helper()
	raw, err := Letter(spec())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	f(doc)
	out, _ := json.Marshal(doc)
	return out
}

func entry(doc map[string]any, i int) map[string]any {
	return doc["entry"].([]any)[i].(map[string]any)["resource"].(map[string]any)
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name, want string
		edit       func(doc map[string]any)
	}{
		{"valid discharge letter", "", func(map[string]any) {}},
		{"referral letter", "", func(d map[string]any) {
			entry(d, 0)["type"] = map[string]any{"coding": []any{map[string]any{"system": SystemLOINC, "code": ReferralLetter}}}
		}},
		{"not a document", "type document", func(d map[string]any) { d["type"] = "collection" }},
		{"other letter type", "LOINC", func(d map[string]any) {
			entry(d, 0)["type"] = map[string]any{"coding": []any{map[string]any{"system": SystemLOINC, "code": "11488-4"}}}
		}},
		{"BSN fails the 11-proef", "BSN", func(d map[string]any) {
			entry(d, 1)["identifier"] = []any{map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "123456789"}}
		}},
		{"patient without BSN", "identified by BSN", func(d map[string]any) { delete(entry(d, 1), "identifier") }},
		{"preliminary", "status", func(d map[string]any) { entry(d, 0)["status"] = "preliminary" }},
		{"no custodian", "custodian", func(d map[string]any) { delete(entry(d, 0), "custodian") }},
		{"Binary not a PDF", "not a PDF", func(d map[string]any) { entry(d, 4)["content"] = "aGVsbG8=" }},
		{"no content", "structured content", func(d map[string]any) { delete(entry(d, 0), "section") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := New().Validate(edit(t, c.edit))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if p.PatientBSN != "999911120" {
					t.Fatalf("patient %q", p.PatientBSN)
				}
				return
			}
			fe := fhir.AsError(err)
			if fe == nil || fe.Status != 422 || !strings.Contains(fe.Error(), c.want) {
				t.Fatalf("got %v, want a 422 naming %q", err, c.want)
			}
		})
	}
}

func TestPDF(t *testing.T) {
	pdf := PDF("Ontslagbrief", "tekst (met haakjes)")
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.4")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) {
		t.Fatal("not framed as a PDF")
	}
	// The xref table's offsets point at the objects.
	i := bytes.LastIndex(pdf, []byte("startxref\n"))
	var xref int
	if _, err := fmt.Sscan(string(pdf[i+10:]), &xref); err != nil || !bytes.HasPrefix(pdf[xref:], []byte("xref")) {
		t.Fatalf("startxref %d does not point at the xref table", xref)
	}
	if !bytes.Contains(pdf, []byte(`(tekst \(met haakjes\))`)) {
		t.Fatal("parentheses not escaped")
	}
}

// The demo network's letter is one the receiver's validation accepts,
// about the patient it was made for.
func TestDemoMessageValidates(t *testing.T) {
	var app careapp.DemoMessages = New()
	payload, title, err := app.DemoMessage(careapp.DemoPatient{BSN: "999911120", Name: "J. Jansen", BirthDate: "1950-01-01"},
		careapp.DemoParty{URA: "90000002", Name: "Ziekenhuis"}, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	if err != nil || title == "" {
		t.Fatalf("DemoMessage: %q, %v", title, err)
	}
	p, err := New().Validate(payload)
	if err != nil || p.PatientBSN != "999911120" {
		t.Fatalf("Validate: %+v, %v", p, err)
	}
}
