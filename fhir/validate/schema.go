package validate

import (
	"strings"
	"sync"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/spec"
)

// Schema is the element structure of one FHIR version, indexed from the
// generated fhir/spec tables for walking resources element by element: the
// validator here and the XML↔JSON conversion in fhir/xml share it.
type Schema struct {
	Version fhir.Version
	defs    *spec.Definitions

	mu    sync.RWMutex
	nodes map[string]*Node // by type name (resources, complex types) or backbone path
}

// Node is the place of a JSON object in the definitions: a resource, a
// complex type or a backbone element. Its Fields are in definition order,
// which is the element order of FHIR XML.
type Node struct {
	// Path is the type name ("Patient", "Quantity") or the path of a
	// backbone element ("Patient.contact").
	Path string
	// Resource is set on the root node of a resource type.
	Resource bool
	Fields   []*Field

	byName map[string]choice
}

// Field is one child element of a Node.
type Field struct {
	// Name is the JSON (and XML) name; for a choice element the name without
	// [x], to which the type is appended ("value" → "valueQuantity").
	Name string
	// Path is the element path, e.g. "Observation.value[x]".
	Path    string
	Types   []string
	Repeats bool
	Choice  bool
	// Required is set when the element's minimum cardinality is 1 or more.
	Required bool

	node *Node // the children of a backbone element (or its contentReference)
}

type choice struct {
	field *Field
	typ   string
}

var (
	schemaOnce    sync.Once
	stu3Schema    *Schema
	r4Schema      *Schema
	xhtmlTypeName = "xhtml"
)

// SchemaFor returns the schema of version v, or nil for an unknown version.
func SchemaFor(v fhir.Version) *Schema {
	schemaOnce.Do(func() {
		stu3Schema = newSchema(fhir.STU3)
		r4Schema = newSchema(fhir.R4)
	})
	switch v {
	case fhir.STU3:
		return stu3Schema
	case fhir.R4:
		return r4Schema
	}
	return nil
}

func newSchema(v fhir.Version) *Schema {
	return &Schema{Version: v, defs: spec.For(v), nodes: make(map[string]*Node)}
}

// Definitions returns the spec tables the schema is built from.
func (s *Schema) Definitions() *spec.Definitions { return s.defs }

// Resource returns the root node of resource type t, or nil when t is not a
// resource type of this version.
func (s *Schema) Resource(t string) *Node {
	if !s.defs.IsResourceType(t) {
		return nil
	}
	return s.typeNode(t)
}

// Type returns the node of complex type t, or nil when t is not one.
func (s *Schema) Type(t string) *Node {
	if IsPrimitive(t) || t == "Resource" || s.defs.IsResourceType(t) {
		return nil
	}
	return s.typeNode(t)
}

// Child returns the node of the value of f when it has type typ: the
// backbone element, or the complex type. It is nil for primitives and for
// contained resources (whose node follows from their resourceType).
func (s *Schema) Child(f *Field, typ string) *Node {
	if f.node != nil {
		return f.node
	}
	if IsPrimitive(typ) || typ == "Resource" {
		return nil
	}
	return s.typeNode(typ)
}

// typeNode builds (once) the nodes of type t: its root and its backbone
// elements.
func (s *Schema) typeNode(t string) *Node {
	s.mu.RLock()
	n := s.nodes[t]
	s.mu.RUnlock()
	if n != nil {
		return n
	}
	els := s.defs.Elements(t)
	if len(els) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[t]; n != nil {
		return n
	}
	req := required[s.Version]
	local := map[string]*Node{t: {Path: t, Resource: s.defs.IsResourceType(t)}}
	var refs []*Field // fields with a contentReference, resolved at the end
	refTo := map[*Field]string{}
	for _, e := range els[1:] {
		dot := strings.LastIndexByte(e.Path, '.')
		if dot < 0 {
			continue
		}
		parent := local[e.Path[:dot]]
		if parent == nil { // children of an element without a node: cannot happen in a snapshot
			continue
		}
		name := e.Path[dot+1:]
		f := &Field{Name: name, Path: e.Path, Types: e.Types, Repeats: e.Repeats, Required: req[e.Path]}
		if base, ok := strings.CutSuffix(name, "[x]"); ok {
			f.Name, f.Choice = base, true
		}
		parent.Fields = append(parent.Fields, f)
		if e.ContentRef != "" {
			refs = append(refs, f)
			refTo[f] = e.ContentRef
			continue
		}
		if len(e.Types) == 1 && (e.Types[0] == "BackboneElement" || e.Types[0] == "Element") {
			bn := &Node{Path: e.Path}
			local[e.Path] = bn
			f.node = bn
		}
	}
	for _, f := range refs {
		f.node = local[refTo[f]]
	}
	for _, n := range local {
		n.index()
	}
	s.nodes[t] = local[t]
	return local[t]
}

func (n *Node) index() {
	n.byName = make(map[string]choice, len(n.Fields))
	for _, f := range n.Fields {
		if !f.Choice {
			typ := ""
			if len(f.Types) > 0 {
				typ = f.Types[0]
			}
			n.byName[f.Name] = choice{f, typ}
			continue
		}
		for _, t := range f.Types {
			n.byName[f.Name+upperFirst(t)] = choice{f, t}
		}
	}
}

// Lookup finds the field a JSON or XML name stands for, with the type the
// name selects (a choice name such as "valueQuantity" selects Quantity).
func (n *Node) Lookup(name string) (f *Field, typ string, ok bool) {
	c, ok := n.byName[name]
	return c.field, c.typ, ok
}

// NameFor is the JSON name of f holding a value of type typ.
func (f *Field) NameFor(typ string) string {
	if f.Choice {
		return f.Name + upperFirst(typ)
	}
	return f.Name
}

// IsPrimitive reports whether t is a FHIR primitive type (their names start
// with a lower-case letter).
func IsPrimitive(t string) bool { return t != "" && t[0] >= 'a' && t[0] <= 'z' }

// IsXHTML reports whether t is the narrative type xhtml.
func IsXHTML(t string) bool { return t == xhtmlTypeName }

// JSONKind is how primitive type t is written in JSON: "boolean", "number"
// or "string".
func JSONKind(t string) string {
	switch t {
	case "boolean":
		return "boolean"
	case "integer", "positiveInt", "unsignedInt", "decimal":
		return "number"
	}
	return "string"
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
