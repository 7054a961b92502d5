package rest

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/store"
)

// Paging of _history.
const (
	defaultHistoryCount = 50
	maxHistoryCount     = 1000
)

// historySupported reports (as a 404) when the store keeps no history.
func (s *Server) historySupported() error {
	if _, ok := s.store.(store.Historian); !ok {
		return fhir.Errorf(http.StatusNotFound, "not-supported", "history is not supported by this endpoint")
	}
	return nil
}

// history serves _history on an instance, a type or the tenant: a history
// Bundle, newest version first, paged with _count and _offset.
func (s *Server) history(ctx context.Context, w http.ResponseWriter, req *Request) Result {
	h, ok := s.store.(store.Historian)
	if !ok {
		return Result{Err: s.historySupported()}
	}
	q := store.HistoryQuery{Type: req.Type, ID: req.ID, Count: defaultHistoryCount}
	for k, vs := range req.Params {
		if len(vs) != 1 {
			return Result{Err: fhir.Errorf(http.StatusBadRequest, "invalid", "%s may be given once", clip(k))}
		}
		v := vs[0]
		switch k {
		case "_since":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return Result{Err: fhir.Errorf(http.StatusBadRequest, "invalid", "_since must be an instant such as 2025-01-01T00:00:00Z")}
			}
			q.Since = t
		case "_count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return Result{Err: fhir.Errorf(http.StatusBadRequest, "invalid", "_count must be a non-negative integer")}
			}
			q.Count = min(n, maxHistoryCount)
		case "_offset":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return Result{Err: fhir.Errorf(http.StatusBadRequest, "invalid", "_offset must be a non-negative integer")}
			}
			q.Offset = n
		case "_format", "_pretty":
		default:
			return Result{Err: fhir.Errorf(http.StatusBadRequest, "not-supported", "parameter %s is not supported on _history (use _since, _count)", clip(k))}
		}
	}
	page, err := h.History(ctx, req.Tenant, q)
	if err != nil {
		return Result{Err: err}
	}
	if req.ID != "" && page.Total == 0 && q.Since.IsZero() {
		return Result{Err: store.ErrNotFound}
	}
	return s.write(w, req, http.StatusOK, s.historyBundle(req, page), page.Versions)
}

// historyBundle writes a history Bundle. A version's request is POST for
// the first version, DELETE for a deletion and PUT otherwise.
func (s *Server) historyBundle(req *Request, page store.HistoryPage) []byte {
	path := req.Base
	switch {
	case req.ID != "":
		path += "/" + req.Type + "/" + req.ID + "/_history"
	case req.Type != "":
		path += "/" + req.Type + "/_history"
	default:
		path += "/_history"
	}
	size := 256
	for _, r := range page.Versions {
		size += len(r.Body) + 2*len(req.Base) + 256
	}
	var buf bytes.Buffer
	buf.Grow(size)
	buf.WriteString(`{"resourceType":"Bundle","type":"history","total":`)
	buf.WriteString(strconv.Itoa(page.Total))
	buf.WriteString(`,"link":[{"relation":"self","url":`)
	appendString(&buf, withQuery(path, req.Params))
	buf.WriteByte('}')
	if page.NextOffset >= 0 {
		next := make(url.Values, len(req.Params)+1)
		for k, vs := range req.Params {
			next[k] = vs
		}
		next["_offset"] = []string{strconv.Itoa(page.NextOffset)}
		buf.WriteString(`,{"relation":"next","url":`)
		appendString(&buf, withQuery(path, next))
		buf.WriteByte('}')
	}
	buf.WriteString(`]`)
	if len(page.Versions) > 0 {
		buf.WriteString(`,"entry":[`)
	}
	for i, r := range page.Versions {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"fullUrl":`)
		appendString(&buf, req.Base+"/"+r.Type+"/"+r.ID)
		if !r.Deleted && len(r.Body) > 0 {
			buf.WriteString(`,"resource":`)
			buf.Write(r.Body)
		}
		method, url, status := "PUT", r.Type+"/"+r.ID, "200 OK"
		switch {
		case r.Deleted:
			method, status = "DELETE", "204 No Content"
		case r.VersionID == "1":
			method, url, status = "POST", r.Type, "201 Created"
		}
		buf.WriteString(`,"request":{"method":"` + method + `","url":`)
		appendString(&buf, url)
		buf.WriteString(`},"response":{"status":"` + status + `"`)
		if r.VersionID != "" {
			buf.WriteString(`,"etag":`)
			appendString(&buf, `W/"`+r.VersionID+`"`)
		}
		if !r.LastUpdated.IsZero() {
			buf.WriteString(`,"lastModified":"` + r.LastUpdated.UTC().Format(time.RFC3339Nano) + `"`)
		}
		buf.WriteString(`}}`)
	}
	if len(page.Versions) > 0 {
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return buf.Bytes()
}
