// Package correspondentie holds the validation kit's cases for the care
// application Correspondentie (letters between care providers over Push):
// the Push cases of validation/pushkit with the kit's letters. It lives
// apart from the correspondentie package so that the node does not carry
// the kit's machinery.
package correspondentie

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/schakel-nl/schakel/correspondentie"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/pushkit"
)

// Name is the care application's name.
const Name = "correspondentie"

// patientBSN is the patient of the kit's letters: a valid test BSN (9999
// range, 11-proef) of no real person.
const patientBSN = "999990020"

// Spec is Correspondentie as the Push cases need it.
func Spec() pushkit.Spec {
	app := correspondentie.New()
	system, code := app.Event()
	return pushkit.Spec{Name: Name, Title: "Correspondentie (letters, FHIR STU3 document over Push)",
		EventSystem: system, EventCode: code, PatientBSN: patientBSN,
		Payload: func(senderURA, senderName string, at time.Time) ([]byte, error) {
			if senderName == "" {
				senderName = "URA " + senderURA
			}
			return correspondentie.Letter(correspondentie.LetterSpec{ID: documentID(), Type: correspondentie.ReferralLetter,
				PatientBSN: patientBSN, PatientName: "K. Validatie", BirthDate: "1970-01-01", AuthorUZI: "900009955",
				AuthorName: "Twiin validatieservice", CustodianURA: senderURA, Custodian: senderName, Date: at,
				Text: "Verwijsbrief van de validatieservice: controle van het ontvangen van brieven."})
		},
		Check: func(payload []byte) error {
			_, err := app.Validate(payload)
			return err
		},
		WrongVersion: pushkit.Edit{Describe: "Composition.category, an element FHIR R4 added",
			Apply: editComposition(func(c map[string]any) {
				c["category"] = []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "57133-1"}}}}
			})},
		WrongProfile: pushkit.Edit{Describe: "Composition.type LOINC 11488-4 consult note, not a discharge or referral letter",
			Apply: editComposition(func(c map[string]any) {
				c["type"] = map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}}}
			})},
	}
}

// Register adds Correspondentie's kit to reg.
func Register(reg *validation.Registry) error { return Spec().Register(reg) }

// documentID is a random UUID for a letter.
func documentID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// editComposition changes the letter's Composition (its first entry).
func editComposition(change func(map[string]any)) func([]byte) ([]byte, error) {
	return func(payload []byte) ([]byte, error) {
		var b map[string]any
		if err := json.Unmarshal(payload, &b); err != nil {
			return nil, err
		}
		entries, _ := b["entry"].([]any)
		if len(entries) == 0 {
			return nil, fmt.Errorf("the letter has no entries")
		}
		c, _ := entries[0].(map[string]any)["resource"].(map[string]any)
		if c == nil {
			return nil, fmt.Errorf("the letter's first entry has no resource")
		}
		change(c)
		return json.Marshal(b)
	}
}
