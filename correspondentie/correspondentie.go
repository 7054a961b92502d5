// Package correspondentie is the care application Correspondentie —
// letters between care providers — as it runs on Push: the letter's shape
// (a FHIR STU3 document Bundle), the receiver's validation of it, the
// consent rule of a directed send, and demo letters.
package correspondentie

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/careapp"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
	"github.com/schakel-nl/schakel/push"
)

// Letter types (LOINC), the Composition.type of a letter.
const (
	SystemLOINC     = "http://loinc.org"
	DischargeLetter = "18842-5" // Discharge summary
	ReferralLetter  = "57133-1" // Referral note
)

var letterTypes = map[string]string{DischargeLetter: "discharge letter", ReferralLetter: "referral letter"}

// Application is Correspondentie for the push pattern.
type Application struct{}

// New returns the application, for registration at the composition root.
func New() Application { return Application{} }

// Name implements push.Application.
func (Application) Name() string { return "correspondentie" }

// FHIRVersion: the letters are STU3 documents (careapp.Application).
func (Application) FHIRVersion() fhir.Version { return fhir.STU3 }

// Patterns: a letter is sent (careapp.Application).
func (Application) Patterns() []careapp.Pattern { return []careapp.Pattern{careapp.Push} }

// DemoMessage is the demo network's letter (careapp.DemoMessages): a
// discharge letter from sender about patient.
func (Application) DemoMessage(patient careapp.DemoPatient, sender careapp.DemoParty, at time.Time) ([]byte, string, error) {
	letter, err := Letter(LetterSpec{ID: newDocumentID(), Type: DischargeLetter,
		PatientBSN: patient.BSN, PatientName: patient.Name, BirthDate: patient.BirthDate, AuthorUZI: "900000123", AuthorName: "dr. M. Internist",
		CustodianURA: sender.URA, Custodian: sender.Name, Date: at,
		Text: "Ontslagbrief: patient ontslagen in goede conditie; controle op de polikliniek over zes weken."})
	return letter, "a discharge letter", err
}

// newDocumentID is a random UUID for a letter's document.
func newDocumentID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Event implements push.Application: the MessageHeader.event of a letter.
func (Application) Event() (string, string) { return push.SystemEvent, "correspondentie" }

// Consent implements push.Application. A letter is sent to one named
// receiver who treats the patient (a directed send); as for a referral the
// patient's consent is presumed, and no consent service is asked.
func (Application) Consent() string { return "presumed-directed-send" }

type reference struct {
	Reference string `json:"reference"`
}

type composition struct {
	ResourceType string `json:"resourceType"`
	Status       string `json:"status"`
	Type         struct {
		Coding []struct{ System, Code string } `json:"coding"`
	} `json:"type"`
	Subject   *reference  `json:"subject"`
	Date      string      `json:"date"`
	Author    []reference `json:"author"`
	Title     string      `json:"title"`
	Custodian *reference  `json:"custodian"`
	Section   []struct {
		Title string `json:"title"`
		Text  *struct {
			Div string `json:"div"`
		} `json:"text"`
		Entry []reference `json:"entry"`
	} `json:"section"`
}

// Validate implements push.Application: the receiver's check of a letter.
func (Application) Validate(payload []byte) (push.Payload, error) {
	var p push.Payload
	refuse := func(format string, args ...any) (push.Payload, error) {
		return p, fhir.Errorf(http.StatusUnprocessableEntity, "invalid", "letter: "+format, args...)
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Identifier   *struct{ System, Value string }
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(payload, &b); err != nil {
		return refuse("not a FHIR JSON Bundle: %v", err)
	}
	if b.ResourceType != "Bundle" || b.Type != "document" {
		return refuse("a letter is a Bundle of type document")
	}
	if b.Identifier == nil || b.Identifier.Value == "" {
		return refuse("Bundle.identifier (the document's id) is required")
	}
	if len(b.Entry) == 0 {
		return refuse("the document has no Composition")
	}
	byURL := map[string]json.RawMessage{}
	for _, e := range b.Entry {
		byURL[e.FullURL] = e.Resource
	}
	var c composition
	if err := json.Unmarshal(b.Entry[0].Resource, &c); err != nil || c.ResourceType != "Composition" {
		return refuse("the first entry of a document must be its Composition")
	}
	// The patient first: a refusal of a letter that names one validly is
	// audited with the patient.
	if c.Subject == nil || byURL[c.Subject.Reference] == nil {
		return refuse("Composition.subject must reference the Patient in the document")
	}
	bsn, _, ok := nl.Patient(byURL[c.Subject.Reference])
	if !ok || bsn == "" {
		return refuse("the subject Patient must be identified by BSN (%s)", nl.SystemBSN)
	}
	if err := nl.ValidateBSN(bsn); err != nil {
		return p, fhir.Errorf(http.StatusUnprocessableEntity, "value", "letter: the patient's BSN: %v", err)
	}
	p.PatientBSN = bsn
	if c.Status != "final" && c.Status != "amended" {
		return refuse("Composition.status must be final or amended, not %q", c.Status)
	}
	for _, cd := range c.Type.Coding {
		if cd.System == SystemLOINC && letterTypes[cd.Code] != "" {
			p.Type, p.Description = "Composition", letterTypes[cd.Code]
		}
	}
	if p.Description == "" {
		return refuse("Composition.type must be LOINC %s (discharge letter) or %s (referral letter)", DischargeLetter, ReferralLetter)
	}
	if c.Title == "" || c.Date == "" {
		return refuse("Composition.title and Composition.date are required")
	}
	if len(c.Author) == 0 || c.Custodian == nil || byURL[c.Custodian.Reference] == nil {
		return refuse("Composition.author and a custodian Organization in the document are required")
	}
	content := false
	for _, s := range c.Section {
		if s.Text != nil && strings.TrimSpace(s.Text.Div) != "" {
			content = true
		}
		for _, e := range s.Entry {
			if err := checkBinary(byURL[e.Reference]); err != nil {
				return refuse("section %q: %v", s.Title, err)
			}
			content = true
		}
	}
	if !content {
		return refuse("a letter needs structured content (section text) or a PDF (a Binary section entry)")
	}
	return p, nil
}

// checkBinary accepts a Binary holding a PDF, or any other resource.
func checkBinary(res json.RawMessage) error {
	if res == nil {
		return errString("a section entry references no resource in the document")
	}
	var bin struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Content      string `json:"content"`
	}
	if json.Unmarshal(res, &bin) != nil || bin.ResourceType != "Binary" {
		return nil
	}
	if bin.ContentType != "application/pdf" {
		return errString("a Binary in a letter must be application/pdf")
	}
	data, err := base64.StdEncoding.DecodeString(bin.Content)
	if err != nil || !bytes.HasPrefix(data, []byte("%PDF-")) || !bytes.Contains(data[max(0, len(data)-1024):], []byte("%%EOF")) {
		return errString("the Binary's content is not a PDF")
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }
