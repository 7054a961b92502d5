// Package xml converts FHIR resources between the XML and the JSON
// representation (https://hl7.org/fhir/STU3/xml.html, /R4/xml.html), driven
// by the element definitions of the FHIR version (fhir/spec via
// fhir/validate's Schema): which elements repeat, which are primitives,
// choice types, contained resources and element order.
//
// Input is untrusted: a DOCTYPE (and with it every entity definition),
// processing instructions other than the XML declaration, entities other
// than the five predefined ones, encodings other than UTF-8, nesting deeper
// than MaxDepth and documents larger than MaxSize are refused.
package xml

import (
	"bytes"
	"encoding/json"
	stdxml "encoding/xml"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/validate"
)

// Namespaces of FHIR XML.
const (
	Namespace      = "http://hl7.org/fhir"
	XHTMLNamespace = "http://www.w3.org/1999/xhtml"
	xmlNamespace   = "http://www.w3.org/XML/1998/namespace"
	xsiNamespace   = "http://www.w3.org/2001/XMLSchema-instance"
)

// Limits on input.
const (
	// MaxDepth is the deepest element nesting accepted (XML) and the deepest
	// object/array nesting accepted (JSON).
	MaxDepth = 100
	// MaxSize is the largest document accepted, in bytes.
	MaxSize = 32 << 20
)

// Error is a document that is not well-formed or not valid FHIR XML/JSON
// for the version. Its text describes the input only and may be shown to
// the client.
type Error struct {
	// Location is where the problem is, as a FHIRPath-like path
	// (Patient.name[0].given), or "" for the document as a whole.
	Location string
	Reason   string
}

func (e *Error) Error() string {
	if e.Location == "" {
		return e.Reason
	}
	return e.Location + ": " + e.Reason
}

func errorf(loc, format string, args ...any) error {
	if len(args) > 0 {
		format = sprintf(format, args...)
	}
	return &Error{Location: loc, Reason: format}
}

// Decode converts a FHIR XML resource to FHIR JSON. Decimals keep their
// exact lexical form; the narrative div becomes a string of XHTML.
func Decode(v fhir.Version, data []byte) (json.RawMessage, error) {
	out, _, err := decode(v, data, false)
	return out, err
}

// DecodeLenient is Decode for data from systems that break the element
// cardinality of the specification (a non-repeating element given more than
// once): the first occurrence is kept and each repair is returned as a
// warning, so an importer can load real-world data and say what it changed.
// Everything else is refused as by Decode.
func DecodeLenient(v fhir.Version, data []byte) (json.RawMessage, []Warning, error) {
	return decode(v, data, true)
}

func decode(v fhir.Version, data []byte, lenient bool) (json.RawMessage, []Warning, error) {
	s := validate.SchemaFor(v)
	if s == nil {
		return nil, nil, errorf("", "unknown FHIR version %q", string(v))
	}
	if len(data) > MaxSize {
		return nil, nil, errorf("", "the document exceeds %d bytes", MaxSize)
	}
	if !utf8.Valid(data) {
		return nil, nil, errorf("", "the document is not valid UTF-8")
	}
	d := &decoder{s: s, x: stdxml.NewDecoder(bytes.NewReader(data)), lenient: lenient}
	d.x.Strict = true
	root, err := d.prolog()
	if err != nil {
		return nil, nil, err
	}
	out, err := d.resource(root, "")
	if err != nil {
		return nil, nil, err
	}
	if err := d.epilog(); err != nil {
		return nil, nil, err
	}
	return out, d.warnings, nil
}

type decoder struct {
	s        *validate.Schema
	x        *stdxml.Decoder
	depth    int
	lenient  bool
	warnings []Warning
}

// Warning is something DecodeLenient repaired, with where it was.
type Warning struct {
	Location string
	Reason   string
}

func (w Warning) String() string { return w.Location + ": " + w.Reason }

// token returns the next token that matters: comments are skipped;
// declarations (DOCTYPE) and processing instructions are refused.
func (d *decoder) token() (stdxml.Token, error) {
	for {
		tok, err := d.x.Token()
		if err != nil {
			if err == io.EOF {
				return nil, errorf("", "the document ends early")
			}
			var se *stdxml.SyntaxError
			if errors.As(err, &se) {
				return nil, errorf("", "malformed XML at line %d: %s", se.Line, se.Msg)
			}
			return nil, errorf("", "malformed XML: %s", err.Error())
		}
		switch t := tok.(type) {
		case stdxml.Comment:
			continue
		case stdxml.Directive:
			return nil, errorf("", "DOCTYPE and other <! declarations are not allowed")
		case stdxml.ProcInst:
			return nil, errorf("", "processing instruction <?%s?> is not allowed", clip(t.Target))
		case stdxml.StartElement:
			d.depth++
			if d.depth > MaxDepth {
				return nil, errorf("", "the document nests deeper than %d elements", MaxDepth)
			}
		case stdxml.EndElement:
			d.depth--
		}
		return tok, nil
	}
}

// prolog reads up to the root element: an optional XML declaration,
// comments and white space.
func (d *decoder) prolog() (stdxml.StartElement, error) {
	first := true
	for {
		tok, err := d.x.Token()
		if err != nil {
			if err == io.EOF {
				return stdxml.StartElement{}, errorf("", "the document has no root element")
			}
			var se *stdxml.SyntaxError
			if errors.As(err, &se) {
				return stdxml.StartElement{}, errorf("", "malformed XML at line %d: %s", se.Line, se.Msg)
			}
			// An encoding other than UTF-8 ends here (no CharsetReader).
			return stdxml.StartElement{}, errorf("", "unsupported XML: %s", err.Error())
		}
		switch t := tok.(type) {
		case stdxml.ProcInst:
			if !first || t.Target != "xml" {
				return stdxml.StartElement{}, errorf("", "processing instruction <?%s?> is not allowed", clip(t.Target))
			}
		case stdxml.CharData:
			if !isSpace(t) {
				return stdxml.StartElement{}, errorf("", "text before the root element")
			}
		case stdxml.Comment:
		case stdxml.Directive:
			return stdxml.StartElement{}, errorf("", "DOCTYPE and other <! declarations are not allowed")
		case stdxml.StartElement:
			d.depth = 1
			return t, nil
		default:
			return stdxml.StartElement{}, errorf("", "unexpected content before the root element")
		}
		first = false
	}
}

// epilog checks that only comments and white space follow the root.
func (d *decoder) epilog() error {
	for {
		tok, err := d.x.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errorf("", "malformed XML after the root element")
		}
		switch t := tok.(type) {
		case stdxml.Comment:
		case stdxml.CharData:
			if !isSpace(t) {
				return errorf("", "text after the root element")
			}
		default:
			return errorf("", "content after the root element")
		}
	}
}

// resource decodes the resource whose start tag is start; loc is the
// element holding it ("" for the root).
func (d *decoder) resource(start stdxml.StartElement, loc string) ([]byte, error) {
	rt := start.Name.Local
	if start.Name.Space != Namespace {
		return nil, errorf(loc, "<%s> is not in the FHIR namespace %s", clip(rt), Namespace)
	}
	n := d.s.Resource(rt)
	if n == nil {
		return nil, errorf(loc, "%q is not a resource type of FHIR %s", clip(rt), string(d.s.Version))
	}
	if loc == "" {
		loc = rt
	}
	for _, a := range start.Attr {
		if !ignorableAttr(a) {
			return nil, errorf(loc, "unexpected attribute %q on a resource", clip(a.Name.Local))
		}
	}
	obj := &object{node: n}
	if err := d.children(obj, loc, true); err != nil {
		return nil, err
	}
	return obj.json(rt), nil
}

// ignorableAttr is an attribute that carries no FHIR content: namespace
// declarations and xsi:schemaLocation.
func ignorableAttr(a stdxml.Attr) bool {
	return a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") || a.Name.Space == xsiNamespace
}

// isAttribute reports whether field f of node n is written as an XML
// attribute: the id of every element that is not a resource, and
// Extension.url.
func isAttribute(n *validate.Node, f *validate.Field) bool {
	if n.Resource {
		return false
	}
	return f.Name == "id" || (f.Name == "url" && n.Path == "Extension")
}

// object collects the members of one JSON object while its XML element is
// read; they are written in definition order.
type object struct {
	node   *validate.Node
	fields []*member
}

// member is one JSON name: a value per occurrence and, for primitives, the
// "_name" object (id, extension) per occurrence.
type member struct {
	name  string
	field *validate.Field
	order int
	prim  bool
	vals  [][]byte // nil entries: a primitive with extensions only
	exts  [][]byte // nil entries: no id or extensions
}

func (o *object) member(name string, f *validate.Field, prim bool) *member {
	for _, m := range o.fields {
		if m.name == name {
			return m
		}
	}
	m := &member{name: name, field: f, order: slices.Index(o.node.Fields, f), prim: prim}
	o.fields = append(o.fields, m)
	return m
}

// json writes the object; rt is the resourceType of a resource, else "".
func (o *object) json(rt string) []byte {
	size := 2
	for _, m := range o.fields {
		for _, v := range m.vals {
			size += len(v) + len(m.name) + 4
		}
		for _, v := range m.exts {
			size += len(v) + len(m.name) + 5
		}
	}
	var b bytes.Buffer
	b.Grow(size + 32)
	b.WriteByte('{')
	first := true
	sep := func() {
		if !first {
			b.WriteByte(',')
		}
		first = false
	}
	if rt != "" {
		sep()
		b.WriteString(`"resourceType":`)
		quote(&b, rt)
	}
	slices.SortStableFunc(o.fields, func(a, b *member) int { return a.order - b.order })
	for _, m := range o.fields {
		repeats := m.field.Repeats
		if hasAny(m.vals) {
			sep()
			quote(&b, m.name)
			b.WriteByte(':')
			writeItems(&b, m.vals, repeats)
		}
		if hasAny(m.exts) {
			sep()
			quote(&b, "_"+m.name)
			b.WriteByte(':')
			writeItems(&b, m.exts, repeats)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

func hasAny(items [][]byte) bool {
	for _, it := range items {
		if it != nil {
			return true
		}
	}
	return false
}

func writeItems(b *bytes.Buffer, items [][]byte, repeats bool) {
	if !repeats {
		b.Write(items[0])
		return
	}
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		if it == nil {
			b.WriteString("null")
		} else {
			b.Write(it)
		}
	}
	b.WriteByte(']')
}

// children reads the child elements of obj's element up to its end tag.
func (d *decoder) children(obj *object, loc string, isResource bool) error {
	index := map[string]int{}
	for {
		tok, err := d.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case stdxml.EndElement:
			return nil
		case stdxml.CharData:
			if !isSpace(t) {
				return errorf(loc, "text is not allowed here (FHIR XML carries values in value attributes)")
			}
		case stdxml.StartElement:
			name := t.Name.Local
			f, typ, ok := obj.node.Lookup(name)
			if !ok || isAttribute(obj.node, f) {
				return errorf(loc+"."+clip(name), "is not an element of %s", obj.node.Path)
			}
			at := loc + "." + name
			if f.Repeats {
				at += "[" + strconv.Itoa(index[name]) + "]"
				index[name]++
			}
			ns := Namespace
			if validate.IsXHTML(typ) {
				ns = XHTMLNamespace
			}
			if t.Name.Space != ns {
				return errorf(at, "is not in the namespace %s", ns)
			}
			if f.Choice {
				for _, m := range obj.fields {
					if m.field == f && m.name != name {
						return errorf(at, "and %s are both given; %s[x] takes one type", m.name, f.Name)
					}
				}
			}
			if isResource && f.Name == "id" {
				typ = "id"
			}
			m := obj.member(name, f, validate.IsPrimitive(typ))
			extra := !f.Repeats && len(m.vals) > 0
			if extra && !d.lenient {
				return errorf(at, "occurs more than once")
			}
			var val, ext []byte
			switch {
			case validate.IsXHTML(typ):
				var sb bytes.Buffer
				if err := d.xhtml(t, &sb, at); err != nil {
					return err
				}
				val = quoted(sb.String())
			case validate.IsPrimitive(typ):
				val, ext, err = d.primitive(t, typ, at)
			case typ == "Resource":
				val, err = d.contained(at)
			default:
				val, err = d.complex(t, d.s.Child(f, typ), at)
			}
			if err != nil {
				return err
			}
			if extra {
				// Lenient: the element is read (and checked) but only its
				// first occurrence is kept, and the caller is told.
				d.warnings = append(d.warnings, Warning{Location: at, Reason: "occurs more than once; only the first occurrence is kept"})
				continue
			}
			m.vals = append(m.vals, val)
			m.exts = append(m.exts, ext)
		}
	}
}

// complex decodes an element of a complex type or a backbone element.
func (d *decoder) complex(start stdxml.StartElement, n *validate.Node, loc string) ([]byte, error) {
	if n == nil {
		return nil, errorf(loc, "has a type that is not defined")
	}
	obj := &object{node: n}
	if err := d.attributes(obj, start, loc, false); err != nil {
		return nil, err
	}
	if err := d.children(obj, loc, false); err != nil {
		return nil, err
	}
	if len(obj.fields) == 0 {
		return nil, errorf(loc, "is empty")
	}
	return obj.json(""), nil
}

// attributes takes the id (and Extension.url) attributes of an element;
// primitive elements also have value, which the caller takes.
func (d *decoder) attributes(obj *object, start stdxml.StartElement, loc string, primitive bool) error {
	for _, a := range start.Attr {
		if ignorableAttr(a) || (primitive && a.Name.Space == "" && a.Name.Local == "value") {
			continue
		}
		if a.Name.Space != "" {
			return errorf(loc, "unexpected attribute %q", clip(a.Name.Local))
		}
		f, _, ok := obj.node.Lookup(a.Name.Local)
		if !ok || !isAttribute(obj.node, f) {
			return errorf(loc, "unexpected attribute %q", clip(a.Name.Local))
		}
		m := obj.member(a.Name.Local, f, true)
		if len(m.vals) > 0 {
			return errorf(loc, "attribute %q occurs more than once", a.Name.Local)
		}
		m.vals = append(m.vals, quoted(a.Value))
		m.exts = append(m.exts, nil)
	}
	return nil
}

// primitive decodes a primitive element: its value attribute becomes the
// JSON value, its id and extensions the "_name" object.
func (d *decoder) primitive(start stdxml.StartElement, typ, loc string) (val, ext []byte, err error) {
	var value *string
	for _, a := range start.Attr {
		if a.Name.Space == "" && a.Name.Local == "value" {
			v := a.Value
			value = &v
		}
	}
	elem := d.s.Type("Element")
	obj := &object{node: elem}
	if err := d.attributes(obj, start, loc, true); err != nil {
		return nil, nil, err
	}
	if err := d.children(obj, loc, false); err != nil {
		return nil, nil, err
	}
	if value == nil && len(obj.fields) == 0 {
		return nil, nil, errorf(loc, "has no value attribute and no extensions")
	}
	if len(obj.fields) > 0 {
		ext = obj.json("")
	}
	if value != nil {
		if val, err = primitiveJSON(typ, *value); err != nil {
			return nil, nil, errorf(loc, "%s", err.Error())
		}
	}
	return val, ext, nil
}

// primitiveJSON is the JSON form of the lexical value s of type typ.
// Numbers are copied as written, so decimals stay exact.
func primitiveJSON(typ, s string) ([]byte, error) {
	switch validate.JSONKind(typ) {
	case "boolean", "number":
		if msg := validate.PrimitiveString(typ, s); msg != "" {
			return nil, errors.New("value " + strconv.Quote(clip(s)) + " " + msg)
		}
		return []byte(s), nil
	}
	return quoted(s), nil
}

// contained decodes the one resource inside a contained,
// Bundle.entry.resource or Parameters.parameter.resource element.
func (d *decoder) contained(loc string) ([]byte, error) {
	var out []byte
	for {
		tok, err := d.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case stdxml.EndElement:
			if out == nil {
				return nil, errorf(loc, "holds no resource")
			}
			return out, nil
		case stdxml.CharData:
			if !isSpace(t) {
				return nil, errorf(loc, "text is not allowed here")
			}
		case stdxml.StartElement:
			if out != nil {
				return nil, errorf(loc, "holds more than one resource")
			}
			if out, err = d.resource(t, loc); err != nil {
				return nil, err
			}
		}
	}
}

// xhtml reads the narrative div whose start tag is start and writes it as
// a string of XHTML with the namespace on the div.
func (d *decoder) xhtml(start stdxml.StartElement, w *bytes.Buffer, loc string) error {
	if start.Name.Local != "div" {
		return errorf(loc, "the narrative must be an XHTML <div>")
	}
	return writeXHTML(w, start, d.token, loc)
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// clip keeps input quoted in messages short.
func clip(s string) string {
	if len(s) > 64 {
		return strings.ToValidUTF8(s[:64], "") + "…"
	}
	return s
}
