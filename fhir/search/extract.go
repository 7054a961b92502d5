package search

import (
	"encoding/json"
	"strings"

	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/nl"
)

// Index holds the values of a resource for every search parameter of its
// type, grouped by parameter type, ready to be written to index tables.
type Index struct {
	Tokens     []TokenValue
	Refs       []RefValue
	Dates      []DateValue
	Strings    []StringValue
	Quantities []QuantityValue
	URIs       []URIValue
	Numbers    []NumberValue
}

// TokenValue is one token: a coding, identifier, code or boolean. System is
// canonical (nl.CanonicalSystem); Text is normalised display/text for :text.
type TokenValue struct{ Param, System, Code, Text string }

// RefValue is a reference to Type/ID; URL is the reference as written when
// it was absolute.
type RefValue struct{ Param, Type, ID, URL string }

// DateValue is the range of instants a date covers, in Unix milliseconds,
// inclusive; open ends are MinTime and MaxTime.
type DateValue struct {
	Param     string
	Low, High int64
}

// StringValue is a string; Norm is Normalize(Raw).
type StringValue struct{ Param, Norm, Raw string }

// QuantityValue is a quantity; Code is the coded unit, Unit the human one.
type QuantityValue struct {
	Param              string
	Value              float64
	System, Code, Unit string
}

// URIValue is a uri, url or canonical.
type URIValue struct{ Param, URI string }

// NumberValue is a number.
type NumberValue struct {
	Param string
	Value float64
}

// node is a JSON value found by a path, with its FHIR type.
type node struct {
	v   any
	typ string
}

// Extract returns the index values of resource res (decoded with
// json.Decoder.UseNumber) of type typ for all search parameters of d.
// Contained resources are not indexed.
func Extract(d *spec.Definitions, typ string, res map[string]any) Index {
	var ix Index
	for i := range d.SearchParams(typ) {
		p := &d.SearchParams(typ)[i]
		for _, path := range p.Paths {
			for _, n := range walk(res, path) {
				ix.add(d, p, n)
			}
		}
	}
	return ix
}

// walk returns the nodes path selects in res.
func walk(res map[string]any, path spec.Path) []node {
	cur := []node{{v: res}}
	for i, s := range path {
		var next []node
		for _, n := range cur {
			obj, ok := n.v.(map[string]any)
			if !ok {
				continue
			}
			if s.Choice {
				for _, t := range s.Types {
					next = appendItems(next, obj[s.Name+upperFirst(t)], t, s)
				}
				continue
			}
			t := ""
			if len(s.Types) > 0 {
				t = s.Types[0]
			}
			next = appendItems(next, obj[s.Name], t, s)
		}
		cur = next
		if len(cur) == 0 || i == len(path)-1 {
			break
		}
	}
	return cur
}

func appendItems(out []node, v any, typ string, s spec.Step) []node {
	add := func(item any) {
		if item == nil || !matchesStep(item, s) {
			return
		}
		out = append(out, node{v: item, typ: typ})
	}
	if arr, ok := v.([]any); ok {
		for _, item := range arr {
			add(item)
		}
		return out
	}
	add(v)
	return out
}

func matchesStep(item any, s spec.Step) bool {
	if s.WhereKey == "" && s.Resolve == "" {
		return true
	}
	obj, ok := item.(map[string]any)
	if !ok {
		return false
	}
	if s.WhereKey != "" {
		if v, _ := obj[s.WhereKey].(string); v != s.WhereValue {
			return false
		}
	}
	if s.Resolve != "" {
		ref, _ := obj["reference"].(string)
		t, _, _ := ParseReference(ref)
		if t != s.Resolve {
			return false
		}
	}
	return true
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return ""
}

// ParseReference splits a literal reference (relative "Patient/123",
// absolute "https://x/fhir/Patient/123", optionally with "/_history/n") into
// type and id. Local references ("#x") and others give ok false.
func ParseReference(ref string) (typ, id string, ok bool) {
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return "", "", false
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimSuffix(ref, "/")
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 {
		return "", "", false
	}
	id = ref[j+1:]
	rest := ref[:j]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	if id == "" || typ == "" || typ[0] < 'A' || typ[0] > 'Z' {
		return "", "", false
	}
	return typ, id, true
}

func (ix *Index) add(d *spec.Definitions, p *spec.SearchParam, n node) {
	switch p.Type {
	case spec.Token:
		ix.addToken(p.Code, n)
	case spec.Reference:
		var ref string
		if obj, ok := n.v.(map[string]any); ok {
			ref, _ = obj["reference"].(string)
		} else {
			ref, _ = n.v.(string) // canonical / uri references
		}
		typ, id, ok := ParseReference(ref)
		if !ok || !d.IsResourceType(typ) {
			return
		}
		rv := RefValue{Param: p.Code, Type: typ, ID: id}
		if strings.Contains(ref, "://") {
			rv.URL = ref
		}
		ix.Refs = append(ix.Refs, rv)
	case spec.Date:
		ix.addDate(p.Code, n)
	case spec.String:
		ix.addString(p.Code, n)
	case spec.Quantity:
		obj, ok := n.v.(map[string]any)
		if !ok {
			return
		}
		num, ok := obj["value"].(json.Number)
		if !ok {
			return
		}
		f, err := num.Float64()
		if err != nil {
			return
		}
		q := QuantityValue{Param: p.Code, Value: f, System: str(obj["system"]), Code: str(obj["code"]), Unit: str(obj["unit"])}
		if n.typ == "Money" && q.Code == "" {
			q.Code = str(obj["currency"])
		}
		ix.Quantities = append(ix.Quantities, q)
	case spec.URI:
		if s, ok := n.v.(string); ok && s != "" {
			ix.URIs = append(ix.URIs, URIValue{Param: p.Code, URI: s})
		}
	case spec.Number:
		if num, ok := n.v.(json.Number); ok {
			if f, err := num.Float64(); err == nil {
				ix.Numbers = append(ix.Numbers, NumberValue{Param: p.Code, Value: f})
			}
		}
	}
}

func (ix *Index) addToken(param string, n node) {
	obj, isObj := n.v.(map[string]any)
	if !isObj {
		if s := str(n.v); s != "" {
			ix.Tokens = append(ix.Tokens, TokenValue{Param: param, Code: s})
		}
		return
	}
	coding := func(c map[string]any, text string) {
		code, system := str(c["code"]), nl.CanonicalSystem(str(c["system"]))
		if code == "" && system == "" {
			return
		}
		if display := str(c["display"]); display != "" {
			text = strings.TrimSpace(text + " " + display)
		}
		ix.Tokens = append(ix.Tokens, TokenValue{Param: param, System: system, Code: code, Text: Normalize(text)})
	}
	switch n.typ {
	case "CodeableConcept":
		text := str(obj["text"])
		codings, _ := obj["coding"].([]any)
		for _, c := range codings {
			if cm, ok := c.(map[string]any); ok {
				coding(cm, text)
			}
		}
		if len(codings) == 0 && text != "" {
			ix.Tokens = append(ix.Tokens, TokenValue{Param: param, Text: Normalize(text)})
		}
	case "Coding":
		coding(obj, "")
	case "Identifier":
		value := str(obj["value"])
		if value == "" {
			return
		}
		text := ""
		if t, ok := obj["type"].(map[string]any); ok {
			text = str(t["text"])
		}
		ix.Tokens = append(ix.Tokens, TokenValue{Param: param, System: nl.CanonicalSystem(str(obj["system"])), Code: value, Text: Normalize(text)})
	case "ContactPoint":
		if value := str(obj["value"]); value != "" {
			ix.Tokens = append(ix.Tokens, TokenValue{Param: param, Code: value})
		}
	}
}

func (ix *Index) addDate(param string, n node) {
	rangeOf := func(s string) (int64, int64, bool) {
		lo, hi, err := ParseDateRange(s)
		return lo, hi, err == nil
	}
	switch v := n.v.(type) {
	case string:
		if lo, hi, ok := rangeOf(v); ok {
			ix.Dates = append(ix.Dates, DateValue{Param: param, Low: lo, High: hi})
		}
	case map[string]any:
		switch n.typ {
		case "Period":
			ix.addPeriod(param, v)
		case "Timing":
			events, _ := v["event"].([]any)
			for _, e := range events {
				ix.addDate(param, node{v: e, typ: "dateTime"})
			}
			if r, ok := v["repeat"].(map[string]any); ok {
				if bp, ok := r["boundsPeriod"].(map[string]any); ok {
					ix.addPeriod(param, bp)
				}
			}
		}
	}
}

func (ix *Index) addPeriod(param string, p map[string]any) {
	lo, hi := MinTime, MaxTime
	start, _ := p["start"].(string)
	end, _ := p["end"].(string)
	if start == "" && end == "" {
		return
	}
	if start != "" {
		l, _, err := ParseDateRange(start)
		if err != nil {
			return
		}
		lo = l
	}
	if end != "" {
		_, h, err := ParseDateRange(end)
		if err != nil {
			return
		}
		hi = h
	}
	ix.Dates = append(ix.Dates, DateValue{Param: param, Low: lo, High: hi})
}

func (ix *Index) addString(param string, n node) {
	put := func(v any) {
		switch v := v.(type) {
		case string:
			if v != "" {
				ix.Strings = append(ix.Strings, StringValue{Param: param, Norm: Normalize(v), Raw: v})
			}
		case []any:
			for _, s := range v {
				if s, ok := s.(string); ok && s != "" {
					ix.Strings = append(ix.Strings, StringValue{Param: param, Norm: Normalize(s), Raw: s})
				}
			}
		}
	}
	obj, ok := n.v.(map[string]any)
	if !ok {
		put(n.v)
		return
	}
	var parts []string
	switch n.typ {
	case "HumanName":
		parts = []string{"text", "family", "given", "prefix", "suffix"}
	case "Address":
		parts = []string{"text", "line", "city", "district", "state", "postalCode", "country"}
	}
	for _, k := range parts {
		put(obj[k])
	}
}
