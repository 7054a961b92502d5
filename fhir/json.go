package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"unicode/utf8"
)

// Member is one member of a JSON object, its value byte-for-byte as read.
type Member struct {
	Key   string
	Value json.RawMessage
}

// Members splits a JSON object into its members, keeping their order and
// their values' exact bytes (numbers keep their text), so a resource can be
// edited without re-encoding what was not touched. The values share obj's
// bytes.
func Members(obj []byte) ([]Member, error) {
	if !json.Valid(obj) {
		return nil, invalidJSON(obj)
	}
	return SplitMembers(obj)
}

// SplitMembers is Members for a document already known to be valid JSON
// (decoded or checked before): it splits without checking the values, in
// one pass over the bytes. On invalid JSON it returns an error or members
// that make no sense, never more than obj holds.
func SplitMembers(obj []byte) ([]Member, error) {
	i := SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := make([]Member, 0, 16)
	i = SkipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return out, trailing(obj, i+1)
	}
	for i < len(obj) {
		if obj[i] != '"' {
			return nil, errors.New("not a JSON object: a member without a name")
		}
		end := StringEnd(obj, i+1)
		if end < 0 {
			return nil, errors.New("not a JSON object: unterminated name")
		}
		key := string(obj[i+1 : end])
		if k := obj[i+1 : end]; bytes.IndexByte(k, '\\') >= 0 || !utf8.Valid(k) {
			// encoding/json unescapes, and replaces invalid UTF-8.
			if err := json.Unmarshal(obj[i:end+1], &key); err != nil {
				return nil, err
			}
		}
		i = SkipSpace(obj, end+1)
		if i >= len(obj) || obj[i] != ':' {
			return nil, errors.New("not a JSON object: no ':' after a name")
		}
		i = SkipSpace(obj, i+1)
		ve := ValueEnd(obj, i)
		if ve < 0 {
			return nil, errors.New("not a JSON object: unterminated value")
		}
		out = append(out, Member{Key: key, Value: obj[i:ve:ve]})
		i = SkipSpace(obj, ve)
		switch {
		case i >= len(obj):
		case obj[i] == ',':
			i = SkipSpace(obj, i+1)
			continue
		case obj[i] == '}':
			return out, trailing(obj, i+1)
		}
		break
	}
	return nil, errors.New("not a JSON object: unterminated")
}

// SplitElements splits a JSON array of a document known to be valid JSON
// into its elements, as SplitMembers splits an object.
func SplitElements(arr []byte) ([]json.RawMessage, error) {
	i := SkipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return nil, errors.New("not a JSON array")
	}
	var out []json.RawMessage
	i = SkipSpace(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return out, trailing(arr, i+1)
	}
	for i < len(arr) {
		ve := ValueEnd(arr, i)
		if ve < 0 {
			return nil, errors.New("not a JSON array: unterminated value")
		}
		out = append(out, arr[i:ve:ve])
		i = SkipSpace(arr, ve)
		switch {
		case i >= len(arr):
		case arr[i] == ',':
			i = SkipSpace(arr, i+1)
			continue
		case arr[i] == ']':
			return out, trailing(arr, i+1)
		}
		break
	}
	return nil, errors.New("not a JSON array: unterminated")
}

// trailing refuses anything but white space after the end of a value at i:
// whoever writes the parts back would drop it silently.
func trailing(b []byte, i int) error {
	if SkipSpace(b, i) != len(b) {
		return errors.New("not a JSON object: more follows it")
	}
	return nil
}

// SkipSpace returns the index of the first byte at or after b[i] that is no
// JSON white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// ValueEnd returns the index just after the JSON value starting at b[i], or
// -1 when b ends first. It trusts b to be valid JSON.
func ValueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end := StringEnd(b, i+1)
		if end < 0 {
			return -1
		}
		return end + 1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			case '"':
				end := StringEnd(b, i+1)
				if end < 0 {
					return -1
				}
				i = end
			}
		}
		return -1
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\n', '\t', '\r':
			return i
		}
	}
	return i
}

// invalidJSON words why obj is no JSON object the way the decoder does.
func invalidJSON(obj []byte) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(obj, &v); err != nil {
		return err
	}
	return errors.New("not a JSON object: more follows it")
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
