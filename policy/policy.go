// Package policy holds the access policies of the care applications: per
// application a versioned YAML file that says which UZI role codes may run
// which queries and read which resource types, at which plateau of the
// growth model. The defaults are embedded; a directory given in the
// configuration replaces them per application.
//
// A file looks like this (see bgz.yaml for a complete one):
//
//	version: 1
//	application: bgz
//	fhirVersion: STU3
//	roles:                      # named groups of UZI role codes
//	  physicians: ["01.000", "01.015", "01.016"]
//	rules:
//	  - id: problems
//	    type: Condition           # the resource type searched or read
//	    interactions: [search-type]
//	    params: {}                # parameters the request must carry with exactly these values
//	    include: []               # further resource types the request may return (_include, _revinclude)
//	    from: 1                   # the lowest authorization plateau at which the rule applies
//	    collaboration: [physicians]   # plateau 2: the collaboration's rules per role
//	    guideline: [physicians]       # plateau 3: the national authorization guideline
//	    protocol: ["01.015"]          # plateau 4: the medical authorization protocol
package policy

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
	"github.com/schakel-nl/schakel/fhir/spec"
)

//go:embed *.yaml
var embedded embed.FS

// Defaults are the embedded policy files.
func Defaults() fs.FS { return embedded }

// Plateaus that carry role lists, and the YAML key of each.
var roleKeys = [...]struct {
	plateau int
	key     string
}{{2, "collaboration"}, {3, "guideline"}, {4, "protocol"}}

// roleCodePattern is the form of an UZI role code (RoleCodeNL,
// 2.16.840.1.113883.2.4.15.111), e.g. 01.015.
var roleCodePattern = regexp.MustCompile(`^[0-9]{2}\.[0-9]{3}$`)

// looksLikeCode tells a malformed role code from a role group name.
func looksLikeCode(s string) bool {
	return s != "" && strings.Trim(s, "0123456789.") == ""
}

var interactions = []string{rest.InteractionRead, rest.InteractionVRead, rest.InteractionSearchType,
	rest.InteractionCreate, rest.InteractionUpdate, rest.InteractionDelete, rest.InteractionOperation}

// Policy is one care application's access policy.
type Policy struct {
	// Version is the policy's own version; raise it with every change, it is
	// named in refusals and audit records.
	Version int
	// Application is the care application, e.g. "bgz"; it equals the file name.
	Application string
	// FHIRVersion is the FHIR version the resource types are checked against.
	FHIRVersion fhir.Version
	Description string
	// Rules in file order.
	Rules []*Rule
	// File is where the policy came from ("embedded:bgz.yaml" or a path).
	File string

	byType map[string][]*Rule // most specific first
}

// Rule says who may perform one kind of request.
type Rule struct {
	ID           string
	Description  string
	Type         string   // resource type searched or read
	Interactions []string // rest interactions
	Operation    string   // e.g. "$lastn"; empty for none
	Params       []Param  // required parameters, sorted by name
	Include      []string // further resource types the request may return
	// From is the lowest authorization plateau the rule applies at: a
	// partner agreed at a lower plateau may not make this request.
	From int
	// Line is where the rule starts in its file.
	Line int

	roles [5]map[string]bool // allowed role codes per plateau (2–4)
	types map[string]bool    // Type and Include
}

// Param is a search parameter a rule requires, with its exact value.
type Param struct{ Name, Value string }

// Roles returns the role codes allowed at plateau p (2–4), sorted; nil for
// plateau 1, where the bilateral list decides and roles do not.
func (r *Rule) Roles(p int) []string {
	if p < 2 || p > 4 {
		return nil
	}
	out := make([]string, 0, len(r.roles[p]))
	for c := range r.roles[p] {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Allows reports whether role code may use the rule at plateau p (2–4).
func (r *Rule) Allows(p int, role string) bool {
	return p >= 2 && p <= 4 && r.roles[p][role]
}

// Returns reports whether the rule lets the request return resource type t.
func (r *Rule) Returns(t string) bool { return r.types[t] }

// Match finds the most specific rule for a request: its resource type,
// interaction, operation, and every parameter the rule requires present
// with that value. It returns nil when no rule covers the request.
func (p *Policy) Match(resourceType, interaction, operation string, params map[string][]string) *Rule {
	for _, r := range p.byType[resourceType] {
		if r.Operation != operation || !slices.Contains(r.Interactions, interaction) {
			continue
		}
		ok := true
		for _, want := range r.Params {
			vs := params[want.Name]
			if len(vs) != 1 || (vs[0] != want.Value && alternatives(vs[0]) != want.Value) {
				ok = false
				break
			}
		}
		if ok {
			return r
		}
	}
	return nil
}

// alternatives puts the comma-separated alternatives of a search value (FHIR
// OR) in order, so that a request may list them in any order.
func alternatives(v string) string {
	if !strings.Contains(v, ",") || strings.Contains(v, `\,`) {
		return v
	}
	parts := strings.Split(v, ",")
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Set is the policies by application.
type Set map[string]*Policy

// Load reads the embedded defaults and, when dir is not empty, every
// <application>.yaml in dir, which replaces the default of the same
// application. Every fault of every file is reported.
func Load(dir string) (Set, error) {
	set := Set{}
	var errs []error
	if err := set.addFS(embedded, "embedded:"); err != nil {
		errs = append(errs, err)
	}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("policy directory %s: not a readable directory", dir)
		}
		if err := set.addFS(os.DirFS(dir), dir+string(filepath.Separator)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return set, nil
}

func (s Set) addFS(fsys fs.FS, prefix string) error {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s%s: %w", prefix, name, err))
			continue
		}
		p, err := Parse(prefix+name, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if want := strings.TrimSuffix(name, ".yaml"); p.Application != want {
			errs = append(errs, fmt.Errorf("%s%s: application %q must match the file name %q", prefix, name, p.Application, want))
			continue
		}
		s[p.Application] = p
	}
	return errors.Join(errs...)
}

// Parse reads one policy file; file names it in errors, which carry the
// line of the fault.
func Parse(file string, data []byte) (*Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: a policy file is a YAML mapping", file)
	}
	e := &errList{file: file}
	p := &Policy{File: file, byType: map[string][]*Rule{}}
	top := doc.Content[0]
	fields := e.mapping(top, "version", "application", "fhirVersion", "description", "roles", "rules")

	if n := fields["version"]; n == nil {
		e.add(top, "version is required")
	} else if err := n.Decode(&p.Version); err != nil || p.Version < 1 {
		e.add(n, "version must be a positive integer")
	}
	if n := fields["application"]; n == nil {
		e.add(top, "application is required")
	} else if n.Decode(&p.Application) != nil || p.Application == "" {
		e.add(n, "application must be a name")
	}
	var defs *spec.Definitions
	if n := fields["fhirVersion"]; n == nil {
		e.add(top, "fhirVersion is required (STU3 or R4)")
	} else {
		var s string
		_ = n.Decode(&s)
		v, err := fhir.ParseVersion(s)
		if err != nil {
			e.add(n, "fhirVersion %q is not STU3 or R4", s)
		} else {
			p.FHIRVersion, defs = v, spec.For(v)
		}
	}
	if n := fields["description"]; n != nil {
		_ = n.Decode(&p.Description)
	}

	groups := map[string][]string{}
	if n := fields["roles"]; n != nil {
		if n.Kind != yaml.MappingNode {
			e.add(n, "roles is a mapping of group name to role codes")
		} else {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if _, dup := groups[k.Value]; dup {
					e.add(k, "role group %q is defined twice", k.Value)
					continue
				}
				if looksLikeCode(k.Value) || k.Value == "" {
					e.add(k, "role group name %q must not look like a role code", k.Value)
				}
				v = deref(v)
				var entries []string
				if v.Kind != yaml.SequenceNode || v.Decode(&entries) != nil || len(entries) == 0 {
					e.add(v, "role group %q must list role codes", k.Value)
					continue
				}
				var codes []string
				for j, c := range entries {
					// A group may name a group defined above it, so that
					// "every care role" is written once, from its parts.
					if sub, ok := groups[c]; ok && !looksLikeCode(c) {
						codes = append(codes, sub...)
						continue
					}
					if !looksLikeCode(c) {
						e.add(v.Content[j], "role group %q: %q is neither an UZI role code nor a role group defined above it", k.Value, c)
						continue
					}
					if fault := roleCodeFault(c); fault != "" {
						e.add(v.Content[j], "role group %q: %s", k.Value, fault)
						continue
					}
					codes = append(codes, c)
				}
				groups[k.Value] = codes
			}
		}
	}

	ids := map[string]int{}
	keys := map[string]int{}
	if n := fields["rules"]; n == nil || n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		e.add(top, "rules must be a non-empty list")
	} else {
		for _, rn := range n.Content {
			rn = deref(rn)
			r := e.rule(rn, groups, defs)
			if r == nil {
				continue
			}
			if l, dup := ids[r.ID]; dup {
				e.add(rn, "rule id %q is already used on line %d", r.ID, l)
			}
			ids[r.ID] = r.Line
			for _, in := range r.Interactions {
				k := r.key(in)
				if l, dup := keys[k]; dup {
					e.add(rn, "rule %q duplicates the rule on line %d (same type, interaction, operation and parameters)", r.ID, l)
				}
				keys[k] = r.Line
			}
			p.Rules = append(p.Rules, r)
		}
	}
	if err := e.err(); err != nil {
		return nil, err
	}
	for _, r := range p.Rules {
		p.byType[r.Type] = append(p.byType[r.Type], r)
	}
	for _, rs := range p.byType {
		// The rule that asks most of the request decides, so a specific
		// rule (one Observation code) wins over a general one.
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Params) > len(rs[j].Params) })
	}
	return p, nil
}

// key identifies what a rule matches, for the duplicate check.
func (r *Rule) key(interaction string) string {
	var b strings.Builder
	b.WriteString(r.Type + "|" + interaction + "|" + r.Operation)
	for _, p := range r.Params {
		b.WriteString("|" + p.Name + "=" + p.Value)
	}
	return b.String()
}

func (e *errList) rule(n *yaml.Node, groups map[string][]string, defs *spec.Definitions) *Rule {
	if n.Kind != yaml.MappingNode {
		e.add(n, "a rule is a mapping")
		return nil
	}
	f := e.mapping(n, "id", "description", "type", "interactions", "operation", "params", "include", "from", "collaboration", "guideline", "protocol")
	r := &Rule{Line: n.Line, types: map[string]bool{}}
	decode := func(key string, into any) *yaml.Node {
		v := f[key]
		if v != nil {
			if err := v.Decode(into); err != nil {
				e.add(v, "%s: %v", key, cleanYAMLError(err))
			}
		}
		return v
	}
	if decode("id", &r.ID) == nil || r.ID == "" {
		e.add(n, "rule id is required")
	}
	decode("description", &r.Description)
	if v := decode("type", &r.Type); v == nil {
		e.add(n, "rule %q: type (the resource type) is required", r.ID)
	} else if defs != nil && !defs.IsResourceType(r.Type) {
		e.add(v, "rule %q: %q is not a FHIR %s resource type", r.ID, r.Type, defs.Version)
	}
	r.types[r.Type] = true
	if v := decode("interactions", &r.Interactions); v == nil || len(r.Interactions) == 0 {
		r.Interactions = []string{rest.InteractionSearchType}
	} else {
		for _, in := range r.Interactions {
			if !slices.Contains(interactions, in) {
				e.add(v, "rule %q: unknown interaction %q (known: %s)", r.ID, in, strings.Join(interactions, ", "))
			}
		}
	}
	if v := decode("operation", &r.Operation); v != nil {
		if !strings.HasPrefix(r.Operation, "$") || len(r.Operation) < 2 {
			e.add(v, "rule %q: operation %q must start with $", r.ID, r.Operation)
		}
		if !slices.Contains(r.Interactions, rest.InteractionOperation) {
			e.add(v, "rule %q: an operation rule needs interaction %q", r.ID, rest.InteractionOperation)
		}
	}
	var params map[string]string
	if v := decode("params", &params); v != nil {
		for k, val := range params {
			if k == "" || val == "" {
				e.add(v, "rule %q: params need a name and a value", r.ID)
			}
			r.Params = append(r.Params, Param{k, alternatives(val)})
		}
		sort.Slice(r.Params, func(i, j int) bool { return r.Params[i].Name < r.Params[j].Name })
	}
	if v := decode("include", &r.Include); v != nil {
		for i, t := range r.Include {
			if defs != nil && !defs.IsResourceType(t) {
				e.add(v.Content[i], "rule %q: include %q is not a FHIR %s resource type", r.ID, t, defs.Version)
			}
			if r.types[t] {
				e.add(v.Content[i], "rule %q: resource type %q is listed twice", r.ID, t)
			}
			r.types[t] = true
		}
	}
	if v := decode("from", &r.From); v == nil {
		e.add(n, "rule %q: from (the lowest plateau, 1–4) is required", r.ID)
	} else if r.From < 1 || r.From > 4 {
		e.add(v, "rule %q: from must be a plateau 1–4, not %d", r.ID, r.From)
	}
	for _, rk := range roleKeys {
		v := f[rk.key]
		if v == nil {
			if r.From >= 1 && rk.plateau >= r.From {
				e.add(n, "rule %q applies from plateau %d, so it needs %s (the roles allowed at plateau %d)", r.ID, r.From, rk.key, rk.plateau)
			}
			continue
		}
		if rk.plateau < r.From {
			e.add(v, "rule %q applies from plateau %d; %s (plateau %d) would never be used", r.ID, r.From, rk.key, rk.plateau)
		}
		var entries []string
		if v.Decode(&entries) != nil || len(entries) == 0 {
			e.add(v, "rule %q: %s must list role codes or role groups", r.ID, rk.key)
			continue
		}
		set := map[string]bool{}
		for i, en := range entries {
			switch {
			case looksLikeCode(en):
				if fault := roleCodeFault(en); fault != "" {
					e.add(v.Content[i], "rule %q: %s", r.ID, fault)
					continue
				}
				if set[en] {
					e.add(v.Content[i], "rule %q: role %s is listed twice in %s", r.ID, en, rk.key)
				}
				set[en] = true
			default:
				codes, ok := groups[en]
				if !ok {
					e.add(v.Content[i], "rule %q: %q is neither an UZI role code nor a role group defined under roles", r.ID, en)
					continue
				}
				for _, c := range codes {
					set[c] = true
				}
			}
		}
		r.roles[rk.plateau] = set
	}
	return r
}

// errList gathers faults with their lines.
type errList struct {
	file string
	errs []error
}

func (e *errList) add(n *yaml.Node, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s:%d: %s", e.file, n.Line, fmt.Sprintf(format, args...)))
}

func (e *errList) err() error { return errors.Join(e.errs...) }

// mapping returns the values of a mapping node by key, reporting unknown
// and repeated keys.
func (e *errList) mapping(n *yaml.Node, known ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			e.add(k, "unknown key %q (known: %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			e.add(k, "key %q is repeated", k.Value)
		}
		out[k.Value] = deref(n.Content[i+1])
	}
	return out
}

// deref follows a YAML alias (*name) to the node it names, so that the
// line numbers and list items of errors come from the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n  ")
	return s
}
