package demo

import (
	"bytes"
	"encoding/json"
)

// obj is a JSON object that keeps its keys in the order written, so the
// generated resources read like the FHIR examples (resourceType, id, meta
// first) instead of in alphabetical order.
type obj []kv

type kv struct {
	k string
	v any
}

// arr is a JSON array.
type arr = []any

// MarshalJSON writes the members in order.
func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(m.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
