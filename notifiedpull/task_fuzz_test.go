package notifiedpull

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
	"github.com/schakel-nl/schakel/nl"
)

// FuzzParseNotification feeds arbitrary bodies to the notification Task
// parser. The seed corpus is in testdata/fuzz/FuzzParseNotification; run
// with go test -fuzz=FuzzParseNotification ./notifiedpull.
func FuzzParseNotification(f *testing.F) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	spec := validSpec(now)
	spec.Description = "Verwijzing"
	f.Add([]byte(BuildNotification(spec)))
	f.Add([]byte(`{"resourceType":"Task","status":"cancelled"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParseNotification(body, now)
		if err != nil {
			var fe *fhir.Error
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidNotification) || len(fe.Issues) == 0 {
				t.Fatalf("refusal %v (%T) is no *fhir.Error with issues wrapping ErrInvalidNotification", err, err)
			}
			if fe.Status != http.StatusBadRequest && fe.Status != http.StatusUnprocessableEntity {
				t.Fatalf("refusal with status %d", fe.Status)
			}
			return
		}
		// What the parser accepts is what the agreement allows...
		if n.Status != StatusRequested && n.Status != StatusCancelled {
			t.Fatalf("accepted status %q", n.Status)
		}
		if n.Identifier == "" || n.AuthorizationBase == "" || !strings.HasPrefix(n.WorkflowTask, "https://") {
			t.Fatalf("accepted without identifier, authorization base or https workflow Task: %+v", n)
		}
		if nl.ValidateBSN(n.PatientBSN) != nil {
			t.Fatalf("accepted BSN %q", n.PatientBSN)
		}
		if n.Status == StatusRequested && !n.Expires.After(now) {
			t.Fatalf("accepted an expired notification: %v", n.Expires)
		}
		// ...and a well-formed STU3 Task: elements the parser matched by a
		// different spelling, or trailing data it never read, would let the
		// stored Task say something else than what was checked.
		if issues := validate.Resource(fhir.STU3, body); len(issues) > 0 {
			t.Fatalf("accepted a Task the validator refuses: %+v\n%s", issues, body)
		}
	})
}
