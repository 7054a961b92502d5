package rest

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// ParseRequest parses r the way Serve does, so that a caller can decide on
// the request (pre-authorize) before serving it. Errors are *fhir.Error
// values with the status Serve would answer. The body is read and put back,
// so r can still be passed to Serve afterwards.
func (s *Server) ParseRequest(r *http.Request, tenant, base, path string) (*Request, error) {
	req, err := s.parse(r, tenant, base, path)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// parse always returns a Request, filled in as far as it got, so that errors
// can be answered and observed.
func (s *Server) parse(r *http.Request, tenant, base, path string) (*Request, error) {
	req := &Request{
		Tenant: tenant,
		Base:   strings.TrimSuffix(base, "/"),
		Params: r.URL.Query(),
		HTTP:   r,
		format: jsonCodec{},
	}
	method := r.Method
	if method == http.MethodHead { // HEAD is GET without the body (RFC 9110 §9.3.2)
		method = http.MethodGet
	}
	if err := s.route(req, method, strings.Trim(path, "/")); err != nil {
		return req, err
	}
	f, err := negotiate(r.Header.Get("Accept"), req.Params.Get("_format"), s.version)
	if err != nil {
		return req, err
	}
	req.format = f

	switch {
	case req.Interaction == InteractionCreate || req.Interaction == InteractionUpdate:
		body, err := s.readBody(r)
		if err != nil {
			return req, err
		}
		if req.Body, err = s.resourceBody(r.Header.Get("Content-Type"), body, req); err != nil {
			return req, err
		}
	case req.Interaction == InteractionTransaction:
		body, err := s.readBody(r)
		if err != nil {
			return req, err
		}
		if req.Body, err = s.bundleBody(r.Header.Get("Content-Type"), body, req); err != nil {
			return req, err
		}
	case req.Interaction == InteractionOperation && req.Operation == OperationValidate:
		body, err := s.readBody(r)
		if err != nil {
			return req, err
		}
		if err := s.validateInput(r.Header.Get("Content-Type"), body, req); err != nil {
			return req, err
		}
	case req.Interaction == InteractionSearchType && r.Method == http.MethodPost:
		if err := s.readForm(r, req); err != nil {
			return req, err
		}
	}
	return req, nil
}

// route fills in the interaction and the URL parts of req from method and
// path (without leading or trailing slash).
func (s *Server) route(req *Request, method, path string) error {
	switch path {
	case "":
		if method == http.MethodPost { // batch or transaction: which one the Bundle says
			req.Interaction = InteractionTransaction
			return nil
		}
		return fhir.Errorf(http.StatusNotFound, "not-supported", "whole-system search is not supported")
	case "metadata":
		return allow(req, method, InteractionCapabilities, "GET")
	case "_history":
		if err := s.historySupported(); err != nil {
			return err
		}
		return allow(req, method, InteractionHistorySystem, "GET")
	}
	parts := strings.Split(path, "/")
	typ := parts[0]
	if !s.types[typ] {
		if strings.HasPrefix(typ, "$") || strings.HasPrefix(typ, "_") {
			return fhir.Errorf(http.StatusNotFound, "not-supported", "whole-system interactions are not supported")
		}
		return fhir.Errorf(http.StatusNotFound, "not-supported", "unknown resource type %q in FHIR %s (fhirVersion %s)", typ, strings.ToUpper(string(s.version)), s.version.MimeVersion())
	}
	req.Type = typ
	switch len(parts) {
	case 1: // [type]
		switch method {
		case http.MethodGet:
			req.Interaction = InteractionSearchType
			return nil
		case http.MethodPost:
			req.Interaction = InteractionCreate
			return nil
		case http.MethodPut, http.MethodDelete:
			// Conditional update and delete: the query says which resource.
			if len(criteria(req.Params)) > 0 {
				req.Interaction = InteractionUpdate
				if method == http.MethodDelete {
					req.Interaction = InteractionDelete
				}
				return nil
			}
		}
		return methodNotAllowed(method, "GET, POST")
	case 2: // [type]/[id], [type]/_search, [type]/$op
		p := parts[1]
		switch {
		case p == "_search":
			return allow(req, method, InteractionSearchType, "POST")
		case p == "_history":
			if err := s.historySupported(); err != nil {
				return err
			}
			return allow(req, method, InteractionHistoryType, "GET")
		case strings.HasPrefix(p, "$"):
			req.Operation = p
			return s.routeOperation(req, method, typ, "")
		}
		if !validID(p) {
			return fhir.Errorf(http.StatusBadRequest, "invalid", "%q is not a valid resource id", clip(p))
		}
		req.ID = p
		switch method {
		case http.MethodGet:
			req.Interaction = InteractionRead
			return nil
		case http.MethodPut:
			req.Interaction = InteractionUpdate
			return nil
		case http.MethodDelete:
			req.Interaction = InteractionDelete
			return nil
		}
		return methodNotAllowed(method, "GET, PUT, DELETE")
	case 3: // [type]/[id]/_history, [type]/[id]/$op
		switch {
		case parts[2] == "_history":
			if !validID(parts[1]) {
				return fhir.Errorf(http.StatusBadRequest, "invalid", "%q is not a valid resource id", clip(parts[1]))
			}
			if err := s.historySupported(); err != nil {
				return err
			}
			req.ID = parts[1]
			return allow(req, method, InteractionHistoryInstance, "GET")
		case strings.HasPrefix(parts[2], "$"):
			req.Operation = parts[2]
			if !validID(parts[1]) {
				return fhir.Errorf(http.StatusBadRequest, "invalid", "%q is not a valid resource id", clip(parts[1]))
			}
			req.ID = parts[1]
			return s.routeOperation(req, method, typ, parts[1])
		}
	case 4: // [type]/[id]/_history/[vid]
		if parts[2] != "_history" {
			break
		}
		if !validID(parts[1]) || !validID(parts[3]) {
			return fhir.Errorf(http.StatusBadRequest, "invalid", "not a valid resource id or version id")
		}
		req.ID, req.VersionID = parts[1], parts[3]
		return allow(req, method, InteractionVRead, "GET")
	}
	return fhir.Errorf(http.StatusNotFound, "not-supported", "no FHIR interaction is served at this path")
}

// allow sets the interaction when method is the one allowed, a 405 otherwise.
func allow(req *Request, method, interaction, allowed string) error {
	if method != allowed {
		return methodNotAllowed(method, allowed)
	}
	req.Interaction = interaction
	return nil
}

// allowError is the cause of a 405; writeError sends its Allow header.
type allowError struct{ allow string }

func (e *allowError) Error() string { return "method not allowed; allowed: " + e.allow }

func methodNotAllowed(method, allowed string) error {
	e := fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "method %s is not allowed here; allowed: %s", clip(method), allowed)
	e.Cause = &allowError{allowed}
	return e
}

// validID reports whether s is a FHIR id: [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// clip keeps client input quoted in diagnostics short.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// readBody reads the whole body, up to the limit, and puts it back on r.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > s.maxBody {
		return nil, tooLarge(s.maxBody)
	}
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil {
		e := fhir.Errorf(http.StatusBadRequest, "incomplete", "the request body could not be read")
		e.Cause = err
		return nil, e
	}
	if int64(len(b)) > s.maxBody {
		return nil, tooLarge(s.maxBody)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

func tooLarge(limit int64) error {
	return fhir.Errorf(http.StatusRequestEntityTooLarge, "too-long", "the request body exceeds %d bytes", limit)
}

// readForm merges the form body of POST [type]/_search into req.Params.
func (s *Server) readForm(r *http.Request, req *Request) error {
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "POST _search takes an application/x-www-form-urlencoded body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return fhir.Errorf(http.StatusBadRequest, "invalid", "the form body is malformed")
	}
	for k, vs := range form {
		req.Params[k] = append(req.Params[k], vs...)
	}
	return nil
}

// resourceBody checks a create or update body and returns it as FHIR JSON:
// a supported media type, valid UTF-8, nesting within maxDepth, well-formed
// JSON, a resourceType equal to the URL's and, for update, the URL's id.
func (s *Server) resourceBody(contentType string, body []byte, req *Request) ([]byte, error) {
	c, err := s.requestCodec(contentType)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "required", "a %s resource is required in the body", req.Type)
	}
	if body, err = c.decode(s.version, body); err != nil {
		return nil, err
	}
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	typ, id, err := identity(body)
	if err != nil {
		return nil, err
	}
	if typ != req.Type {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "the body holds a %q, the URL addresses a %s", clip(typ), req.Type)
	}
	if req.Interaction == InteractionUpdate && req.ID != "" && id != req.ID {
		if id == "" {
			return nil, fhir.Errorf(http.StatusBadRequest, "required", "the body has no id; it must be %q as in the URL", req.ID)
		}
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "the id in the body (%q) differs from the id in the URL (%q)", clip(id), req.ID)
	}
	if err := s.validate(body); err != nil {
		return nil, err
	}
	return body, nil
}

// validate checks a resource against the structure of the definitions; all
// problems are reported at once, with their locations.
func (s *Server) validate(body []byte) error {
	issues := validate.Resource(s.version, body)
	if len(issues) == 0 {
		return nil
	}
	return &fhir.Error{Status: http.StatusBadRequest, Issues: issues}
}

// bundleBody checks the body of a POST to the base: a Bundle of type
// transaction or batch, which sets req.Interaction. The entries are checked
// when the Bundle is processed.
func (s *Server) bundleBody(contentType string, body []byte, req *Request) ([]byte, error) {
	c, err := s.requestCodec(contentType)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "required", "a transaction or batch Bundle is required in the body")
	}
	if body, err = c.decode(s.version, body); err != nil {
		return nil, err
	}
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	typ, _, err := identity(body)
	if err != nil {
		return nil, err
	}
	if typ != "Bundle" {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "the base takes a Bundle of type transaction or batch, not a %q", clip(typ))
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", "the Bundle's type must be a string")
	}
	switch head.Type {
	case "transaction":
		req.Interaction = InteractionTransaction
	case "batch":
		req.Interaction = InteractionBatch
	default:
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "the base takes a Bundle of type transaction or batch, not %q", clip(head.Type))
	}
	return body, nil
}

// criteria are the search parameters of a conditional interaction: the
// query without the parameters that only shape the response.
func criteria(params url.Values) url.Values {
	out := url.Values{}
	for k, vs := range params {
		switch k {
		case "_format", "_pretty", "_summary", "_elements":
			continue
		}
		out[k] = vs
	}
	return out
}

// requestCodec is the codec for a request body's Content-Type; a missing
// Content-Type is taken as JSON.
func (s *Server) requestCodec(contentType string) (codec, error) {
	if contentType == "" {
		return jsonCodec{}, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "malformed Content-Type")
	}
	c, ok := codecs[mt]
	if !ok {
		if name, ok := notYet[mt]; ok {
			return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "%s is not supported on this endpoint; send application/fhir+json or application/fhir+xml", name)
		}
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type %s is not supported; send application/fhir+json or application/fhir+xml", clip(mt))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "charset %s is not supported; FHIR JSON is UTF-8", clip(cs))
	}
	if v, ok := params["fhirversion"]; ok && v != s.version.MimeVersion() {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "this endpoint serves fhirVersion %s, not %s", s.version.MimeVersion(), clip(v))
	}
	return c, nil
}

// preferences reads the Prefer header(s): return=… and handling=….
func preferences(h http.Header) (ret, handling string) {
	for _, line := range h.Values("Prefer") {
		for line != "" {
			var pref string
			pref, line, _ = strings.Cut(line, ",")
			pref, _, _ = strings.Cut(pref, ";")
			k, v, _ := strings.Cut(strings.TrimSpace(pref), "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "return":
				ret = v
			case "handling":
				handling = v
			}
		}
	}
	return ret, handling
}

// ifMatch returns the versionId of an If-Match header (W/"3" or "3").
func ifMatch(h http.Header) (string, error) {
	v := strings.TrimSpace(h.Get("If-Match"))
	if v == "" {
		return "", nil
	}
	v = strings.TrimPrefix(v, "W/")
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' || !validID(v[1:len(v)-1]) {
		return "", fhir.Errorf(http.StatusBadRequest, "invalid", `If-Match must be a version ETag such as W/"3"`)
	}
	return v[1 : len(v)-1], nil
}
