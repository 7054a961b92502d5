package importer

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/schakel-nl/schakel/fhir"
)

func writeObject(b *bytes.Buffer, ms []fhir.Member) {
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.Key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.Value)
	}
	b.WriteByte('}')
}

// withID returns the resource body with its id member set to id: replaced in
// place, or inserted after resourceType. Every other member is kept as read.
func withID(body []byte, id string) ([]byte, error) {
	ms, err := fhir.Members(body)
	if err != nil {
		return nil, err
	}
	idValue := json.RawMessage(strconv.Quote(id))
	found := false
	for i := range ms {
		if ms[i].Key == "id" {
			ms[i].Value = idValue
			found = true
		}
	}
	if !found {
		at := 0
		for i, m := range ms {
			if m.Key == "resourceType" {
				at = i + 1
				break
			}
		}
		ms = append(ms[:at], append([]fhir.Member{{Key: "id", Value: idValue}}, ms[at:]...)...)
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
		ms, err := fhir.Members(v)
		if err != nil {
			return nil, false, err
		}
		for i := range ms {
			if ms[i].Key == "reference" {
				var s string
				if json.Unmarshal(ms[i].Value, &s) == nil {
					if to, ok := refs[s]; ok {
						ms[i].Value = json.RawMessage(strconv.Quote(to))
						changed = true
					}
					continue
				}
			}
			if c := ms[i].Value; len(c) > 0 && (c[0] == '{' || c[0] == '[') {
				nv, ch, err := rewriteReferences(c, refs)
				if err != nil {
					return nil, false, err
				}
				if ch {
					ms[i].Value = nv
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
