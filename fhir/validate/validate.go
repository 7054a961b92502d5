// Package validate checks FHIR resources against the structure of the core
// definitions of their FHIR version (fhir/spec): known resource type, known
// elements, JSON shape (array or single), required elements, primitive
// value formats and well-formed references. Profiles and terminology are
// not checked here.
package validate

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
)

// MaxDepth is the deepest nesting of JSON objects and arrays Resource
// accepts; real resources stay far below it.
const MaxDepth = 100

// maxIssues bounds the report on hostile input.
const maxIssues = 100

// Resource checks one resource in FHIR JSON and returns every problem found,
// each with its location as a FHIRPath-like expression
// ("Patient.name[0].given[1]"). No issues means the resource is structurally
// valid.
func Resource(v fhir.Version, body json.RawMessage) []fhir.Issue {
	s := SchemaFor(v)
	if s == nil {
		return []fhir.Issue{issue("not-supported", "", "unknown FHIR version "+string(v))}
	}
	if Depth(body) > MaxDepth {
		return []fhir.Issue{issue("structure", "", "the resource nests deeper than "+strconv.Itoa(MaxDepth)+" levels")}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return []fhir.Issue{issue("structure", "", "the resource is not valid JSON")}
	}
	if dec.More() {
		return []fhir.Issue{issue("structure", "", "the resource is followed by more JSON")}
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return []fhir.Issue{issue("structure", "", "the resource is not a JSON object")}
	}
	c := &checker{s: s}
	c.resource(obj, "", 0)
	return c.issues
}

// Value checks a decoded resource (json.Decoder.UseNumber) the way Resource
// checks its JSON.
func Value(v fhir.Version, res map[string]any) []fhir.Issue {
	s := SchemaFor(v)
	if s == nil {
		return []fhir.Issue{issue("not-supported", "", "unknown FHIR version "+string(v))}
	}
	c := &checker{s: s}
	c.resource(res, "", 0)
	return c.issues
}

func issue(code, loc, msg string) fhir.Issue {
	is := fhir.Issue{Severity: "error", Code: code, Diagnostics: msg}
	if loc != "" {
		is.Expression = []string{loc}
		is.Diagnostics = loc + " " + msg
	}
	return is
}

type checker struct {
	s      *Schema
	issues []fhir.Issue
}

func (c *checker) add(code, loc, msg string) {
	switch {
	case len(c.issues) < maxIssues:
		c.issues = append(c.issues, issue(code, loc, msg))
	case len(c.issues) == maxIssues:
		c.issues = append(c.issues, fhir.Issue{Severity: "error", Code: "too-costly", Diagnostics: "more problems were found; only the first " + strconv.Itoa(maxIssues) + " are listed"})
	}
}

// resource checks a resource at loc ("" for the root, else the element
// holding it, e.g. "Bundle.entry[0].resource"); containedIn is the nesting
// of contained resources.
func (c *checker) resource(obj map[string]any, loc string, containedIn int) {
	rt, ok := obj["resourceType"].(string)
	if !ok {
		c.add("required", loc, "has no resourceType")
		return
	}
	n := c.s.Resource(rt)
	if n == nil {
		at := loc
		if at == "" {
			at = "resourceType"
		}
		c.add("not-supported", at, strconv.Quote(rt)+" is not a resource type of FHIR "+string(c.s.Version))
		return
	}
	if loc == "" {
		loc = rt
	}
	if containedIn > 0 {
		if _, ok := obj["contained"]; ok {
			c.add("structure", loc+".contained", "a contained resource must not contain resources")
		}
	}
	c.object(n, obj, loc, containedIn)
}

// object checks the members of a resource, complex value or backbone
// element against node n.
func (c *checker) object(n *Node, obj map[string]any, loc string, containedIn int) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	chosen := map[*Field]string{}
	for _, key := range keys {
		val := obj[key]
		if n.Resource && key == "resourceType" {
			continue
		}
		if key == "fhir_comments" && c.s.Version == fhir.STU3 {
			continue
		}
		name, under := strings.CutPrefix(key, "_")
		f, typ, ok := n.Lookup(name)
		if !ok {
			c.add("structure", loc+"."+key, "is not an element of "+n.Path)
			continue
		}
		if f.Choice {
			if other, dup := chosen[f]; dup && other != name {
				c.add("structure", loc+"."+key, "and "+other+" are both given; "+f.Name+"[x] takes one type")
			}
			chosen[f] = name
		}
		at := loc + "." + name
		if under {
			if !IsPrimitive(typ) || IsXHTML(typ) {
				c.add("structure", loc+"."+key, "is only allowed for primitive elements")
				continue
			}
			c.primitiveExtras(f, val, obj[name], loc+"."+key)
			continue
		}
		if n.Resource && name == "id" {
			typ = "id" // R4 types Resource.id as string; its value is an id
		}
		c.value(f, typ, val, obj["_"+name], at, containedIn)
	}
	for _, f := range n.Fields {
		if !f.Required || present(obj, f) {
			continue
		}
		name := f.Name
		if f.Choice {
			name += "[x]"
		}
		c.add("required", loc+"."+name, "is required")
	}
}

// present reports whether obj holds field f (a value or, for primitives,
// only its extensions).
func present(obj map[string]any, f *Field) bool {
	if !f.Choice {
		_, a := obj[f.Name]
		_, b := obj["_"+f.Name]
		return a || b
	}
	for _, t := range f.Types {
		name := f.NameFor(t)
		if _, ok := obj[name]; ok {
			return true
		}
		if _, ok := obj["_"+name]; ok {
			return true
		}
	}
	return false
}

// value checks the JSON value of field f (of type typ); extras is the
// matching "_name" member of a primitive, if any.
func (c *checker) value(f *Field, typ string, val, extras any, loc string, containedIn int) {
	arr, isArr := val.([]any)
	if !f.Repeats {
		if isArr {
			c.add("structure", loc, "must not be an array (it occurs at most once)")
			return
		}
		if val == nil {
			c.add("structure", loc, "must not be null")
			return
		}
		c.single(f, typ, val, loc, containedIn)
		return
	}
	if !isArr {
		c.add("structure", loc, "must be an array (it repeats)")
		return
	}
	if len(arr) == 0 {
		c.add("structure", loc, "must not be an empty array (leave the element out instead)")
		return
	}
	extArr, _ := extras.([]any)
	for i, item := range arr {
		at := loc + "[" + strconv.Itoa(i) + "]"
		if item == nil {
			if !IsPrimitive(typ) || i >= len(extArr) || extArr[i] == nil {
				c.add("structure", at, "must not be null")
			}
			continue
		}
		c.single(f, typ, item, at, containedIn)
	}
}

func (c *checker) single(f *Field, typ string, val any, loc string, containedIn int) {
	if IsPrimitive(typ) {
		if msg := Primitive(typ, val); msg != "" {
			c.add("value", loc, msg)
		}
		return
	}
	obj, ok := val.(map[string]any)
	if !ok {
		c.add("structure", loc, "must be a JSON object ("+typ+")")
		return
	}
	if typ == "Resource" {
		depth := containedIn
		if f.Name == "contained" {
			depth++
		}
		c.resource(obj, loc, depth)
		return
	}
	n := c.s.Child(f, typ)
	if n == nil {
		c.add("structure", loc, "has type "+typ+", which is not defined")
		return
	}
	if len(obj) == 0 {
		c.add("structure", loc, "must not be empty")
		return
	}
	c.object(n, obj, loc, containedIn)
	if typ == "Reference" {
		if ref, ok := obj["reference"].(string); ok {
			if msg := Reference(c.s, ref); msg != "" {
				c.add("value", loc+".reference", msg)
			}
		}
	}
}

// primitiveExtras checks the "_name" member of primitive field f: an object
// (or, when f repeats, an array aligned with the values) of id and
// extension.
func (c *checker) primitiveExtras(f *Field, extras, values any, loc string) {
	elem := c.s.Type("Element")
	check := func(v any, at string) {
		obj, ok := v.(map[string]any)
		if !ok {
			c.add("structure", at, "id and extensions of a primitive must be a JSON object")
			return
		}
		if len(obj) == 0 {
			c.add("structure", at, "must not be empty (leave it out, or null in an array)")
			return
		}
		c.object(elem, obj, at, 0)
	}
	if !f.Repeats {
		check(extras, loc)
		return
	}
	arr, ok := extras.([]any)
	if !ok {
		c.add("structure", loc, "must be an array (the element repeats)")
		return
	}
	if len(arr) == 0 {
		c.add("structure", loc, "must not be an empty array (leave the element out instead)")
		return
	}
	vals, hasVals := values.([]any)
	if hasVals && len(vals) != len(arr) {
		c.add("structure", loc, "must have as many items as the values ("+strconv.Itoa(len(vals))+")")
	}
	for i, v := range arr {
		switch {
		case v != nil:
			check(v, loc+"["+strconv.Itoa(i)+"]")
		case !hasVals:
			// Neither a value nor extensions: the item says nothing.
			c.add("structure", loc+"["+strconv.Itoa(i)+"]", "must not be null when the element has no values")
		}
	}
}

// Reference checks a literal reference (Reference.reference) and returns
// what is wrong with it, or "": "#id" (contained), "Type/id",
// "Type/id/_history/vid", an absolute URL, "urn:uuid:…" or "urn:oid:…".
func Reference(s *Schema, ref string) string {
	switch {
	case ref == "":
		return "must not be empty"
	case strings.HasPrefix(ref, "#"):
		if ref != "#" && !IsID(ref[1:]) {
			return "is not a reference to a contained resource (#id)"
		}
		return ""
	case strings.HasPrefix(ref, "urn:uuid:"):
		if !uuidRe.MatchString(ref) {
			return "is not a urn:uuid: reference"
		}
		return ""
	case strings.HasPrefix(ref, "urn:oid:"):
		if !oidRe.MatchString(ref) {
			return "is not a urn:oid: reference"
		}
		return ""
	case strings.ContainsAny(ref, " \t\r\n"):
		return "contains whitespace"
	}
	if u, err := url.Parse(ref); err == nil && u.Scheme != "" {
		if u.Host == "" && u.Opaque == "" {
			return "is not an absolute URL"
		}
		return ""
	}
	parts := strings.Split(ref, "/")
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "_history") {
		return "is not a reference of the form Type/id"
	}
	if !s.defs.IsResourceType(parts[0]) {
		return "refers to " + strconv.Quote(parts[0]) + ", which is not a resource type"
	}
	if !IsID(parts[1]) || (len(parts) == 4 && !IsID(parts[3])) {
		return "has an invalid id"
	}
	return ""
}

// Depth returns the deepest nesting of objects and arrays in the JSON b,
// stopping early once it exceeds MaxDepth. It needs no valid JSON: brackets
// inside strings are skipped, everything else is counted.
func Depth(b []byte) int {
	d, deepest := 0, 0
	inString := false
	for i := 0; i < len(b); i++ {
		ch := b[i]
		if inString {
			switch ch {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch ch {
		case '"':
			inString = true
		case '{', '[':
			d++
			if d > deepest {
				deepest = d
				if deepest > MaxDepth {
					return deepest
				}
			}
		case '}', ']':
			d--
		}
	}
	return deepest
}
