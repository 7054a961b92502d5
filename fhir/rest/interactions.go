package rest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	cond := req.HTTP.Header.Get("If-None-Exist")
	if cond == "" {
		res, err := s.store.Create(ctx, req.Tenant, req.Body)
		if err != nil {
			return Result{Err: err}
		}
		w.Header().Set("Location", location(req.Base, res))
		return s.writeReturn(w, req, http.StatusCreated, res)
	}
	crit, err := conditionQuery(cond, req.Type)
	if err != nil {
		return Result{Err: err}
	}
	var (
		res     store.Resource
		created bool
	)
	err = s.inTx(ctx, req.Tenant, func(tx store.Tx) error {
		match, n, err := matchOne(ctx, tx, req.Type, crit)
		switch {
		case err != nil:
			return err
		case n > 1:
			return fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", "If-None-Exist matches %d %s resources; it must match at most one", n, req.Type)
		case n == 1:
			res = match
			return nil
		}
		res, err = tx.Create(ctx, req.Body)
		created = true
		return err
	})
	if err != nil {
		return Result{Err: err}
	}
	if !created { // FHIR: the existing resource, 200, nothing written
		return s.writeReturn(w, req, http.StatusOK, res)
	}
	w.Header().Set("Location", location(req.Base, res))
	return s.writeReturn(w, req, http.StatusCreated, res)
}

func (s *Server) update(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	match, err := ifMatch(req.HTTP.Header)
	if err != nil {
		return Result{Err: err}
	}
	var (
		res     store.Resource
		created bool
	)
	if req.ID != "" {
		res, created, err = s.store.Update(ctx, req.Tenant, req.Body, match)
	} else {
		err = s.inTx(ctx, req.Tenant, func(tx store.Tx) error {
			res, created, err = conditionalUpdate(ctx, tx, req.Type, criteria(req.Params), req.Body, match)
			return err
		})
	}
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

// conditionalUpdate is PUT [type]?criteria: no match creates, one match
// updates it, more are an error.
func conditionalUpdate(ctx context.Context, tx store.Tx, typ string, crit url.Values, body []byte, ifMatch string) (store.Resource, bool, error) {
	m, n, err := matchOne(ctx, tx, typ, crit)
	if err != nil {
		return store.Resource{}, false, err
	}
	_, id, _ := identity(body)
	switch {
	case n > 1:
		return store.Resource{}, false, fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", "the conditional update matches %d %s resources; it must match at most one", n, typ)
	case n == 1:
		if id != "" && id != m.ID {
			return store.Resource{}, false, fhir.Errorf(http.StatusBadRequest, "invalid", "the id in the body (%q) differs from the id of the matching resource (%q)", clip(id), m.ID)
		}
		b, err := withID(body, m.ID)
		if err != nil {
			return store.Resource{}, false, err
		}
		return tx.Update(ctx, b, ifMatch)
	case id != "":
		return tx.Update(ctx, body, ifMatch)
	}
	res, err := tx.Create(ctx, body)
	return res, true, err
}

func (s *Server) delete(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	if req.ID == "" {
		return s.conditionalDelete(ctx, w, req)
	}
	err := s.store.Delete(ctx, req.Tenant, req.Type, req.ID)
	// Deleting what is already deleted succeeds (FHIR: delete is idempotent).
	if err != nil && !errors.Is(err, store.ErrDeleted) {
		return Result{Err: err}
	}
	w.WriteHeader(http.StatusNoContent)
	return Result{Status: http.StatusNoContent}
}

// conditionalDelete is DELETE [type]?criteria for at most one match.
func (s *Server) conditionalDelete(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	var deleted []store.Resource
	err := s.inTx(ctx, req.Tenant, func(tx store.Tx) error {
		m, n, err := matchOne(ctx, tx, req.Type, criteria(req.Params))
		switch {
		case err != nil:
			return err
		case n > 1:
			return fhir.Errorf(http.StatusPreconditionFailed, "multiple-matches", "the conditional delete matches %d %s resources; it deletes at most one", n, req.Type)
		case n == 0:
			if s.version == fhir.STU3 { // STU3 answers 404, R4 succeeds
				return fhir.Errorf(http.StatusNotFound, "not-found", "no %s matches the conditional delete", req.Type)
			}
			return nil
		}
		deleted = append(deleted, m)
		return tx.Delete(ctx, req.Type, m.ID)
	})
	if err != nil {
		return Result{Err: err}
	}
	w.WriteHeader(http.StatusNoContent)
	return Result{Status: http.StatusNoContent, Resources: deleted}
}

// conditionQuery parses an If-None-Exist (or ifNoneExist) value: a query
// string, optionally written as "[type]?query".
func conditionQuery(cond, typ string) (url.Values, error) {
	cond = strings.TrimPrefix(cond, typ)
	cond = strings.TrimPrefix(cond, "?")
	q, err := url.ParseQuery(cond)
	if err != nil || len(q) == 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "If-None-Exist must be a search query such as identifier=system|value")
	}
	return q, nil
}

// matchOne runs the search of a conditional interaction: the number of
// matches and, when there is exactly one, that resource. The criteria are
// parsed strictly: an unknown parameter must not widen the match to every
// resource.
func matchOne(ctx context.Context, tx store.Tx, typ string, crit url.Values) (store.Resource, int, error) {
	if len(crit) == 0 {
		return store.Resource{}, 0, fhir.Errorf(http.StatusBadRequest, "invalid", "a conditional interaction needs search criteria")
	}
	params := make(url.Values, len(crit)+1)
	for k, vs := range crit {
		switch k {
		case "_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_elements":
			return store.Resource{}, 0, fhir.Errorf(http.StatusBadRequest, "invalid", "%s has no place in conditional criteria", k)
		}
		params[k] = vs
	}
	params.Set("_count", "2") // enough to tell one from several
	page, err := tx.Search(ctx, store.Query{Type: typ, Params: params, Strict: true})
	if err != nil {
		return store.Resource{}, 0, err
	}
	n := max(page.Total, len(page.Matches))
	if n == 1 && len(page.Matches) == 1 {
		return page.Matches[0], 1, nil
	}
	return store.Resource{}, n, nil
}

// inTx runs fn atomically when the store can, else directly on the store
// (then a conditional interaction is check-then-act, not atomic).
func (s *Server) inTx(ctx context.Context, tenant string, fn func(tx store.Tx) error) error {
	if t, ok := s.store.(store.Transactional); ok {
		return t.InTx(ctx, tenant, fn)
	}
	return fn(direct{s.store, tenant})
}

// direct is the store.Tx view of a store without transactions.
type direct struct {
	st     store.Store
	tenant string
}

func (d direct) Create(ctx context.Context, body json.RawMessage) (store.Resource, error) {
	return d.st.Create(ctx, d.tenant, body)
}

func (d direct) Update(ctx context.Context, body json.RawMessage, ifMatch string) (store.Resource, bool, error) {
	return d.st.Update(ctx, d.tenant, body, ifMatch)
}

func (d direct) Delete(ctx context.Context, typ, id string) error {
	return d.st.Delete(ctx, d.tenant, typ, id)
}

func (d direct) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	return d.st.Read(ctx, d.tenant, typ, id)
}

func (d direct) Search(ctx context.Context, q store.Query) (store.Page, error) {
	return d.st.Search(ctx, d.tenant, q)
}

func (d direct) VRead(ctx context.Context, typ, id, versionID string) (store.Resource, error) {
	return d.st.VRead(ctx, d.tenant, typ, id, versionID)
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
	doc, returned, err := s.searchDoc(ctx, direct{s.store, req.Tenant}, req, lastN)
	if err != nil {
		return Result{Err: err}
	}
	return s.write(w, req, http.StatusOK, doc, returned)
}

// searchDoc runs a search through tx and returns the searchset Bundle and
// the resources in it.
func (s *Server) searchDoc(ctx context.Context, tx store.Tx, req *Request, lastN int) ([]byte, []store.Resource, error) {
	v, err := s.view(req, true)
	if err != nil {
		return nil, nil, err
	}
	_, handling := preferences(req.HTTP.Header)
	q := store.Query{
		Type:   req.Type,
		Params: storeParams(req.Params, lastN > 0),
		Strict: strings.EqualFold(handling, "strict"),
		LastN:  lastN,
	}
	// A search reflects what was committed when it started.
	at := time.Now()
	page, err := tx.Search(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	doc, err := s.bundle(req, page, v, at)
	if err != nil {
		return nil, nil, err
	}
	var returned []store.Resource
	if !v.count {
		returned = make([]store.Resource, 0, len(page.Matches)+len(page.Included))
		returned = append(append(returned, page.Matches...), page.Included...)
	}
	return doc, returned, nil
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
		if body, err = s.shape(res.Type, body, v); err != nil {
			return Result{Err: err}
		}
	}
	return s.write(w, req, status, body, []store.Resource{res})
}

// write sends a FHIR JSON document in the negotiated format.
func (s *Server) write(w http.ResponseWriter, req *Request, status int, doc []byte, returned []store.Resource) Result {
	out, err := req.format.encode(s.version, doc)
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
