// Package geboortezorg holds the validation kit's cases for the care
// application Geboortezorg (the perinatal transfer over Push): the Push
// cases of validation/pushkit with the kit's transfers. It lives apart
// from the geboortezorg package so that the node does not carry the kit's
// machinery.
package geboortezorg

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/schakel-nl/schakel/geboortezorg"
	"github.com/schakel-nl/schakel/validation"
	"github.com/schakel-nl/schakel/validation/pushkit"
)

// Name is the care application's name.
const Name = geboortezorg.Name

// Spec is Geboortezorg as the Push cases need it: the kit's transfer is
// the demo's (geboortezorg.Demo), written by the sending organisation.
func Spec() pushkit.Spec {
	app := geboortezorg.New()
	system, code := app.Event()
	return pushkit.Spec{Name: Name, Title: "Geboortezorg (perinatal transfer, Nictiz Geboortezorg STU3 over Push)",
		EventSystem: system, EventCode: code, PatientBSN: geboortezorg.DemoMotherBSN,
		Payload: func(senderURA, senderName string, at time.Time) ([]byte, error) {
			if senderName == "" {
				senderName = "URA " + senderURA
			}
			return geboortezorg.Document(geboortezorg.Demo(documentID(), senderURA, senderName, at))
		},
		Check: func(payload []byte) error {
			_, err := geboortezorg.Read(payload)
			return err
		},
		WrongVersion: pushkit.Edit{Describe: "the birth weight as Observation.valueInteger, an R4 choice STU3 does not have",
			Apply: editResources(func(r map[string]any) bool {
				q, ok := r["valueQuantity"].(map[string]any)
				if r["resourceType"] != "Observation" || !ok {
					return false
				}
				delete(r, "valueQuantity")
				r["valueInteger"] = q["value"]
				return true
			})},
		WrongProfile: pushkit.Edit{Describe: "the mother's Patient without the bc-Woman profile",
			Apply: editResources(func(r map[string]any) bool {
				meta, _ := r["meta"].(map[string]any)
				profiles, _ := meta["profile"].([]any)
				if r["resourceType"] != "Patient" || !slices.Contains(profiles, any(geboortezorg.ProfileWoman)) {
					return false
				}
				meta["profile"] = []any{geboortezorg.ProfileNLCorePatient}
				return true
			})},
	}
}

// Register adds Geboortezorg's kit to reg.
func Register(reg *validation.Registry) error { return Spec().Register(reg) }

func documentID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// editResources changes the first resource of the transfer that change
// takes (returns true for).
func editResources(change func(map[string]any) bool) func([]byte) ([]byte, error) {
	return func(payload []byte) ([]byte, error) {
		var b map[string]any
		if err := json.Unmarshal(payload, &b); err != nil {
			return nil, err
		}
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			if r, _ := e.(map[string]any)["resource"].(map[string]any); r != nil && change(r) {
				return json.Marshal(b)
			}
		}
		return nil, fmt.Errorf("the transfer holds no resource to change")
	}
}
