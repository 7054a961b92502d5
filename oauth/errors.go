package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors. Every error this package returns, or hands back from a
// GrantResolver, is matched against these with errors.Is; each maps to one
// RFC 6749 §5.2 error code (RFC 6750 §3.1 for ErrInvalidToken).
var (
	// ErrInvalidRequest: the request is missing a parameter, repeats one, or is malformed.
	ErrInvalidRequest = errors.New("invalid_request")
	// ErrInvalidClient: client authentication failed.
	ErrInvalidClient = errors.New("invalid_client")
	// ErrInvalidGrant: the authorization grant (assertion, authorization_base) is invalid,
	// expired or revoked. GrantResolvers return it, wrapped, to refuse a grant.
	ErrInvalidGrant = errors.New("invalid_grant")
	// ErrInvalidScope: the requested scope is invalid, unknown or exceeds the grant.
	ErrInvalidScope = errors.New("invalid_scope")
	// ErrUnsupportedGrantType: the grant type is not supported by this server.
	ErrUnsupportedGrantType = errors.New("unsupported_grant_type")
	// ErrInvalidToken: an access token is missing, malformed, expired, not for this
	// audience or not bound to the presenting client certificate.
	ErrInvalidToken = errors.New("invalid_token")
	// ErrInsufficientScope: the access token is valid but lacks a scope the resource needs
	// (RFC 6750 §3.1). Resource servers return it, wrapped, to WriteBearerError.
	ErrInsufficientScope = errors.New("insufficient_scope")
	// ErrInvalidTarget: the RFC 8707 resource parameter is malformed, or names
	// a resource this server does not issue tokens for under the grant
	// (RFC 8707 §2). GrantResolvers return it, wrapped, to refuse a resource.
	ErrInvalidTarget = errors.New("invalid_target")
	// ErrTemporarilyUnavailable: something the decision needs from another
	// party (the addressbook, a client's key set) cannot be reached now; the
	// client may retry. RFC 6749 §4.1.2.1 defines the code, answered with 503.
	ErrTemporarilyUnavailable = errors.New("temporarily_unavailable")
)

// errServer marks failures that are ours, not the client's (RFC 6749 §5.2 has no
// code for them; "server_error" comes from §4.1.2.1 and is what clients expect).
var errServer = errors.New("server_error")

// errMissingToken is an ErrInvalidToken without credentials at all; RFC 6750 §3.1
// says the challenge then carries no error code.
var errMissingToken = fmt.Errorf("%w: no bearer token in the request", ErrInvalidToken)

// oauthError keeps what the peer may see (kind, description) apart from the
// internal cause, which is only logged.
type oauthError struct {
	kind        error // one of the sentinels above
	description string
	cause       error
}

// Error includes the internal cause: for logs, never for the peer.
func (e *oauthError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.kind, e.description, e.cause)
	}
	return fmt.Sprintf("%s: %s", e.kind, e.description)
}

func (e *oauthError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

func newError(kind error, description string, cause error) error {
	return &oauthError{kind: kind, description: description, cause: cause}
}

func invalidRequest(desc string) error { return newError(ErrInvalidRequest, desc, nil) }

func invalidClient(desc string, cause error) error { return newError(ErrInvalidClient, desc, cause) }

func invalidGrant(desc string, cause error) error { return newError(ErrInvalidGrant, desc, cause) }

func invalidToken(desc string, cause error) error { return newError(ErrInvalidToken, desc, cause) }

// errorKinds lists the sentinels in precedence order with their HTTP status
// (RFC 6749 §5.2: 400, except invalid_client which is 401).
var errorKinds = []struct {
	kind   error
	status int
}{
	{ErrInvalidClient, http.StatusUnauthorized},
	{ErrInvalidRequest, http.StatusBadRequest},
	{ErrUnsupportedGrantType, http.StatusBadRequest},
	{ErrInvalidScope, http.StatusBadRequest},
	{ErrInvalidGrant, http.StatusBadRequest},
	{ErrInvalidTarget, http.StatusBadRequest},
	{ErrTemporarilyUnavailable, http.StatusServiceUnavailable},
}

// classify returns the status, the RFC 6749 code and the description a peer may see.
func classify(err error) (status int, code, description string) {
	var oe *oauthError
	if errors.As(err, &oe) {
		for _, k := range errorKinds {
			if oe.kind == k.kind {
				return k.status, k.kind.Error(), oe.description
			}
		}
	}
	// Errors from a GrantResolver or ClientKeys: their text may hold internals.
	for _, k := range errorKinds {
		if errors.Is(err, k.kind) {
			switch k.kind {
			case ErrInvalidGrant:
				description = "the authorization grant is invalid, expired or revoked"
			case ErrInvalidScope:
				description = "the requested scope is invalid or exceeds the grant"
			case ErrInvalidClient:
				description = "client authentication failed"
			case ErrInvalidTarget:
				description = "the requested resource is invalid or not served under this grant"
			case ErrTemporarilyUnavailable:
				description = "a service the authorization server depends on cannot be reached; try again later"
			}
			return k.status, k.kind.Error(), description
		}
	}
	return http.StatusInternalServerError, errServer.Error(), "the authorization server could not handle the request"
}

// writeError is the one place that turns an error into an RFC 6749 §5.2 response.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, desc := classify(err)
	if s.cfg.OnRefusal != nil {
		// The refusal is recorded before it is answered.
		if rerr := s.cfg.OnRefusal(r, Refusal{Status: status, Code: code, Description: desc, Cause: err}); rerr != nil {
			s.log.ErrorContext(r.Context(), "refusal not recorded", "error", rerr)
			// Nothing was issued; the client may try again (a 503 names
			// itself temporarily_unavailable, as ErrTemporarilyUnavailable does).
			status, code, desc = http.StatusServiceUnavailable, ErrTemporarilyUnavailable.Error(), "the authorization server cannot record the request"
		}
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "oauth request failed", "path", r.URL.Path, "error", err)
	} else {
		s.log.InfoContext(r.Context(), "oauth request refused", "path", r.URL.Path, "code", code, "error", err)
	}
	body := map[string]string{"error": code}
	if desc != "" {
		body["error_description"] = desc
	}
	writeJSON(w, status, body)
}

// writeJSON writes a token-endpoint style JSON response; RFC 6749 §5.1 requires
// that responses carrying tokens or errors are never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteBearerError answers a request whose access token Verify refused, per
// RFC 6750 §3.1: 401 with `WWW-Authenticate: Bearer error="invalid_token"`, 403
// insufficient_scope for errors wrapping ErrInsufficientScope, and a bare
// `Bearer` challenge when the request carried no token. Other errors are 500.
// The description never contains the internal cause.
func WriteBearerError(w http.ResponseWriter, err error) {
	var (
		status    int
		challenge string
		body      map[string]string
	)
	switch {
	case errors.Is(err, errMissingToken):
		status, challenge = http.StatusUnauthorized, `Bearer`
		body = map[string]string{"error": "invalid_request", "error_description": "an access token is required"}
	case errors.Is(err, ErrInsufficientScope):
		status = http.StatusForbidden
		challenge = `Bearer error="insufficient_scope", error_description="the access token does not grant this request"`
		body = map[string]string{"error": "insufficient_scope", "error_description": "the access token does not grant this request"}
	case errors.Is(err, ErrInvalidToken):
		desc := "the access token is invalid"
		var oe *oauthError
		if errors.As(err, &oe) {
			desc = oe.description
		}
		status = http.StatusUnauthorized
		challenge = fmt.Sprintf(`Bearer error="invalid_token", error_description=%q`, desc)
		body = map[string]string{"error": "invalid_token", "error_description": desc}
	default:
		status = http.StatusInternalServerError
		body = map[string]string{"error": "server_error"}
	}
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeJSON(w, status, body)
}

// ErrorResponse is an RFC 6749 §5.2 error returned by a remote authorization
// server to Client.Token. errors.Is matches it against the sentinel of its code.
type ErrorResponse struct {
	Status      int    // HTTP status
	Code        string // RFC 6749 error code, e.g. invalid_grant
	Description string // error_description, as sent by the server
}

// Error implements error.
func (e *ErrorResponse) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("oauth: token request refused (%d %s): %s", e.Status, e.Code, e.Description)
	}
	return fmt.Sprintf("oauth: token request refused (%d %s)", e.Status, e.Code)
}

// Unwrap maps the code to the package's sentinel, if there is one.
func (e *ErrorResponse) Unwrap() error {
	for _, k := range []error{ErrInvalidRequest, ErrInvalidClient, ErrInvalidGrant, ErrInvalidScope, ErrUnsupportedGrantType, ErrInvalidTarget, ErrTemporarilyUnavailable} {
		if k.Error() == e.Code {
			return k
		}
	}
	return nil
}

// RefuseGrant is how a GrantResolver refuses with a reason the client may
// see: RFC 6749 §5.2 invalid_grant with description as error_description.
// Put nothing internal in description; cause is only logged.
func RefuseGrant(description string, cause error) error {
	return newError(ErrInvalidGrant, description, cause)
}

// RefuseTarget is how a GrantResolver refuses the requested resource with a
// reason the client may see: RFC 8707 §2 invalid_target. Put nothing
// internal in description; cause is only logged.
func RefuseTarget(description string, cause error) error {
	return newError(ErrInvalidTarget, description, cause)
}

// Refusal is what OnRefusal is told of a refused request.
type Refusal struct {
	Status      int    // HTTP status answered
	Code        string // RFC 6749 error code
	Description string // error_description as answered
	Cause       error  // the internal cause; never sent
}
