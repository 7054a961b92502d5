package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
)

// member is one member of a JSON object, its value byte-for-byte as read.
type member struct {
	key   string
	value json.RawMessage
}

// objectMembers splits a JSON object into its members, keeping their order
// and their values' bytes (numbers keep their exact text).
func objectMembers(obj []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, member{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

func writeObject(b *bytes.Buffer, ms []member) {
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
}

// withID returns the resource body with its id member set to id: replaced in
// place, or inserted after resourceType. Every other member is kept as read.
func withID(body []byte, id string) ([]byte, error) {
	ms, err := objectMembers(body)
	if err != nil {
		return nil, err
	}
	idValue := json.RawMessage(strconv.Quote(id))
	found := false
	for i := range ms {
		if ms[i].key == "id" {
			ms[i].value = idValue
			found = true
		}
	}
	if !found {
		at := 0
		for i, m := range ms {
			if m.key == "resourceType" {
				at = i + 1
				break
			}
		}
		ms = append(ms[:at], append([]member{{"id", idValue}}, ms[at:]...)...)
	}
	var b bytes.Buffer
	b.Grow(len(body) + len(id) + 8)
	writeObject(&b, ms)
	return b.Bytes(), nil
}

// rewriteReferences replaces every Reference.reference (a "reference"
// member whose value is a string) found in refs by its mapped value, at any
// depth, contained resources included. It keeps member order and all other
// bytes; changed reports whether anything was replaced.
func rewriteReferences(value []byte, refs map[string]string) (out []byte, changed bool, err error) {
	v := bytes.TrimSpace(value)
	if len(v) == 0 {
		return value, false, nil
	}
	switch v[0] {
	case '{':
		ms, err := objectMembers(v)
		if err != nil {
			return nil, false, err
		}
		for i := range ms {
			if ms[i].key == "reference" {
				var s string
				if json.Unmarshal(ms[i].value, &s) == nil {
					if to, ok := refs[s]; ok {
						ms[i].value = json.RawMessage(strconv.Quote(to))
						changed = true
					}
					continue
				}
			}
			if c := ms[i].value; len(c) > 0 && (c[0] == '{' || c[0] == '[') {
				nv, ch, err := rewriteReferences(c, refs)
				if err != nil {
					return nil, false, err
				}
				if ch {
					ms[i].value = nv
					changed = true
				}
			}
		}
		if !changed {
			return value, false, nil
		}
		var b bytes.Buffer
		b.Grow(len(v) + 64)
		writeObject(&b, ms)
		return b.Bytes(), true, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return nil, false, err
		}
		for i, it := range items {
			if len(it) > 0 && (it[0] == '{' || it[0] == '[') {
				nv, ch, err := rewriteReferences(it, refs)
				if err != nil {
					return nil, false, err
				}
				if ch {
					items[i] = nv
					changed = true
				}
			}
		}
		if !changed {
			return value, false, nil
		}
		var b bytes.Buffer
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(it)
		}
		b.WriteByte(']')
		return b.Bytes(), true, nil
	}
	return value, false, nil
}

// sameContent reports whether a stored resource and a new body carry the
// same content: equal as JSON values once the store-managed meta.versionId
// and meta.lastUpdated are removed (and meta itself when nothing else is
// left in it). Member order and insignificant whitespace do not count;
// number text does ("1.0" and "1.00" differ, as they do in FHIR).
func sameContent(stored, body []byte) bool {
	a, err := comparable(stored)
	if err != nil {
		return false
	}
	b, err := comparable(body)
	if err != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

func comparable(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if meta, ok := doc["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(doc, "meta")
		}
	}
	return doc, nil
}
