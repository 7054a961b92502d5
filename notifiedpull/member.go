package notifiedpull

import (
	"bytes"
	"encoding/json"

	"github.com/schakel-nl/schakel/fhir"
)

// memberValue finds the value of the top-level member key of obj, a JSON
// object known to be valid (checked or decoded before): its span
// obj[start:end] (of the last), and how many members carry that name.
func memberValue(obj []byte, key string) (start, end, count int) {
	i := fhir.SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return 0, 0, 0
	}
	i = fhir.SkipSpace(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		i0 := i
		ke := fhir.StringEnd(obj, i+1)
		if ke < 0 {
			return 0, 0, 0
		}
		name := obj[i+1 : ke]
		i = fhir.SkipSpace(obj, ke+1)
		if i >= len(obj) || obj[i] != ':' {
			return 0, 0, 0
		}
		i = fhir.SkipSpace(obj, i+1)
		ve := fhir.ValueEnd(obj, i)
		if ve < 0 {
			return 0, 0, 0
		}
		if string(name) == key || bytes.IndexByte(name, '\\') >= 0 && unescaped(obj[i0:ke+1]) == key {
			start, end = i, ve
			count++
		}
		i = fhir.SkipSpace(obj, ve)
		if i < len(obj) && obj[i] == ',' {
			i = fhir.SkipSpace(obj, i+1)
		}
	}
	return start, end, count
}

func unescaped(quoted []byte) string {
	var s string
	_ = json.Unmarshal(quoted, &s)
	return s
}

// eachMember calls fn with the name (as written, quotes removed) and the
// value of every member of obj, a JSON object known to be valid, in order.
// It reports false when obj is no object.
func eachMember(obj []byte, fn func(name, value []byte) error) (bool, error) {
	i := fhir.SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false, nil
	}
	i = fhir.SkipSpace(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		ke := fhir.StringEnd(obj, i+1)
		if ke < 0 {
			return false, nil
		}
		name := obj[i+1 : ke]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(unescaped(obj[i : ke+1]))
		}
		i = fhir.SkipSpace(obj, ke+1)
		if i >= len(obj) || obj[i] != ':' {
			return false, nil
		}
		i = fhir.SkipSpace(obj, i+1)
		ve := fhir.ValueEnd(obj, i)
		if ve < 0 {
			return false, nil
		}
		if err := fn(name, obj[i:ve:ve]); err != nil {
			return true, err
		}
		i = fhir.SkipSpace(obj, ve)
		if i < len(obj) && obj[i] == ',' {
			i = fhir.SkipSpace(obj, i+1)
		}
	}
	return true, nil
}

// eachElement calls fn with every element of arr, a JSON array known to
// be valid, in order. It reports false when arr is no array.
func eachElement(arr []byte, fn func(value []byte) error) (bool, error) {
	i := fhir.SkipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false, nil
	}
	i = fhir.SkipSpace(arr, i+1)
	for i < len(arr) && arr[i] != ']' {
		ve := fhir.ValueEnd(arr, i)
		if ve < 0 {
			return false, nil
		}
		if err := fn(arr[i:ve:ve]); err != nil {
			return true, err
		}
		i = fhir.SkipSpace(arr, ve)
		if i < len(arr) && arr[i] == ',' {
			i = fhir.SkipSpace(arr, i+1)
		}
	}
	return true, nil
}
