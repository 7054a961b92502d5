package rest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

func (s *Server) read(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	v, err := s.view(req, false)
	if err != nil {
		return Result{Err: err}
	}
	res, err := s.store.Read(ctx, req.Tenant, req.Type, req.ID)
	if err == nil && res.Deleted {
		err = store.ErrDeleted
	}
	if err != nil {
		return Result{Err: err}
	}
	return s.writeResource(w, req, http.StatusOK, res, v)
}

func (s *Server) vread(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	v, err := s.view(req, false)
	if err != nil {
		return Result{Err: err}
	}
	res, err := s.store.VRead(ctx, req.Tenant, req.Type, req.ID, req.VersionID)
	if err == nil && res.Deleted {
		err = store.ErrDeleted
	}
	if err != nil {
		return Result{Err: err}
	}
	return s.writeResource(w, req, http.StatusOK, res, v)
}

func (s *Server) create(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	res, err := s.store.Create(ctx, req.Tenant, req.Body)
	if err != nil {
		return Result{Err: err}
	}
	w.Header().Set("Location", location(req.Base, res))
	return s.writeReturn(w, req, http.StatusCreated, res)
}

func (s *Server) update(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	match, err := ifMatch(req.HTTP.Header)
	if err != nil {
		return Result{Err: err}
	}
	res, created, err := s.store.Update(ctx, req.Tenant, req.Body, match)
	if err != nil {
		return Result{Err: err}
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", location(req.Base, res))
	}
	return s.writeReturn(w, req, status, res)
}

func (s *Server) delete(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	err := s.store.Delete(ctx, req.Tenant, req.Type, req.ID)
	// Deleting what is already deleted succeeds (FHIR: delete is idempotent).
	if err != nil && !errors.Is(err, store.ErrDeleted) {
		return Result{Err: err}
	}
	w.WriteHeader(http.StatusNoContent)
	return Result{Status: http.StatusNoContent}
}

// lastN serves Observation/$lastn: a search whose matches are the max most
// recent Observations per code.
func (s *Server) lastN(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	n := 1
	if vs := req.Params["max"]; len(vs) > 0 {
		var err error
		if len(vs) > 1 {
			return Result{Err: fhir.Errorf(http.StatusBadRequest, "invalid", "max may be given once")}
		}
		if n, err = strconv.Atoi(vs[0]); err != nil || n < 1 {
			return Result{Err: fhir.Errorf(http.StatusBadRequest, "invalid", "max must be a positive integer")}
		}
	}
	return s.search(ctx, w, req, n)
}

// search runs a type search (lastN 0) or $lastn and answers a searchset
// Bundle.
func (s *Server) search(ctx context.Context, w http.ResponseWriter, req *Request, lastN int) Result {
	v, err := s.view(req, true)
	if err != nil {
		return Result{Err: err}
	}
	_, handling := preferences(req.HTTP.Header)
	q := store.Query{
		Type:   req.Type,
		Params: storeParams(req.Params, lastN > 0),
		Strict: strings.EqualFold(handling, "strict"),
		LastN:  lastN,
	}
	page, err := s.store.Search(ctx, req.Tenant, q)
	if err != nil {
		return Result{Err: err}
	}
	doc, err := s.bundle(req, page, v)
	if err != nil {
		return Result{Err: err}
	}
	var returned []store.Resource
	if !v.count {
		returned = make([]store.Resource, 0, len(page.Matches)+len(page.Included))
		returned = append(append(returned, page.Matches...), page.Included...)
	}
	return s.write(w, req, http.StatusOK, doc, returned)
}

// resultParams are the search result parameters handled here rather than by
// the store.
var resultParams = []string{"_format", "_pretty", "_summary", "_elements"}

// storeParams are the parameters the store gets: the search parameters and
// the paging, sorting and include parameters.
func storeParams(params map[string][]string, lastN bool) map[string][]string {
	out := make(map[string][]string, len(params))
	for k, vs := range params {
		out[k] = vs
	}
	for _, k := range resultParams {
		delete(out, k)
	}
	if lastN {
		delete(out, "max")
	}
	return out
}

// writeReturn answers a create or update as the Prefer header asks:
// the resource (default), nothing, or an OperationOutcome.
func (s *Server) writeReturn(w http.ResponseWriter, req *Request, status int, res store.Resource) Result {
	ret, _ := preferences(req.HTTP.Header)
	switch ret {
	case "minimal":
		setVersionHeaders(w.Header(), res)
		w.WriteHeader(status)
		return Result{Status: status, Resources: []store.Resource{res}}
	case "OperationOutcome":
		setVersionHeaders(w.Header(), res)
		doc := fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational",
			Diagnostics: req.Interaction + " of " + res.Type + "/" + res.ID + " succeeded, version " + res.VersionID})
		return s.write(w, req, status, doc, []store.Resource{res})
	}
	return s.writeResource(w, req, status, res, view{})
}

// writeResource answers one resource with its version headers, or 304 when
// the client already has this version (If-None-Match).
func (s *Server) writeResource(w http.ResponseWriter, req *Request, status int, res store.Resource, v view) Result {
	h := w.Header()
	setVersionHeaders(h, res)
	if status == http.StatusOK && res.VersionID != "" && etagMatches(req.HTTP.Header.Get("If-None-Match"), res.VersionID) {
		w.WriteHeader(http.StatusNotModified)
		return Result{Status: http.StatusNotModified, Resources: []store.Resource{res}}
	}
	body := []byte(res.Body)
	if v.subsets() {
		var err error
		if body, err = subset(body, v.keep, s.subsettedTag()); err != nil {
			return Result{Err: err}
		}
	}
	return s.write(w, req, status, body, []store.Resource{res})
}

// write sends a FHIR JSON document in the negotiated format.
func (s *Server) write(w http.ResponseWriter, req *Request, status int, doc []byte, returned []store.Resource) Result {
	out, err := req.format.encode(doc)
	if err != nil {
		return Result{Err: err}
	}
	h := w.Header()
	h["Content-Type"] = []string{req.format.contentType(s.version)}
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(status)
	w.Write(out) //nolint:errcheck // the client went away; nothing to tell it
	return Result{Status: status, Resources: returned}
}

func setVersionHeaders(h http.Header, res store.Resource) {
	if res.VersionID != "" {
		h["Etag"] = []string{`W/"` + res.VersionID + `"`}
	}
	if !res.LastUpdated.IsZero() {
		h["Last-Modified"] = []string{res.LastUpdated.UTC().Format(http.TimeFormat)}
	}
}

// etagMatches reports whether an If-None-Match header names versionID.
func etagMatches(header, versionID string) bool {
	for header != "" {
		var tag string
		tag, header, _ = strings.Cut(header, ",")
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == `"`+versionID+`"` {
			return true
		}
	}
	return false
}

// location is the version-specific URL of res.
func location(base string, res store.Resource) string {
	return base + "/" + res.Type + "/" + res.ID + "/_history/" + res.VersionID
}
