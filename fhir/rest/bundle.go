package rest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
)

// view is what _summary and _elements ask of the returned resources.
type view struct {
	count    bool            // _summary=count: the total only
	elements map[string]bool // _elements: these top-level elements only
	noText   bool            // _summary=data: everything but the narrative
	summary  string          // _summary=true or text (summaryTrue, summaryText)
}

// subsets reports whether resources are to be cut down (and tagged).
func (v view) subsets() bool { return v.elements != nil || v.noText || v.summary != "" }

func (v view) keep(key string) bool {
	if v.noText && key == "text" {
		return false
	}
	return v.elements == nil || v.elements[key]
}

// view reads _summary and _elements. _summary=true and =text cut the
// resources down by the isSummary and cardinality flags of the definitions
// (fhir/spec); _elements may not be combined with them.
func (s *Server) view(req *Request, search bool) (view, error) {
	var v view
	for _, k := range []string{"_summary", "_elements"} {
		if len(req.Params[k]) > 1 {
			return v, paramError(k, "may be given once")
		}
	}
	switch summary := req.Params.Get("_summary"); summary {
	case "", "false":
	case "count":
		if !search {
			return v, paramError("_summary", "count applies to searches only")
		}
		v.count = true
	case "data":
		v.noText = true
	case summaryTrue, summaryText:
		if req.Params.Has("_elements") {
			return v, paramError("_summary", "_summary="+summary+" cannot be combined with _elements")
		}
		v.summary = summary
	default:
		return v, paramError("_summary", "must be one of true, text, data, count, false")
	}
	for _, list := range req.Params["_elements"] {
		names := s.elementNames(req.Type)
		for _, e := range strings.Split(list, ",") {
			e = strings.TrimSpace(e)
			e = strings.TrimPrefix(e, req.Type+".")
			if e == "" {
				continue
			}
			// An unknown name would silently return resources without it.
			keep, ok := names[e]
			if !ok {
				return v, paramError("_elements", fmt.Sprintf("%q is not an element of %s", clip(e), req.Type))
			}
			if v.elements == nil {
				v.elements = make(map[string]bool)
			}
			for _, n := range keep {
				v.elements[n] = true
			}
		}
	}
	return v, nil
}

// paramError is a 400 naming a result parameter the HTTP layer checks.
func paramError(param, reason string) *fhir.Error {
	e := fhir.Errorf(http.StatusBadRequest, "invalid", "search parameter %s: %s", param, reason)
	e.Issues[0].Expression = []string{param}
	return e
}

// elementNames maps the names _elements accepts for a resource type (a
// top-level element, a choice element by its base name or by a typed
// name) to the JSON member names they keep.
func (s *Server) elementNames(typ string) map[string][]string {
	if m, ok := s.elements.Load(typ); ok {
		return m.(map[string][]string)
	}
	out := map[string][]string{}
	for _, e := range spec.For(s.version).Elements(typ) {
		name, ok := strings.CutPrefix(e.Path, typ+".")
		if !ok || strings.Contains(name, ".") {
			continue
		}
		if base, choice := strings.CutSuffix(name, "[x]"); choice {
			for _, t := range e.Types {
				typed := base + strings.ToUpper(t[:1]) + t[1:]
				out[typed] = []string{typed}
				out[base] = append(out[base], typed)
			}
			continue
		}
		out[name] = []string{name}
	}
	s.elements.Store(typ, out)
	return out
}

// subsettedTag is the meta.tag coding that marks a resource as incomplete.
func (s *Server) subsettedTag() []byte {
	if s.version == fhir.R4 {
		return []byte(`{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}`)
	}
	return []byte(`{"system":"http://hl7.org/fhir/v3/ObservationValue","code":"SUBSETTED","display":"subsetted"}`)
}

// bundle writes a searchset Bundle for page. The stored resource bodies are
// copied in as they are; only _elements/_summary=data matches are rewritten.
func (s *Server) bundle(req *Request, page store.Page, v view, at time.Time) ([]byte, error) {
	path := req.Base + "/" + req.Type
	if req.Operation != "" {
		path += "/" + req.Operation
	}
	size := 256
	if !v.count {
		for _, r := range page.Matches {
			size += len(r.Body) + len(req.Base) + len(r.Type) + len(r.ID) + 64
		}
		for _, r := range page.Included {
			size += len(r.Body) + len(req.Base) + len(r.Type) + len(r.ID) + 64
		}
	}
	var buf bytes.Buffer
	buf.Grow(size)
	buf.WriteString(`{"resourceType":"Bundle"`)
	s.answeredAt(&buf, at)
	buf.WriteString(`,"type":"searchset","total":`)
	buf.WriteString(strconv.Itoa(page.Total))
	// The links carry the parameters the search used (FHIR: the self link
	// tells the client what was applied), so not the ignored ones.
	used := make(url.Values, len(req.Params))
	for k, vs := range req.Params {
		if !slices.Contains(page.Ignored, k) {
			used[k] = vs
		}
	}
	buf.WriteString(`,"link":[{"relation":"self","url":`)
	appendString(&buf, withQuery(path, used))
	buf.WriteByte('}')
	if page.NextOffset >= 0 && !v.count {
		next := make(url.Values, len(used)+1)
		for k, vs := range used {
			next[k] = vs
		}
		next["_offset"] = []string{strconv.Itoa(page.NextOffset)}
		buf.WriteString(`,{"relation":"next","url":`)
		appendString(&buf, withQuery(path, next))
		buf.WriteByte('}')
	}
	buf.WriteByte(']')
	if v.count {
		buf.WriteByte('}')
		return buf.Bytes(), nil
	}
	buf.WriteString(`,"entry":[`)
	first := true
	entry := func(r store.Resource, mode string, body []byte) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.WriteString(`{"fullUrl":`)
		appendString(&buf, req.Base+"/"+r.Type+"/"+r.ID)
		buf.WriteString(`,"resource":`)
		buf.Write(body)
		buf.WriteString(`,"search":{"mode":"`)
		buf.WriteString(mode)
		buf.WriteString(`"}}`)
	}
	for _, r := range page.Matches {
		body := []byte(r.Body)
		if v.subsets() {
			var err error
			if body, err = s.shape(r.Type, body, v); err != nil {
				return nil, err
			}
		}
		entry(r, "match", body)
	}
	for _, r := range page.Included {
		entry(r, "include", r.Body)
	}
	if len(page.Ignored) > 0 {
		// Lenient mode: tell the client which parameters had no effect.
		issues := make([]fhir.Issue, len(page.Ignored))
		for i, p := range page.Ignored {
			issues[i] = fhir.Issue{Severity: "warning", Code: "not-supported", Expression: []string{clip(p)},
				Diagnostics: "unknown search parameter " + clip(p) + " was ignored: the result is not restricted by it (send Prefer: handling=strict to have it refused)"}
		}
		if !first {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"resource":`)
		buf.Write(fhir.OperationOutcome(issues...))
		buf.WriteString(`,"search":{"mode":"outcome"}}`)
	}
	buf.WriteString("]}")
	return buf.Bytes(), nil
}

// withQuery is path with params as its query, in the normal form of
// url.Values.Encode (sorted by key).
func withQuery(path string, params url.Values) string {
	if len(params) == 0 {
		return path
	}
	return path + "?" + params.Encode()
}
