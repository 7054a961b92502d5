package notifiedpull

import (
	"bytes"
	"encoding/json"
)

// memberValue finds the value of the top-level member key of obj, a JSON
// object known to be valid (checked or decoded before): its span
// obj[start:end] (of the last), and how many members carry that name.
func memberValue(obj []byte, key string) (start, end, count int) {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return 0, 0, 0
	}
	i = skipWS(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		i0 := i
		ke := strEnd(obj, i+1)
		if ke < 0 {
			return 0, 0, 0
		}
		name := obj[i+1 : ke]
		i = skipWS(obj, ke+1)
		if i >= len(obj) || obj[i] != ':' {
			return 0, 0, 0
		}
		i = skipWS(obj, i+1)
		ve := valEnd(obj, i)
		if ve < 0 {
			return 0, 0, 0
		}
		if string(name) == key || bytes.IndexByte(name, '\\') >= 0 && unescaped(obj[i0:ke+1]) == key {
			start, end = i, ve
			count++
		}
		i = skipWS(obj, ve)
		if i < len(obj) && obj[i] == ',' {
			i = skipWS(obj, i+1)
		}
	}
	return start, end, count
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// strEnd is the index of the quote closing the string whose content
// starts at b[i], or -1.
func strEnd(b []byte, i int) int {
	for ; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// valEnd is the index just after the value starting at b[i], or -1.
func valEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		e := strEnd(b, i+1)
		if e < 0 {
			return -1
		}
		return e + 1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			case '"':
				e := strEnd(b, i+1)
				if e < 0 {
					return -1
				}
				i = e
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

func unescaped(quoted []byte) string {
	var s string
	_ = json.Unmarshal(quoted, &s)
	return s
}

// eachMember calls fn with the name (as written, quotes removed) and the
// value of every member of obj, a JSON object known to be valid, in order.
// It reports false when obj is no object.
func eachMember(obj []byte, fn func(name, value []byte) error) (bool, error) {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false, nil
	}
	i = skipWS(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		ke := strEnd(obj, i+1)
		if ke < 0 {
			return false, nil
		}
		name := obj[i+1 : ke]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(unescaped(obj[i : ke+1]))
		}
		i = skipWS(obj, ke+1)
		if i >= len(obj) || obj[i] != ':' {
			return false, nil
		}
		i = skipWS(obj, i+1)
		ve := valEnd(obj, i)
		if ve < 0 {
			return false, nil
		}
		if err := fn(name, obj[i:ve:ve]); err != nil {
			return true, err
		}
		i = skipWS(obj, ve)
		if i < len(obj) && obj[i] == ',' {
			i = skipWS(obj, i+1)
		}
	}
	return true, nil
}

// eachElement calls fn with every element of arr, a JSON array known to
// be valid, in order. It reports false when arr is no array.
func eachElement(arr []byte, fn func(value []byte) error) (bool, error) {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false, nil
	}
	i = skipWS(arr, i+1)
	for i < len(arr) && arr[i] != ']' {
		ve := valEnd(arr, i)
		if ve < 0 {
			return false, nil
		}
		if err := fn(arr[i:ve:ve]); err != nil {
			return true, err
		}
		i = skipWS(arr, ve)
		if i < len(arr) && arr[i] == ',' {
			i = skipWS(arr, i+1)
		}
	}
	return true, nil
}
