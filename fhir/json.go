package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
)

// Member is one member of a JSON object, its value byte-for-byte as read.
type Member struct {
	Key   string
	Value json.RawMessage
}

// Members splits a JSON object into its members, keeping their order and
// their values' exact bytes (numbers keep their text), so a resource can be
// edited without re-encoding what was not touched.
func Members(obj []byte) ([]Member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var out []Member
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
		out = append(out, Member{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	// The decoder would stop here; what follows the object would then be
	// dropped silently by whoever writes the members back.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a JSON object: more follows it")
	}
	return out, nil
}

// SameContent reports whether a stored resource and a new body carry the
// same content, so that writing the body would change nothing: equal as
// JSON values once the store-managed meta.versionId and meta.lastUpdated
// are removed (and meta itself when nothing else is left in it). Member
// order and insignificant whitespace do not count; number text does ("1.0"
// and "1.00" differ, as they do in FHIR).
func SameContent(stored, body []byte) bool {
	a, err := comparableContent(stored)
	if err != nil {
		return false
	}
	b, err := comparableContent(body)
	if err != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

func comparableContent(body []byte) (map[string]any, error) {
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
