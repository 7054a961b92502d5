package main

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// keySchema is the set of configuration keys a koanf-tagged struct accepts,
// derived from the struct itself so that it cannot drift from what the
// node reads.
type keySchema struct {
	fields map[string]*keySchema // a struct: its keys
	elem   *keySchema            // a list of structs: one element's keys
	open   bool                  // a map: any key below it
	list   bool                  // a list of values (from the environment: comma-separated)
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// schemaOf derives the schema of type t.
func schemaOf(t reflect.Type) *keySchema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		return &keySchema{} // one value, however it is spelt
	case t.Kind() == reflect.Struct:
		s := &keySchema{fields: map[string]*keySchema{}}
		eachKey(t, func(key string, f reflect.StructField) { s.fields[key] = schemaOf(f.Type) })
		return s
	case t.Kind() == reflect.Slice && schemaOf(t.Elem()).fields != nil:
		return &keySchema{elem: schemaOf(t.Elem())}
	case t.Kind() == reflect.Slice:
		return &keySchema{list: true}
	case t.Kind() == reflect.Map:
		return &keySchema{open: true}
	}
	return &keySchema{}
}

// eachKey calls fn for every field of struct type t that is a configuration
// key, with the key as koanf (mapstructure) matches it.
func eachKey(t reflect.Type, fn func(key string, f reflect.StructField)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "squash") {
			eachKey(f.Type, fn)
			continue
		}
		if name == "" {
			name = f.Name
		}
		fn(strings.ToLower(name), f)
	}
}

// lookup walks key (dot-separated) down the schema. It returns the schema
// at key, or how far the key is known and why it is not.
func (s *keySchema) lookup(key string) (*keySchema, string, error) {
	segs := strings.Split(key, ".")
	cur := s
	for i, seg := range segs {
		switch {
		case cur.open:
			return cur, "", nil
		case cur.elem != nil:
			return nil, strings.Join(segs[:i], "."), errList
		case cur.fields == nil:
			return nil, strings.Join(segs[:i], "."), errUnknown
		}
		next, ok := cur.fields[seg]
		if !ok {
			return nil, strings.Join(segs[:i], "."), errUnknown
		}
		cur = next
	}
	return cur, "", nil
}

type lookupError string

func (e lookupError) Error() string { return string(e) }

const (
	errUnknown lookupError = "unknown"
	errList    lookupError = "a list"
)

// unknownKey is a key in a configuration source that no setting reads.
type unknownKey struct {
	key     string // as written, with list indexes: participants[0].nmae
	suggest string // the closest known key, or ""
}

// unknownKeys lists the keys of raw (koanf's nested map of one source)
// that s does not accept, in order.
func (s *keySchema) unknownKeys(raw map[string]any) []unknownKey {
	var out []unknownKey
	s.walk(raw, "", &out)
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

func (s *keySchema) walk(raw map[string]any, prefix string, out *[]unknownKey) {
	for k, v := range raw {
		child, ok := s.fields[strings.ToLower(k)]
		if !ok {
			near := s.closest(k)
			for _, leaf := range leafKeys(v, k) {
				u := unknownKey{key: prefix + leaf}
				if near != "" {
					u.suggest = prefix + near + strings.TrimPrefix(leaf, k)
				}
				*out = append(*out, u)
			}
			continue
		}
		switch {
		case child.fields != nil:
			if m, ok := v.(map[string]any); ok {
				child.walk(m, prefix+k+".", out)
			}
		case child.elem != nil:
			if list, ok := v.([]any); ok {
				for i, e := range list {
					if m, ok := e.(map[string]any); ok {
						child.elem.walk(m, fmt.Sprintf("%s%s[%d].", prefix, k, i), out)
					}
				}
			}
		}
	}
}

// leafKeys are the keys of the values below v, each prefixed with key.
func leafKeys(v any, key string) []string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return []string{key}
	}
	var out []string
	for k, sub := range m {
		out = append(out, leafKeys(sub, key+"."+k)...)
	}
	return out
}

// closest is the key of s nearest to k in spelling, when one is near enough
// to be a likely typo.
func (s *keySchema) closest(k string) string {
	k = strings.ToLower(k)
	best, bestDist := "", 0
	for name := range s.fields {
		d := editDistance(k, name)
		if d <= 2 || d <= len(name)/3 {
			if best == "" || d < bestDist || (d == bestDist && name < best) {
				best, bestDist = name, d
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// marshalConfig renders a koanf-tagged struct as YAML the node reads back:
// keys as koanf names them, in the struct's order, durations as "5m0s".
// Settings at their zero value are left out; reading the file back gives
// them that same zero value.
func marshalConfig(v any) ([]byte, error) {
	n, err := yamlNode(reflect.ValueOf(v))
	if err != nil {
		return nil, err
	}
	if n == nil {
		return []byte("{}\n"), nil
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2) // as in docs/operations.md
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func yamlNode(v reflect.Value) (*yaml.Node, error) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil, nil
		}
		v = v.Elem()
	}
	if v.IsZero() {
		return nil, nil
	}
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: time.Duration(v.Int()).String()}, nil
	case v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(textUnmarshalerType):
		m := &yaml.Node{Kind: yaml.MappingNode}
		var err error
		eachKey(v.Type(), func(key string, f reflect.StructField) {
			if err != nil {
				return
			}
			var child *yaml.Node
			if child, err = yamlNode(v.FieldByIndex(f.Index)); child != nil {
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, child)
			}
		})
		if err != nil || len(m.Content) == 0 {
			return nil, err
		}
		return m, nil
	case v.Kind() == reflect.Slice || v.Kind() == reflect.Array:
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for i := 0; i < v.Len(); i++ {
			child, err := yamlNode(v.Index(i))
			if err != nil {
				return nil, err
			}
			if child == nil { // a zero element keeps its place
				child = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
				if k := v.Index(i).Kind(); k != reflect.Struct && k != reflect.Map {
					if err := child.Encode(v.Index(i).Interface()); err != nil {
						return nil, err
					}
				}
			}
			seq.Content = append(seq.Content, child)
		}
		return seq, nil
	case v.Kind() == reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range keys {
			child := &yaml.Node{}
			if err := child.Encode(v.MapIndex(k).Interface()); err != nil {
				return nil, err
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(k)}, child)
		}
		return m, nil
	}
	n := &yaml.Node{}
	if err := n.Encode(v.Interface()); err != nil {
		return nil, err
	}
	return n, nil
}
