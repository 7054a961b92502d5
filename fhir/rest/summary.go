package rest

import (
	"bytes"
	"strings"

	"github.com/schakel-nl/schakel/fhir/spec"
)

// Summary modes of _summary that cut resources down by the definitions.
const (
	summaryTrue = "true" // the elements marked isSummary, at every level
	summaryText = "text" // text, id, meta and the mandatory top-level elements
)

// shape cuts a resource of type typ down to what v asks for and tags it
// SUBSETTED. It is only called when v.subsets().
func (s *Server) shape(typ string, body []byte, v view) ([]byte, error) {
	switch v.summary {
	case summaryTrue:
		pruned, err := s.pruneSummary(typ, body)
		if err != nil {
			return nil, err
		}
		return subset(pruned, func(string) bool { return true }, s.subsettedTag())
	case summaryText:
		index := s.summaryIndex(typ)
		return subset(body, func(key string) bool {
			name := strings.TrimPrefix(key, "_")
			return name == "text" || index[typ+"."+name].mandatory
		}, s.subsettedTag())
	}
	return subset(body, v.keep, s.subsettedTag())
}

// summaryElement is what pruning needs of one element, found by its
// parent's path and its JSON member name.
type summaryElement struct {
	summary   bool
	mandatory bool // a top-level element with a minimum cardinality of 1 or more
	// children is the path the element's own children hang from (itself,
	// or the element whose definition it reuses); empty when they are not
	// defined in the resource (a data type, kept whole).
	children string
}

// summaryIndex maps "parent path.JSON name" (a typed name for a choice:
// Observation.valueQuantity) to the element, per resource type; built once
// per type from the spec tables.
func (s *Server) summaryIndex(typ string) map[string]summaryElement {
	if m, ok := s.summaries.Load(typ); ok {
		return m.(map[string]summaryElement)
	}
	defs := spec.For(s.version)
	els := defs.Elements(typ)
	parents := make(map[string]bool, len(els))
	for _, e := range els {
		if i := strings.LastIndexByte(e.Path, '.'); i > 0 {
			parents[e.Path[:i]] = true
		}
	}
	out := make(map[string]summaryElement, len(els))
	for _, e := range els {
		i := strings.LastIndexByte(e.Path, '.')
		if i < 0 {
			continue
		}
		el := summaryElement{summary: defs.InSummary(e.Path), mandatory: defs.Mandatory(e.Path)}
		switch {
		case e.ContentRef != "":
			el.children = e.ContentRef
		case parents[e.Path]:
			el.children = e.Path
		}
		parent, name := e.Path[:i], e.Path[i+1:]
		if base, choice := strings.CutSuffix(name, "[x]"); choice {
			for _, t := range e.Types {
				out[parent+"."+base+strings.ToUpper(t[:1])+t[1:]] = el
			}
			continue
		}
		out[parent+"."+name] = el
	}
	s.summaries.Store(typ, out)
	return out
}

// pruneSummary keeps of a resource the members whose element is marked
// isSummary, descending into backbone elements; resourceType, id and meta
// always stay. Members the definitions do not know are dropped.
func (s *Server) pruneSummary(typ string, body []byte) ([]byte, error) {
	return pruneObject(s.summaryIndex(typ), typ, body, true)
}

func pruneObject(index map[string]summaryElement, parent string, obj []byte, top bool) ([]byte, error) {
	ms, err := members(obj)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(obj))
	buf.WriteByte('{')
	first := true
	for _, m := range ms {
		val := m.val
		if !(top && (m.key == "resourceType" || m.key == "id" || m.key == "meta")) {
			el, ok := index[parent+"."+strings.TrimPrefix(m.key, "_")]
			if !ok || !el.summary {
				continue
			}
			if el.children != "" && !strings.HasPrefix(m.key, "_") {
				if val, err = pruneValue(index, el.children, val); err != nil {
					return nil, err
				}
			}
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		appendString(&buf, m.key)
		buf.WriteByte(':')
		buf.Write(val)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// pruneValue prunes a backbone element's value: an object or an array of
// them.
func pruneValue(index map[string]summaryElement, path string, val []byte) ([]byte, error) {
	i := skipSpace(val, 0)
	if i >= len(val) {
		return val, nil
	}
	switch val[i] {
	case '{':
		return pruneObject(index, path, val, false)
	case '[':
		var buf bytes.Buffer
		buf.Grow(len(val))
		buf.WriteByte('[')
		i = skipSpace(val, i+1)
		first := true
		for i < len(val) && val[i] != ']' {
			end := skipValue(val, i)
			item, err := pruneValue(index, path, val[i:end])
			if err != nil {
				return nil, err
			}
			if !first {
				buf.WriteByte(',')
			}
			first = false
			buf.Write(item)
			i = skipSpace(val, end)
			if i < len(val) && val[i] == ',' {
				i = skipSpace(val, i+1)
			}
		}
		buf.WriteByte(']')
		return buf.Bytes(), nil
	}
	return val, nil
}
