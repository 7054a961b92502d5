package rest

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
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
	_, handling := preferences(req.HTTP.Header)
	strict := strings.EqualFold(handling, "strict")
	var ignored []string
	keys := make([]string, 0, len(req.Params))
	for k := range req.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := req.Params[k]
		known := historyParams[k]
		if !known {
			// As for search: an unknown parameter is ignored (and left out of
			// the self link) unless the client asks for strict handling.
			if strict {
				e := paramError(k, "is not a parameter of _history (use _since, _count)")
				e.Issues[0].Code = "not-supported"
				return Result{Err: e}
			}
			ignored = append(ignored, k)
			continue
		}
		if len(vs) != 1 {
			return Result{Err: paramError(clip(k), "may be given once")}
		}
		v := vs[0]
		switch k {
		case "_sort":
			// Versions come newest first, the order -_lastUpdated asks for.
			if v != "-_lastUpdated" {
				e := paramError(k, "history is served newest first only (-_lastUpdated)")
				e.Issues[0].Code = "not-supported"
				return Result{Err: e}
			}
		case "_at", "_list":
			// Ignoring these would answer with more than was asked.
			e := paramError(k, "is not supported on _history")
			e.Issues[0].Code = "not-supported"
			return Result{Err: e}
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
		}
	}
	page, err := h.History(ctx, req.Tenant, q)
	if err != nil {
		return Result{Err: err}
	}
	if req.ID != "" && page.Total == 0 && q.Since.IsZero() {
		return Result{Err: store.ErrNotFound}
	}
	return s.write(w, req, http.StatusOK, s.historyBundle(req, page, ignored), page.Versions)
}

// historyParams are the parameters _history knows; _at and _list are
// known in order to be refused.
var historyParams = map[string]bool{
	"_since": true, "_count": true, "_offset": true, "_sort": true, "_format": true, "_pretty": true, "_at": true, "_list": true,
}

// answeredAt writes Bundle.meta.lastUpdated and, where the Bundle has it
// (R4; STU3's Bundle has no timestamp), Bundle.timestamp: the instant the
// answer reflects.
func (s *Server) answeredAt(buf *bytes.Buffer, at time.Time) {
	if at.IsZero() {
		return
	}
	ts := at.UTC().Format(instantLayout)
	buf.WriteString(`,"meta":{"lastUpdated":"` + ts + `"}`)
	if s.version == fhir.R4 {
		buf.WriteString(`,"timestamp":"` + ts + `"`)
	}
}

// instantLayout is how Bundle times are written: UTC, milliseconds, as the
// store writes meta.lastUpdated.
const instantLayout = "2006-01-02T15:04:05.000Z07:00"

// historyBundle writes a history Bundle. A version's request is POST for
// the first version, DELETE for a deletion and PUT otherwise.
func (s *Server) historyBundle(req *Request, page store.HistoryPage, ignored []string) []byte {
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
	// The links carry the parameters used, not the ignored ones.
	used := make(url.Values, len(req.Params))
	for k, vs := range req.Params {
		if !slices.Contains(ignored, k) {
			used[k] = vs
		}
	}
	buf.WriteString(`{"resourceType":"Bundle"`)
	// The store's AsOf: safe as the client's next _since.
	s.answeredAt(&buf, page.AsOf)
	buf.WriteString(`,"type":"history","total":`)
	buf.WriteString(strconv.Itoa(page.Total))
	buf.WriteString(`,"link":[{"relation":"self","url":`)
	appendString(&buf, withQuery(path, used))
	buf.WriteByte('}')
	if page.NextOffset >= 0 {
		next := make(url.Values, len(used)+1)
		for k, vs := range used {
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
