package rest

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/search"
	"github.com/schakel-nl/schakel/fhir/store"
)

// outcome translates err to what the client is told. This is the one place
// where store errors become HTTP statuses. Unknown errors become a generic
// 500; their cause is for the log only.
func outcome(req *Request, err error) *fhir.Error {
	if fe := fhir.AsError(err); fe != nil {
		if fe.Status == 0 || len(fe.Issues) == 0 {
			c := *fe
			if c.Status == 0 {
				c.Status = http.StatusInternalServerError
			}
			if len(c.Issues) == 0 {
				c.Issues = []fhir.Issue{{Severity: "error", Code: issueCode(c.Status), Diagnostics: http.StatusText(c.Status)}}
			}
			return &c
		}
		return fe
	}
	ref := req.Type + "/" + req.ID
	var e *fhir.Error
	var pe *search.ParamError
	switch {
	case errors.Is(err, store.ErrNotFound):
		if req.ID == "" {
			e = fhir.Errorf(http.StatusNotFound, "not-found", "resource not found")
		} else if req.VersionID != "" {
			e = fhir.Errorf(http.StatusNotFound, "not-found", "%s has no version %s", ref, req.VersionID)
		} else {
			e = fhir.Errorf(http.StatusNotFound, "not-found", "%s is not known", ref)
		}
	case errors.Is(err, store.ErrDeleted):
		e = fhir.Errorf(http.StatusGone, "deleted", "%s has been deleted", ref)
	case errors.Is(err, store.ErrVersionConflict):
		e = fhir.Errorf(http.StatusPreconditionFailed, "conflict", "%s has changed: the version in If-Match is not the current one", ref)
	case errors.As(err, &pe):
		// The issue names the parameter, as written, in expression too.
		e = fhir.Errorf(http.StatusBadRequest, "invalid", "search parameter %s: %s", clip(pe.Param), clipReason(pe.Reason))
		e.Issues[0].Expression = []string{clip(pe.Param)}
		if pe.Unknown {
			e.Issues[0].Code = "not-supported"
		}
	case errors.Is(err, store.ErrUnavailable):
		e = fhir.Errorf(http.StatusServiceUnavailable, "transient", "the store is unavailable; nothing was done, try again later")
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrInvalidSearch):
		// The store words these for the client (which element, which
		// parameter); they carry no internals.
		e = fhir.Errorf(http.StatusBadRequest, "invalid", "%s", err.Error())
	default:
		e = fhir.Errorf(http.StatusInternalServerError, "exception", "internal error")
	}
	e.Cause = err
	return e
}

// writeError answers err as an OperationOutcome and returns the status.
func (s *Server) writeError(w http.ResponseWriter, req *Request, err error) int {
	e := outcome(req, err)
	if e.Status >= 500 {
		s.log.ErrorContext(req.HTTP.Context(), "FHIR request failed",
			slog.String("tenant", req.Tenant), slog.String("interaction", req.Interaction),
			slog.String("type", req.Type), slog.String("id", req.ID), slog.Any("err", err))
	}
	h := w.Header()
	var ae *allowError
	if errors.As(err, &ae) {
		h.Set("Allow", ae.allow)
	}
	// Headers a successful path may have set before failing.
	h.Del("Location")
	h.Del("Etag")
	h.Del("Last-Modified")
	body := []byte(fhir.OperationOutcome(e.Issues...))
	// Errors go in the negotiated format, JSON when that is what failed.
	var c codec = jsonCodec{}
	if req != nil && req.format != nil {
		if out, err := req.format.encode(s.version, body); err == nil {
			c, body = req.format, out
		}
	}
	h["Content-Type"] = []string{c.contentType(s.version)}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(e.Status)
	w.Write(body) //nolint:errcheck // the client went away; nothing to tell it
	return e.Status
}

// issueCode is the OperationOutcome issue type for a status without issues.
func issueCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid"
	case http.StatusUnauthorized:
		return "login"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not-found"
	case http.StatusGone:
		return "deleted"
	case http.StatusConflict, http.StatusPreconditionFailed:
		return "conflict"
	case http.StatusMethodNotAllowed, http.StatusNotAcceptable, http.StatusUnsupportedMediaType:
		return "not-supported"
	case http.StatusRequestEntityTooLarge:
		return "too-long"
	}
	if status >= 500 {
		return "exception"
	}
	return "processing"
}

// clipReason keeps a reason that quotes client input (a search value)
// readable in diagnostics.
func clipReason(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
