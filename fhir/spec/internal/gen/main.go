// Command gen generates the Go tables of package spec from the FHIR core
// definitions in ../definitions (run by go generate in package spec).
//
// Search parameter expressions are compiled from a small FHIRPath subset:
// dotted paths, unions (|), as(T)/ofType(T)/(x as T), .where(resolve() is T)
// and .where(key='value'). Parameters using anything else are skipped and
// listed in a comment of the generated file.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func main() {
	dir := flag.String("dir", ".", "directory of package spec")
	flag.Parse()
	for _, v := range []struct{ name, ident, version string }{
		{"stu3", "stu3", "fhir.STU3"},
		{"r4", "r4", "fhir.R4"},
	} {
		src, err := generate(filepath.Join(*dir, "definitions", v.name), v.ident, v.version)
		if err != nil {
			log.Fatalf("%s: %v", v.name, err)
		}
		if err := os.WriteFile(filepath.Join(*dir, "zz_generated_"+v.name+".go"), src, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	src, err := generateSummary(filepath.Join(*dir, "definitions"))
	if err != nil {
		log.Fatalf("summary: %v", err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "zz_summary.go"), src, 0o644); err != nil {
		log.Fatal(err)
	}
}

type structureDefinition struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	Abstract   bool   `json:"abstract"`
	Type       string `json:"type"`
	Derivation string `json:"derivation"`
	Snapshot   struct {
		Element []elementDefinition `json:"element"`
	} `json:"snapshot"`
}

type elementDefinition struct {
	Path             string `json:"path"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	IsSummary        bool   `json:"isSummary"`
	ContentReference string `json:"contentReference"`
	Type             []struct {
		Code      string `json:"code"`
		Extension []struct {
			URL      string `json:"url"`
			ValueURL string `json:"valueUrl"`
		} `json:"extension"`
	} `json:"type"`
}

type searchParameter struct {
	ID         string   `json:"id"`
	Code       string   `json:"code"`
	Base       []string `json:"base"`
	Type       string   `json:"type"`
	Expression string   `json:"expression"`
	Target     []string `json:"target"`
}

type bundle[T any] struct {
	Entry []struct {
		Resource T `json:"resource"`
	} `json:"entry"`
}

func readBundle[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		r = zr
	}
	var b bundle[T]
	if err := json.NewDecoder(r).Decode(&b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]T, len(b.Entry))
	for i, e := range b.Entry {
		out[i] = e.Resource
	}
	return out, nil
}

// element is an element definition reduced to what the tables keep.
type element struct {
	path       string
	types      []string
	repeats    bool
	contentRef string
}

// model is the structure of one version.
type model struct {
	resources []string
	// types lists the resource and complex types in source order.
	types []string
	// elements per type, in definition order.
	elements map[string][]element
	// byPath maps a full element path to its element.
	byPath map[string]*element
}

func typeCode(t struct {
	Code      string `json:"code"`
	Extension []struct {
		URL      string `json:"url"`
		ValueURL string `json:"valueUrl"`
	} `json:"extension"`
}) string {
	// R4 writes the type of id/extension.url etc. as a FHIRPath system type
	// with the FHIR type in an extension.
	for _, e := range t.Extension {
		if strings.HasSuffix(e.URL, "structuredefinition-fhir-type") && e.ValueURL != "" {
			return e.ValueURL
		}
	}
	if strings.HasPrefix(t.Code, "http://hl7.org/fhirpath/System.") {
		return strings.ToLower(strings.TrimPrefix(t.Code, "http://hl7.org/fhirpath/System."))
	}
	return t.Code
}

func loadModel(dir string) (*model, error) {
	sds, err := readBundle[structureDefinition](filepath.Join(dir, "structure-definitions.json.gz"))
	if err != nil {
		return nil, err
	}
	m := &model{elements: map[string][]element{}, byPath: map[string]*element{}}
	for _, sd := range sds {
		if sd.Kind != "resource" && sd.Kind != "complex-type" {
			continue
		}
		if sd.Derivation == "constraint" {
			continue
		}
		if sd.Kind == "resource" && !sd.Abstract {
			m.resources = append(m.resources, sd.Type)
		}
		m.types = append(m.types, sd.Type)
		els := make([]element, 0, len(sd.Snapshot.Element))
		for _, ed := range sd.Snapshot.Element {
			e := element{path: ed.Path, repeats: ed.Max == "*", contentRef: strings.TrimPrefix(ed.ContentReference, "#")}
			for _, t := range ed.Type {
				c := typeCode(t)
				if len(e.types) == 0 || e.types[len(e.types)-1] != c {
					e.types = append(e.types, c)
				}
			}
			els = append(els, e)
		}
		m.elements[sd.Type] = els
		for i := range els {
			m.byPath[els[i].path] = &m.elements[sd.Type][i]
		}
	}
	sort.Strings(m.resources)
	return m, nil
}

// step is a compiled path step (mirrors spec.Step).
type step struct {
	name       string
	choice     bool
	types      []string
	whereKey   string
	whereValue string
	resolve    string
}

type param struct {
	code    string
	typ     string
	paths   [][]step
	targets []string
}

var asInfix = regexp.MustCompile(`^\((.*) as (\w+)\)(.*)$`)

// splitTop splits s at sep outside parentheses and quotes.
func splitTop(s string, sep byte) []string {
	var parts []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

var (
	identRe   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	funcRe    = regexp.MustCompile(`^([A-Za-z]+)\((.*)\)$`)
	resolveRe = regexp.MustCompile(`^resolve\(\) is ([A-Za-z]+)$`)
	whereEqRe = regexp.MustCompile(`^([A-Za-z]+)\s*=\s*'([^']*)'$`)
)

// compile compiles one union member of an expression for resource type rt
// into steps; ok is false when the member does not apply to rt, err is set
// when it uses an unsupported construct.
func (m *model) compile(rt, expr string) (steps []step, applies bool, err error) {
	expr = strings.TrimSpace(expr)
	if sm := asInfix.FindStringSubmatch(expr); sm != nil {
		expr = sm[1] + ".as(" + sm[2] + ")" + sm[3]
	}
	segs := splitTop(expr, '.')
	switch segs[0] {
	case rt, "Resource", "DomainResource":
	default:
		return nil, false, nil
	}
	// filters are applied after resolving all names.
	type filter struct{ asType string }
	filters := map[int]filter{}
	for _, seg := range segs[1:] {
		seg = strings.TrimSpace(seg)
		if identRe.MatchString(seg) {
			steps = append(steps, step{name: seg})
			continue
		}
		fm := funcRe.FindStringSubmatch(seg)
		if fm == nil || len(steps) == 0 {
			return nil, true, fmt.Errorf("unsupported %q", seg)
		}
		last := &steps[len(steps)-1]
		arg := strings.TrimSpace(fm[2])
		switch fm[1] {
		case "as", "ofType":
			if !identRe.MatchString(arg) {
				return nil, true, fmt.Errorf("unsupported %q", seg)
			}
			filters[len(steps)-1] = filter{asType: arg}
		case "where":
			if r := resolveRe.FindStringSubmatch(arg); r != nil {
				last.resolve = r[1]
			} else if w := whereEqRe.FindStringSubmatch(arg); w != nil {
				last.whereKey, last.whereValue = w[1], w[2]
			} else {
				return nil, true, fmt.Errorf("unsupported %q", seg)
			}
		default:
			return nil, true, fmt.Errorf("unsupported %q", seg)
		}
	}
	if len(steps) == 0 {
		return nil, true, fmt.Errorf("no element path")
	}
	// Resolve the names against the element definitions.
	cur := rt
	for i := range steps {
		s := &steps[i]
		e := m.byPath[cur+"."+s.name]
		if e == nil {
			e = m.byPath[cur+"."+s.name+"[x]"]
			s.choice = e != nil
		}
		if e == nil {
			return nil, true, fmt.Errorf("no element %s.%s", cur, s.name)
		}
		path := e.path
		types := e.types
		if e.contentRef != "" {
			ref := m.byPath[e.contentRef]
			if ref == nil {
				return nil, true, fmt.Errorf("bad content reference %s", e.contentRef)
			}
			path, types = ref.path, ref.types
		}
		if f, ok := filters[i]; ok {
			var keep []string
			for _, t := range types {
				if strings.EqualFold(t, f.asType) {
					keep = append(keep, t)
				}
			}
			if len(keep) == 0 {
				return nil, true, fmt.Errorf("%s has no type %s", path, f.asType)
			}
			types = keep
		}
		if s.choice || i == len(steps)-1 {
			s.types = types
		}
		if i == len(steps)-1 {
			break
		}
		if len(types) != 1 {
			return nil, true, fmt.Errorf("cannot navigate into %s with types %v", path, types)
		}
		switch t := types[0]; t {
		case "BackboneElement", "Element":
			cur = strings.TrimSuffix(path, "[x]")
		default:
			if _, ok := m.elements[t]; !ok {
				return nil, true, fmt.Errorf("cannot navigate into type %s", t)
			}
			cur = t
		}
	}
	return steps, true, nil
}

// columnTypes are the search parameter types the tables carry.
var columnTypes = map[string]string{
	"token": "Token", "reference": "Reference", "date": "Date", "string": "String",
	"quantity": "Quantity", "uri": "URI", "number": "Number",
}

func generate(dir, ident, version string) ([]byte, error) {
	m, err := loadModel(dir)
	if err != nil {
		return nil, err
	}
	sps, err := readBundle[searchParameter](filepath.Join(dir, "search-parameters.json.gz"))
	if err != nil {
		return nil, err
	}
	// Search parameters the Dutch profiles add (see definitions/README.md).
	extra, err := readBundle[searchParameter](filepath.Join(dir, "extra-search-parameters.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	core := map[string]bool{}
	for _, sp := range sps {
		for _, b := range sp.Base {
			core[b+"."+sp.Code] = true
		}
	}
	for _, sp := range extra {
		for _, b := range sp.Base {
			if core[b+"."+sp.Code] {
				return nil, fmt.Errorf("extra search parameter %s duplicates core %s.%s", sp.ID, b, sp.Code)
			}
		}
	}
	sps = append(sps, extra...)
	params := map[string][]param{}
	var skipped []string
	seen := map[string]bool{}
	for _, sp := range sps {
		if strings.HasPrefix(sp.ID, "example") {
			// Examples in the core package, not part of the specification.
			continue
		}
		var bases []string
		for _, b := range sp.Base {
			if b == "Resource" || b == "DomainResource" {
				bases = append(bases, m.resources...)
			} else {
				bases = append(bases, b)
			}
		}
		for _, rt := range bases {
			if sp.Code == "_id" || sp.Code == "_lastUpdated" {
				// Kept as columns by the stores, not as index values.
				continue
			}
			if _, ok := m.elements[rt]; !ok || seen[rt+"."+sp.Code] {
				continue
			}
			seen[rt+"."+sp.Code] = true
			p := param{code: sp.Code, typ: sp.Type, targets: sp.Target}
			reason := ""
			if _, ok := columnTypes[sp.Type]; !ok {
				reason = "type " + sp.Type
			} else if sp.Expression == "" {
				reason = "no expression"
			}
			if reason == "" {
				for _, part := range splitTop(sp.Expression, '|') {
					steps, applies, err := m.compile(rt, part)
					if err != nil {
						reason = err.Error()
						break
					}
					if applies {
						p.paths = append(p.paths, steps)
					}
				}
				if reason == "" && len(p.paths) == 0 {
					reason = "expression has no path for this type"
				}
			}
			if reason != "" {
				skipped = append(skipped, fmt.Sprintf("%s.%s (%s)", rt, sp.Code, reason))
				continue
			}
			params[rt] = append(params[rt], p)
		}
	}
	sort.Strings(skipped)

	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by fhir/spec/internal/gen from definitions/%s; DO NOT EDIT.\n\n", filepath.Base(dir))
	fmt.Fprintf(&b, "package spec\n\nimport \"github.com/schakel-nl/schakel/fhir\"\n\n")
	b.WriteString("// Search parameters not compiled (unsupported FHIRPath or type):\n")
	for _, s := range skipped {
		fmt.Fprintf(&b, "//   - %s\n", s)
	}
	fmt.Fprintf(&b, "var %sDefinitions = &Definitions{\nVersion: %s,\n", ident, version)
	b.WriteString("resourceTypes: []string{")
	for _, rt := range m.resources {
		fmt.Fprintf(&b, "%q,", rt)
	}
	b.WriteString("},\nparams: map[string][]SearchParam{\n")
	for _, rt := range m.resources {
		ps := params[rt]
		if len(ps) == 0 {
			continue
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].code < ps[j].code })
		fmt.Fprintf(&b, "%q: {\n", rt)
		for i, p := range ps {
			if i > 0 && ps[i-1].code == p.code {
				return nil, fmt.Errorf("duplicate search parameter %s.%s", rt, p.code)
			}
			fmt.Fprintf(&b, "{Code: %q, Type: %s, Paths: []Path{", p.code, columnTypes[p.typ])
			for _, path := range p.paths {
				b.WriteString("{")
				for _, s := range path {
					writeStep(&b, s)
				}
				b.WriteString("},")
			}
			b.WriteString("}")
			if len(p.targets) > 0 {
				b.WriteString(", Targets: ")
				writeStrings(&b, p.targets)
			}
			b.WriteString("},\n")
		}
		b.WriteString("},\n")
	}
	b.WriteString("},\nelements: map[string][]Element{\n")
	for _, t := range m.types {
		fmt.Fprintf(&b, "%q: {\n", t)
		for _, e := range m.elements[t] {
			fmt.Fprintf(&b, "{%q, ", e.path)
			writeStrings(&b, e.types)
			fmt.Fprintf(&b, ", %v, %q},\n", e.repeats, e.contentRef)
		}
		b.WriteString("},\n")
	}
	b.WriteString("},\n}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	return src, nil
}

func writeStep(b *bytes.Buffer, s step) {
	fmt.Fprintf(b, "{Name: %q", s.name)
	if s.choice {
		b.WriteString(", Choice: true")
	}
	if len(s.types) > 0 {
		b.WriteString(", Types: ")
		writeStrings(b, s.types)
	}
	if s.whereKey != "" {
		fmt.Fprintf(b, ", WhereKey: %q, WhereValue: %q", s.whereKey, s.whereValue)
	}
	if s.resolve != "" {
		fmt.Fprintf(b, ", Resolve: %q", s.resolve)
	}
	b.WriteString("},")
}

func writeStrings(b *bytes.Buffer, ss []string) {
	if len(ss) == 0 {
		b.WriteString("nil")
		return
	}
	b.WriteString("[]string{")
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(s))
	}
	b.WriteString("}")
}
