package plateau

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/oauth"
)

// Refusal is the enforcer's no: the generic function whose plateau the
// request does not meet, the plateau required, the plateau the request (or
// the partner's agreement) delivers — 0 when it meets none — and a reason
// fit to show the peer.
type Refusal struct {
	Function  Function
	Required  int
	Delivered int
	Reason    string
	// Partner is the URA of the requesting organisation.
	Partner string
}

// Error implements error.
func (r *Refusal) Error() string {
	return fmt.Sprintf("plateau: %s refused (plateau %d required, %d delivered): %s", r.Function, r.Required, r.Delivered, r.Reason)
}

// Description is the text for the peer: the reason and the plateaus.
func (r *Refusal) Description() string {
	if r.Delivered == 0 {
		return fmt.Sprintf("%s (%s, plateau %d)", r.Reason, r.Function, r.Required)
	}
	return fmt.Sprintf("%s (%s: plateau %d required, plateau %d delivered)", r.Reason, r.Function, r.Required, r.Delivered)
}

// AsRefusal returns the Refusal in err's chain, or nil.
func AsRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// OAuthError is the refusal as the token endpoint answers it: RFC 6749
// §5.2 invalid_grant (the grant assertion does not deliver what the
// agreement requires). It wraps both oauth.ErrInvalidGrant and the Refusal.
func (r *Refusal) OAuthError() error {
	return oauth.RefuseGrant(r.Description(), r)
}

// FHIRError is the refusal as a FHIR endpoint answers it: 403 with an
// OperationOutcome (code forbidden) that states the reason. It wraps the
// Refusal as its cause.
func (r *Refusal) FHIRError() *fhir.Error {
	return &fhir.Error{Status: http.StatusForbidden, Cause: r,
		Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: r.Description()}}}
}
