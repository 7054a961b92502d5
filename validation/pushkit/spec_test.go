package pushkit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	fhirvalidate "github.com/schakel-nl/schakel/fhir/validate"
	kitcorrespondentie "github.com/schakel-nl/schakel/validation/correspondentie"
	kitgeboortezorg "github.com/schakel-nl/schakel/validation/geboortezorg"
	"github.com/schakel-nl/schakel/validation/pushkit"
)

// refused reports why a receiver refuses payload: the application's
// checks, or the STU3 definitions.
func refused(s pushkit.Spec, payload []byte) string {
	if err := s.Check(payload); err != nil {
		return err.Error()
	}
	for _, is := range fhirvalidate.Resource(fhir.STU3, payload) {
		if is.Severity == "error" || is.Severity == "fatal" {
			return is.Diagnostics
		}
	}
	return ""
}

// TestSpecsPayloads: each kit's payload conforms, and each of its wrong
// payloads is one a receiver refuses.
func TestSpecsPayloads(t *testing.T) {
	for _, s := range []pushkit.Spec{kitcorrespondentie.Spec(), kitgeboortezorg.Spec()} {
		t.Run(s.Name, func(t *testing.T) {
			good, err := s.Payload("90000002", "Ziekenhuis", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if why := refused(s, good); why != "" {
				t.Fatalf("the kit's payload is refused: %s", why)
			}
			if !strings.Contains(string(good), s.PatientBSN) {
				t.Errorf("the payload is not about %s", s.PatientBSN)
			}
			for name, edit := range map[string]func([]byte) ([]byte, error){
				"wrong version": s.WrongVersion.Apply, "wrong profile": s.WrongProfile.Apply,
				"no BSN": pushkit.DropPatientIdentifiers,
			} {
				bad, err := edit(good)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				why := refused(s, bad)
				if why == "" {
					t.Errorf("%s: the payload is not refused", name)
				}
				t.Logf("%s: %s", name, why)
			}
		})
	}
}
