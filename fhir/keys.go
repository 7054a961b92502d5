package fhir

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// DuplicateKeyError reports an object member given twice. FHIR JSON allows
// each property at most once; decoders disagree on which copy wins, so a
// duplicate could make a checker and the store see different content.
type DuplicateKeyError struct {
	Key string
	// Path is where the object is, e.g. "name[0]"; empty for the root.
	Path string
}

func (e *DuplicateKeyError) Error() string {
	if e.Path == "" {
		return "property " + strconv.Quote(e.Key) + " appears more than once"
	}
	return "property " + strconv.Quote(e.Key) + " appears more than once in " + e.Path
}

// Expression is the location of the duplicate as a FHIRPath-like
// expression rooted at typ, e.g. "Patient.name[0].family".
func (e *DuplicateKeyError) Expression(typ string) string {
	p := typ
	if e.Path != "" {
		if p != "" && e.Path[0] != '[' {
			p += "."
		}
		p += e.Path
	}
	if p != "" {
		p += "."
	}
	return p + e.Key
}

// manyKeys is the member count above which an object's keys are checked
// through a map instead of by comparing with each earlier key.
const manyKeys = 16

// keyFrame is one open object or array of CheckKeys.
type keyFrame struct {
	object  bool
	wantKey bool // an object between '{' or ',' and the next key
	first   int  // where this object's keys start in the key stack
	key     []byte
	index   int // the current element of an array
	big     map[string]struct{}
}

// CheckKeys returns a *DuplicateKeyError for the first object in the JSON
// document b that has a member twice, and nil otherwise. b should be valid
// JSON (check with json.Valid first); on invalid input the result says
// nothing. It runs in one pass without decoding the values.
func CheckKeys(b []byte) error {
	var (
		stack []keyFrame
		keys  [][]byte // the keys of every open object, innermost last
	)
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			stack = append(stack, keyFrame{object: true, wantKey: true, first: len(keys)})
		case '[':
			stack = append(stack, keyFrame{first: len(keys)})
		case '}', ']':
			if len(stack) == 0 {
				return nil
			}
			keys = keys[:stack[len(stack)-1].first]
			stack = stack[:len(stack)-1]
		case ',':
			if len(stack) == 0 {
				return nil
			}
			if f := &stack[len(stack)-1]; f.object {
				f.wantKey = true
			} else {
				f.index++
			}
		case '"':
			end := StringEnd(b, i+1)
			if end < 0 {
				return nil
			}
			if len(stack) > 0 && stack[len(stack)-1].wantKey {
				f := &stack[len(stack)-1]
				f.wantKey = false
				key := b[i+1 : end]
				if bytes.IndexByte(key, '\\') >= 0 {
					var s string
					if json.Unmarshal(b[i:end+1], &s) != nil {
						return nil
					}
					key = []byte(s)
				}
				if dup := f.seen(keys, key); dup {
					return &DuplicateKeyError{Key: string(key), Path: keyPath(stack[:len(stack)-1])}
				}
				keys = append(keys, key)
				f.key = key
			}
			i = end
		}
		// Everything else (white space, ':', numbers, literals) carries no
		// structure.
	}
	return nil
}

// seen reports whether key is among the keys of this object (keys[f.first:])
// so far.
func (f *keyFrame) seen(keys [][]byte, key []byte) bool {
	own := keys[f.first:]
	if f.big == nil && len(own) < manyKeys {
		for _, k := range own {
			if bytes.Equal(k, key) {
				return true
			}
		}
		return false
	}
	if f.big == nil {
		f.big = make(map[string]struct{}, 2*len(own))
		for _, k := range own {
			f.big[string(k)] = struct{}{}
		}
	}
	if _, ok := f.big[string(key)]; ok {
		return true
	}
	f.big[string(key)] = struct{}{}
	return false
}

// StringEnd returns the index of the quote closing the JSON string whose
// content starts at b[i], or -1.
func StringEnd(b []byte, i int) int {
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

// keyPath renders the open frames as "a.b[2].c".
func keyPath(frames []keyFrame) string {
	var sb strings.Builder
	for _, f := range frames {
		if f.object {
			if sb.Len() > 0 {
				sb.WriteByte('.')
			}
			sb.Write(f.key)
		} else {
			sb.WriteByte('[')
			sb.WriteString(strconv.Itoa(f.index))
			sb.WriteByte(']')
		}
	}
	return sb.String()
}
