// Package fhir holds what every FHIR-speaking part of Schakel shares: the
// FHIR versions, resources as raw JSON documents, and OperationOutcome errors.
package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Version is a FHIR release Schakel serves side by side.
type Version string

// The supported FHIR versions.
const (
	STU3 Version = "stu3" // 3.0.2: BgZ MSZ 2.0, eOverdracht, TA Notified Pull
	R4   Version = "r4"   // 4.0.1: zib2020, mCSD
)

// MimeVersion is the fhirVersion parameter of a FHIR mime type for v.
func (v Version) MimeVersion() string {
	if v == R4 {
		return "4.0"
	}
	return "3.0"
}

// ParseVersion accepts "stu3"/"r4" and the numeric forms used in mime types.
func ParseVersion(s string) (Version, error) {
	switch s {
	case "stu3", "STU3", "3.0", "3.0.1", "3.0.2":
		return STU3, nil
	case "r4", "R4", "4.0", "4.0.1":
		return R4, nil
	}
	return "", fmt.Errorf("unknown FHIR version %q", s)
}

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"`              // fatal | error | warning | information
	Code        string   `json:"code"`                  // IssueType, e.g. invalid, not-found, forbidden
	Diagnostics string   `json:"diagnostics,omitempty"` // human readable, safe to show a peer
	Expression  []string `json:"expression,omitempty"`  // R4; where the problem is
	Location    []string `json:"location,omitempty"`    // STU3; where the problem is
}

// Error is a failure a FHIR endpoint reports as an OperationOutcome with an
// HTTP status. Its text is shown to the client: never put internals in it;
// wrap the internal cause in Cause for the logs.
type Error struct {
	Status int
	Issues []Issue
	Cause  error
}

func (e *Error) Error() string {
	msg := http.StatusText(e.Status)
	if len(e.Issues) > 0 {
		msg = e.Issues[0].Diagnostics
		if len(e.Issues) > 1 {
			msg = fmt.Sprintf("%s (and %d more)", msg, len(e.Issues)-1)
		}
	}
	if e.Cause != nil {
		return msg + ": " + e.Cause.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an Error with one issue of severity error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: fmt.Sprintf(format, args...)}}}
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return nil
}

// OperationOutcome renders issues as an OperationOutcome resource in JSON.
func OperationOutcome(issues ...Issue) json.RawMessage {
	if len(issues) == 0 {
		issues = []Issue{{Severity: "information", Code: "informational", Diagnostics: "ok"}}
	}
	b, _ := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		Issue        []Issue `json:"issue"`
	}{"OperationOutcome", issues})
	return b
}
