package xml

import (
	"bytes"
	"encoding/json"
	stdxml "encoding/xml"
	"io"
	"strconv"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

const declaration = `<?xml version="1.0" encoding="UTF-8"?>`

// Encode converts a FHIR JSON resource to FHIR XML, elements in the order
// of the definitions. Members that are not elements of the definitions are
// an error (they have no place in XML), as are values of the wrong JSON
// kind.
func Encode(v fhir.Version, res json.RawMessage) ([]byte, error) {
	s := validate.SchemaFor(v)
	if s == nil {
		return nil, errorf("", "unknown FHIR version %q", string(v))
	}
	if len(res) > MaxSize {
		return nil, errorf("", "the document exceeds %d bytes", MaxSize)
	}
	if validate.Depth(res) > MaxDepth {
		return nil, errorf("", "the document nests deeper than %d levels", MaxDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(res))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, errorf("", "the document is not valid JSON")
	}
	if dec.More() {
		return nil, errorf("", "the document is followed by more JSON")
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, errorf("", "the document is not a JSON object")
	}
	e := &encoder{s: s}
	e.w.Grow(len(res)*2 + len(declaration))
	e.w.WriteString(declaration)
	if err := e.resource(obj, "", true); err != nil {
		return nil, err
	}
	return e.w.Bytes(), nil
}

type encoder struct {
	s *validate.Schema
	w bytes.Buffer
}

func (e *encoder) resource(obj map[string]any, loc string, root bool) error {
	rt, _ := obj["resourceType"].(string)
	if rt == "" {
		return errorf(loc, "has no resourceType")
	}
	n := e.s.Resource(rt)
	if n == nil {
		return errorf(loc, "%q is not a resource type of FHIR %s", clip(rt), string(e.s.Version))
	}
	if loc == "" {
		loc = rt
	}
	e.w.WriteByte('<')
	e.w.WriteString(rt)
	if root {
		e.w.WriteString(` xmlns="` + Namespace + `"`)
	}
	e.w.WriteByte('>')
	if err := e.children(n, obj, loc); err != nil {
		return err
	}
	e.w.WriteString("</")
	e.w.WriteString(rt)
	e.w.WriteByte('>')
	return nil
}

// children writes the elements of obj (the members of a resource, complex
// value or backbone element) in definition order, after checking that each
// member has a place.
func (e *encoder) children(n *validate.Node, obj map[string]any, loc string) error {
	for key := range obj {
		if n.Resource && key == "resourceType" {
			continue
		}
		if key == "fhir_comments" && e.s.Version == fhir.STU3 {
			continue // comments; XML has its own
		}
		name, under := strings.CutPrefix(key, "_")
		f, typ, ok := n.Lookup(name)
		if !ok || (under && !validate.IsPrimitive(typ)) {
			return errorf(loc+"."+clip(key), "is not an element of %s", n.Path)
		}
		if under && isAttribute(n, f) {
			return errorf(loc+"."+clip(key), "cannot carry extensions (it is an XML attribute)")
		}
	}
	for _, f := range n.Fields {
		if isAttribute(n, f) {
			continue
		}
		if !f.Choice {
			typ := ""
			if len(f.Types) > 0 {
				typ = f.Types[0]
			}
			if n.Resource && f.Name == "id" {
				typ = "id"
			}
			if err := e.field(f, typ, f.Name, obj, loc); err != nil {
				return err
			}
			continue
		}
		for _, t := range f.Types {
			if err := e.field(f, t, f.NameFor(t), obj, loc); err != nil {
				return err
			}
		}
	}
	return nil
}

// field writes every occurrence of the member name (and "_name") of obj.
func (e *encoder) field(f *validate.Field, typ, name string, obj map[string]any, loc string) error {
	val, hasVal := obj[name]
	ext, hasExt := obj["_"+name]
	if !hasVal && !hasExt {
		return nil
	}
	at := loc + "." + name
	if !f.Repeats {
		if _, arr := val.([]any); arr {
			return errorf(at, "must not be an array")
		}
		if !hasVal {
			val = nil
		}
		if !hasExt {
			ext = nil
		}
		return e.element(f, typ, name, val, ext, at)
	}
	vals, ok1 := val.([]any)
	exts, ok2 := ext.([]any)
	if (hasVal && !ok1) || (hasExt && !ok2) {
		return errorf(at, "must be an array")
	}
	if hasVal && hasExt && len(vals) != len(exts) {
		return errorf("_"+at, "must have as many items as %s", name)
	}
	for i := range max(len(vals), len(exts)) {
		var v, x any
		if i < len(vals) {
			v = vals[i]
		}
		if i < len(exts) {
			x = exts[i]
		}
		if err := e.element(f, typ, name, v, x, at+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
	}
	return nil
}

// element writes one occurrence; ext is the "_name" object of a primitive.
func (e *encoder) element(f *validate.Field, typ, name string, val, ext any, loc string) error {
	switch {
	case validate.IsXHTML(typ):
		s, ok := val.(string)
		if !ok {
			return errorf(loc, "must be a string of XHTML")
		}
		return e.xhtml(s, loc)
	case validate.IsPrimitive(typ):
		return e.primitive(typ, name, val, ext, loc)
	}
	obj, ok := val.(map[string]any)
	if !ok {
		return errorf(loc, "must be a JSON object")
	}
	if typ == "Resource" {
		e.w.WriteByte('<')
		e.w.WriteString(name)
		e.w.WriteByte('>')
		if err := e.resource(obj, loc, false); err != nil {
			return err
		}
		e.w.WriteString("</")
		e.w.WriteString(name)
		e.w.WriteByte('>')
		return nil
	}
	n := e.s.Child(f, typ)
	if n == nil {
		return errorf(loc, "has a type that is not defined")
	}
	return e.complex(n, name, obj, loc)
}

// complex writes an element with its attributes (id, Extension.url) and
// children.
func (e *encoder) complex(n *validate.Node, name string, obj map[string]any, loc string) error {
	e.w.WriteByte('<')
	e.w.WriteString(name)
	for _, f := range n.Fields {
		if !isAttribute(n, f) {
			continue
		}
		v, ok := obj[f.Name]
		if !ok {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return errorf(loc+"."+f.Name, "must be a string")
		}
		e.w.WriteByte(' ')
		e.w.WriteString(f.Name)
		e.w.WriteString(`="`)
		if err := escape(&e.w, s, true); err != nil {
			return errorf(loc+"."+f.Name, "%s", err.Error())
		}
		e.w.WriteByte('"')
	}
	mark := e.w.Len()
	e.w.WriteByte('>')
	if err := e.children(n, obj, loc); err != nil {
		return err
	}
	if e.w.Len() == mark+1 { // no children: <x/>
		e.w.Truncate(mark)
		e.w.WriteString("/>")
		return nil
	}
	e.w.WriteString("</")
	e.w.WriteString(name)
	e.w.WriteByte('>')
	return nil
}

// primitive writes a primitive element: the value attribute from val, the
// id attribute and extension children from ext.
func (e *encoder) primitive(typ, name string, val, ext any, loc string) error {
	var x map[string]any
	if ext != nil {
		var ok bool
		if x, ok = ext.(map[string]any); !ok {
			return errorf("_"+loc, "must be a JSON object")
		}
	}
	if val == nil && x == nil {
		return errorf(loc, "has neither a value nor extensions")
	}
	e.w.WriteByte('<')
	e.w.WriteString(name)
	if x != nil {
		if id, ok := x["id"]; ok {
			s, ok := id.(string)
			if !ok {
				return errorf("_"+loc+".id", "must be a string")
			}
			e.w.WriteString(` id="`)
			if err := escape(&e.w, s, true); err != nil {
				return errorf("_"+loc+".id", "%s", err.Error())
			}
			e.w.WriteByte('"')
		}
	}
	if val != nil {
		s, err := lexical(typ, val)
		if err != nil {
			return errorf(loc, "%s", err.Error())
		}
		e.w.WriteString(` value="`)
		if err := escape(&e.w, s, true); err != nil {
			return errorf(loc, "%s", err.Error())
		}
		e.w.WriteByte('"')
	}
	if x == nil || len(x) == 0 || (len(x) == 1 && x["id"] != nil) {
		e.w.WriteString("/>")
		return nil
	}
	e.w.WriteByte('>')
	if err := e.children(e.s.Type("Element"), x, "_"+loc); err != nil {
		return err
	}
	e.w.WriteString("</")
	e.w.WriteString(name)
	e.w.WriteByte('>')
	return nil
}

// lexical is the XML value attribute of a JSON primitive of type typ.
func lexical(typ string, val any) (string, error) {
	switch validate.JSONKind(typ) {
	case "boolean":
		b, ok := val.(bool)
		if !ok {
			return "", errorf("", "must be a JSON boolean")
		}
		return strconv.FormatBool(b), nil
	case "number":
		n, ok := val.(json.Number)
		if !ok {
			return "", errorf("", "must be a JSON number")
		}
		return string(n), nil
	}
	s, ok := val.(string)
	if !ok {
		return "", errorf("", "must be a JSON string")
	}
	return s, nil
}

// xhtml parses the narrative string and writes it as XHTML elements.
func (e *encoder) xhtml(s, loc string) error {
	if len(s) > MaxSize {
		return errorf(loc, "the narrative is too large")
	}
	x := stdxml.NewDecoder(strings.NewReader(s))
	x.Strict = true
	depth := 0
	next := func() (stdxml.Token, error) {
		for {
			tok, err := x.Token()
			if err != nil {
				return nil, errorf(loc, "the narrative is not well-formed XHTML")
			}
			switch tok.(type) {
			case stdxml.Comment:
				continue
			case stdxml.Directive, stdxml.ProcInst:
				return nil, errorf(loc, "the narrative may not hold declarations or processing instructions")
			case stdxml.StartElement:
				depth++
				if depth > MaxDepth {
					return nil, errorf(loc, "the narrative nests deeper than %d elements", MaxDepth)
				}
			case stdxml.EndElement:
				depth--
			}
			return tok, nil
		}
	}
	var start stdxml.StartElement
	for {
		tok, err := next()
		if err != nil {
			return err
		}
		if se, ok := tok.(stdxml.StartElement); ok {
			start = se
			break
		}
		if cd, ok := tok.(stdxml.CharData); !ok || !isSpace(cd) {
			return errorf(loc, "the narrative must be one XHTML <div>")
		}
	}
	if start.Name.Local != "div" || start.Name.Space != XHTMLNamespace {
		return errorf(loc, `the narrative must be a <div xmlns="%s">`, XHTMLNamespace)
	}
	if err := writeXHTML(&e.w, start, next, loc); err != nil {
		return err
	}
	// Nothing but white space may follow the div.
	for {
		tok, err := x.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errorf(loc, "the narrative must be one XHTML <div>")
		}
		if cd, ok := tok.(stdxml.CharData); ok && isSpace(cd) {
			continue
		}
		if _, ok := tok.(stdxml.Comment); ok {
			continue
		}
		return errorf(loc, "the narrative must be one XHTML <div>")
	}
	return nil
}
