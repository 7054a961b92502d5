// Package consent is the consent (toestemming) generic function: a registry
// of patients' consents per data-holder category, a Mitz-compatible closed
// question ("gesloten autorisatievraag", SOAP/XACML 3.0) server and client,
// and Mitz-style subscriptions whose notifications drive localization.
//
// The node asks a Checker; at plateau 1 that is a LocalChecker over the
// provider's own registry, from plateau 3 on a Client of a Mitz-compatible
// service (Schakel's own Server, or the real Mitz by configuration). Whatever
// the implementation, only DecisionPermit grants access, and every failure
// to obtain a decision refuses access (fail closed). See docs/consent.md.
package consent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/nl"
)

// Decision is the XACML decision of a closed question.
type Decision string

// The four XACML decisions. Only Permit grants access.
const (
	DecisionPermit        Decision = "Permit"
	DecisionDeny          Decision = "Deny"
	DecisionNotApplicable Decision = "NotApplicable"
	DecisionIndeterminate Decision = "Indeterminate"
)

// Permitted reports whether d grants access: only Permit does.
func (d Decision) Permitted() bool { return d == DecisionPermit }

func parseDecision(s string) (Decision, bool) {
	switch d := Decision(s); d {
	case DecisionPermit, DecisionDeny, DecisionNotApplicable, DecisionIndeterminate:
		return d, true
	}
	return "", false
}

// PurposeTreatment is the purpose of use of every Twiin consult (HL7 v3
// ActReason TREAT); Mitz answers closed questions for this purpose only.
const PurposeTreatment = "TREAT"

// EventCodeTreatmentData is the Mitz data category "Behandelgegevens"
// (GGC002), the action of every closed question.
const EventCodeTreatmentData = "GGC002"

// Question is a closed question: may the data holder make this patient's
// treatment data available to this requester, for this purpose?
type Question struct {
	PatientBSN     string
	DataHolderURA  string
	DataHolderType string // facility type code (e.g. Z3), code system 2.16.840.1.113883.2.4.15.1060
	RequesterURA   string
	RequesterType  string // the requester's facility type code
	RequesterRole  string // UZI role code of the requesting user, e.g. 01.015
	RequesterUZI   string // UZI number of the requesting user
	Purpose        string // empty means TREAT
}

// Checker answers closed questions. An error means no decision could be
// obtained; the caller must then refuse (fail closed).
type Checker interface {
	Decide(ctx context.Context, q Question) (Decision, error)
}

// Errors; test with errors.Is.
var (
	// ErrUnavailable: the consent service could not be asked or gave no
	// usable answer (unreachable, slow, malformed, fault). Access is refused.
	ErrUnavailable = errors.New("consent service unavailable")
	// ErrInvalidQuestion: a question lacks or has malformed attributes.
	ErrInvalidQuestion = errors.New("invalid consent question")
	// ErrNoConsent: the decision was not Permit.
	ErrNoConsent = errors.New("no consent")
)

// DeniedError reports a decision other than Permit.
type DeniedError struct{ Decision Decision }

func (e *DeniedError) Error() string {
	return fmt.Sprintf("no consent: decision %s", e.Decision)
}

// Is makes errors.Is(err, ErrNoConsent) true.
func (e *DeniedError) Is(target error) bool { return target == ErrNoConsent }

// Normalize fills defaults (Purpose TREAT) and validates q. The wire
// protocol carries every attribute, so all are required.
func (q Question) Normalize() (Question, error) {
	if q.Purpose == "" {
		q.Purpose = PurposeTreatment
	}
	if err := nl.ValidateBSN(q.PatientBSN); err != nil {
		return q, fmt.Errorf("%w: patient: %w", ErrInvalidQuestion, err)
	}
	if err := nl.ValidateURA(q.DataHolderURA); err != nil {
		return q, fmt.Errorf("%w: data holder: %w", ErrInvalidQuestion, err)
	}
	if err := nl.ValidateURA(q.RequesterURA); err != nil {
		return q, fmt.Errorf("%w: requester: %w", ErrInvalidQuestion, err)
	}
	for _, f := range []struct{ name, v string }{
		{"data holder type", q.DataHolderType},
		{"requester type", q.RequesterType},
		{"requester role", q.RequesterRole},
		{"requester UZI number", q.RequesterUZI},
		{"purpose", q.Purpose},
	} {
		if !validCode(f.v) {
			return q, fmt.Errorf("%w: %s missing or malformed", ErrInvalidQuestion, f.name)
		}
	}
	return q, nil
}

// validCode accepts the codes and numbers the attributes carry: 1..64
// characters of letters, digits, '.', '-' and '_'.
func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Require asks c and returns nil only for Permit; otherwise an error that
// wraps ErrNoConsent (a *DeniedError), ErrUnavailable or ErrInvalidQuestion,
// ready for Outcome.
func Require(ctx context.Context, c Checker, q Question) error {
	d, err := c.Decide(ctx, q)
	if err != nil {
		if errors.Is(err, ErrInvalidQuestion) || errors.Is(err, ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !d.Permitted() {
		return &DeniedError{Decision: d}
	}
	return nil
}

// Outcome translates the error of Require or Decide into the FHIR error the
// node answers with: 403 when consent is missing, 503 when the consent
// service could not decide (fail closed), 400 for an invalid question. The
// diagnostics never carry the internal cause; nil gives nil.
func Outcome(err error) *fhir.Error {
	if err == nil {
		return nil
	}
	var denied *DeniedError
	switch {
	case errors.As(err, &denied):
		return &fhir.Error{Status: http.StatusForbidden, Cause: err, Issues: []fhir.Issue{{
			Severity: "error", Code: "forbidden",
			Diagnostics: fmt.Sprintf("the patient has not given consent for this exchange (consent decision %s)", denied.Decision),
		}}}
	case errors.Is(err, ErrNoConsent):
		return &fhir.Error{Status: http.StatusForbidden, Cause: err, Issues: []fhir.Issue{{
			Severity: "error", Code: "forbidden",
			Diagnostics: "the patient has not given consent for this exchange",
		}}}
	case errors.Is(err, ErrInvalidQuestion):
		return &fhir.Error{Status: http.StatusBadRequest, Cause: err, Issues: []fhir.Issue{{
			Severity: "error", Code: "invalid",
			Diagnostics: "consent cannot be checked: " + publicReason(err),
		}}}
	}
	return &fhir.Error{Status: http.StatusServiceUnavailable, Cause: err, Issues: []fhir.Issue{{
		Severity: "error", Code: "transient",
		Diagnostics: "the consent service could not be consulted; access is refused until it answers",
	}}}
}

// publicReason is the part of an ErrInvalidQuestion message safe to show: it
// names the attribute, never its value.
func publicReason(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, ErrInvalidQuestion.Error()+": "); ok {
		msg = after
	}
	// "patient: invalid BSN: ..." -> "patient is invalid"
	if name, _, ok := strings.Cut(msg, ":"); ok {
		return name + " is invalid"
	}
	return msg
}
