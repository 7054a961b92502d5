package correspondentie

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// LetterSpec describes a letter to build.
type LetterSpec struct {
	ID           string // document id (a UUID)
	Type         string // DischargeLetter or ReferralLetter
	PatientBSN   string
	PatientName  string
	BirthDate    string
	AuthorUZI    string
	AuthorName   string
	CustodianURA string
	Custodian    string
	Date         time.Time
	Text         string // the letter's text: the structured section and the PDF
}

// Letter builds the letter as a FHIR STU3 document Bundle: Composition,
// Patient (BSN), author Practitioner, custodian Organization (URA), a
// section with the text and a section with the same text as PDF.
func Letter(s LetterSpec) ([]byte, error) {
	title := letterTypes[s.Type]
	if title == "" {
		return nil, fmt.Errorf("letter type %q: want %s or %s", s.Type, DischargeLetter, ReferralLetter)
	}
	if len(s.ID) != 36 {
		return nil, fmt.Errorf("letter id %q: want a UUID", s.ID)
	}
	u := func(n string) string { return "urn:uuid:" + s.ID[:len(s.ID)-1] + n }
	pat, prac, org, pdf := u("1"), u("2"), u("3"), u("4")
	div := `<div xmlns="http://www.w3.org/1999/xhtml"><p>` + escape(s.Text) + `</p></div>`
	comp := map[string]any{
		"resourceType": "Composition", "status": "final",
		"type":    map[string]any{"coding": []any{map[string]any{"system": SystemLOINC, "code": s.Type, "display": title}}},
		"subject": map[string]any{"reference": pat}, "date": s.Date.UTC().Format(time.RFC3339),
		"author": []any{map[string]any{"reference": prac}}, "title": title,
		"custodian": map[string]any{"reference": org},
		"section": []any{
			map[string]any{"title": "Brief", "text": map[string]any{"status": "generated", "div": div}},
			map[string]any{"title": "Brief (PDF)", "entry": []any{map[string]any{"reference": pdf}}},
		},
	}
	patient := map[string]any{"resourceType": "Patient",
		"identifier": []any{map[string]any{"system": nl.SystemBSN, "value": s.PatientBSN}},
		"name":       []any{map[string]any{"text": s.PatientName}}}
	if s.BirthDate != "" {
		patient["birthDate"] = s.BirthDate
	}
	entries := []any{
		map[string]any{"fullUrl": u("0"), "resource": comp},
		map[string]any{"fullUrl": pat, "resource": patient},
		map[string]any{"fullUrl": prac, "resource": map[string]any{"resourceType": "Practitioner",
			"identifier": []any{map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers", "value": s.AuthorUZI}},
			"name":       []any{map[string]any{"text": s.AuthorName}}}},
		map[string]any{"fullUrl": org, "resource": map[string]any{"resourceType": "Organization",
			"identifier": []any{map[string]any{"system": nl.SystemURA, "value": s.CustodianURA}}, "name": s.Custodian}},
		map[string]any{"fullUrl": pdf, "resource": map[string]any{"resourceType": "Binary", "contentType": "application/pdf",
			"content": base64.StdEncoding.EncodeToString(PDF(title, s.Text))}},
	}
	return json.Marshal(map[string]any{"resourceType": "Bundle", "type": "document",
		"identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:" + s.ID}, "entry": entries})
}

func escape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// PDF renders a one-page PDF (1.4) with a title and the text in Helvetica,
// with a correct cross-reference table, so any PDF reader opens it.
func PDF(title, text string) []byte {
	esc := func(s string) string {
		var b bytes.Buffer
		for _, r := range s {
			switch {
			case r == '(' || r == ')' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r < 32 || r > 126:
				b.WriteByte('?') // Helvetica's standard encoding: keep to ASCII
			default:
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	stream := fmt.Sprintf("BT /F1 16 Tf 72 760 Td (%s) Tj ET\nBT /F1 11 Tf 72 730 Td (%s) Tj ET\n", esc(title), esc(text))
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%sendstream", len(stream), stream),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}
