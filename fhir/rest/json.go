package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/schakel-nl/schakel/fhir"
)

// maxDepth is the deepest nesting of objects and arrays accepted in a body.
// Real resources stay far below it; the limit keeps hostile input from
// making any later parser (ours, the store's, a validator's) recurse deeply.
const maxDepth = 100

// checkJSON rejects bodies that are not UTF-8, nest deeper than maxDepth,
// are not well-formed JSON or have a property twice in an object, cheapest
// check first.
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		return fhir.Errorf(http.StatusBadRequest, "structure", "the body is not valid UTF-8")
	}
	if depth(b) > maxDepth {
		return fhir.Errorf(http.StatusBadRequest, "structure", "the body nests deeper than %d levels", maxDepth)
	}
	if !json.Valid(b) {
		// Decode only to get a position for the diagnostics; the error text
		// of encoding/json describes the input, never our internals.
		var v struct{}
		err := json.Unmarshal(b, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fhir.Errorf(http.StatusBadRequest, "structure", "the body is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)
		}
		return fhir.Errorf(http.StatusBadRequest, "structure", "the body is not valid JSON")
	}
	if err := fhir.CheckKeys(b); err != nil {
		return duplicateKey(b, err)
	}
	return nil
}

// duplicateKey answers a body with a property given twice: FHIR JSON allows
// each at most once, and parsers differ on which copy they keep.
func duplicateKey(b []byte, err error) error {
	var de *fhir.DuplicateKeyError
	if !errors.As(err, &de) {
		return err
	}
	// The expression is rooted at the first resourceType, when there is one.
	typ := ""
	ms, _ := members(b)
	for _, m := range ms {
		if m.key == "resourceType" {
			typ, _ = unquote(m.val)
			break
		}
	}
	at := clipReason(de.Expression(typ))
	e := fhir.Errorf(http.StatusBadRequest, "structure", "property %q appears more than once at %s; FHIR JSON allows each property once", clip(de.Key), at)
	e.Issues[0].Expression = []string{at}
	e.Cause = err
	return e
}

// depth returns the deepest nesting of objects and arrays in b, stopping
// early once it exceeds maxDepth. It needs no valid JSON: brackets inside
// strings are skipped, everything else is counted.
func depth(b []byte) int {
	d, deepest := 0, 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			d++
			if d > deepest {
				deepest = d
				if deepest > maxDepth {
					return deepest
				}
			}
		case '}', ']':
			d--
		}
	}
	return deepest
}

var errNotObject = errors.New("not a JSON object")

// member is one top-level member of a JSON object: its key and raw value.
type member struct {
	key string
	val []byte
}

// members splits a valid JSON object into its top-level members, in order,
// without decoding the values.
func members(b []byte) ([]member, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	var out []member
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return out, nil
	}
	for i < len(b) {
		end := skipValue(b, i) // the key is a string value
		key, err := unquote(b[i:end])
		if err != nil {
			return nil, err
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, errNotObject
		}
		start := skipSpace(b, i+1)
		end = skipValue(b, start)
		out = append(out, member{key, b[start:end]})
		i = skipSpace(b, end)
		if i >= len(b) {
			break
		}
		if b[i] == '}' {
			return out, nil
		}
		i = skipSpace(b, i+1) // ','
	}
	return nil, errNotObject
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at b[i].
// b must be valid JSON.
func skipValue(b []byte, i int) int {
	d := 0
	inString := false
	for ; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
				if d == 0 {
					return i + 1
				}
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			d++
		case '}', ']':
			d--
			if d == 0 {
				return i + 1
			}
			if d < 0 { // end of the enclosing container: a scalar ended
				return i
			}
		case ',', ' ', '\t', '\n', '\r', ':':
			if d == 0 {
				return i
			}
		}
	}
	return i
}

// unquote decodes a raw JSON string; plain strings need no decoding.
func unquote(raw []byte) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", errNotObject
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// identity returns the resourceType and id of a valid JSON resource. Keys
// are matched exactly (unlike encoding/json's case-insensitive matching) and
// a duplicate resourceType or id is refused, so that what is checked here is
// what every later parser sees.
func identity(b []byte) (typ, id string, err error) {
	ms, err := members(b)
	if err != nil {
		return "", "", fhir.Errorf(http.StatusBadRequest, "structure", "the body is not a JSON object")
	}
	var seenType, seenID bool
	for _, m := range ms {
		var dst *string
		var seen *bool
		switch m.key {
		case "resourceType":
			dst, seen = &typ, &seenType
		case "id":
			dst, seen = &id, &seenID
		default:
			continue
		}
		if *seen {
			return "", "", fhir.Errorf(http.StatusBadRequest, "structure", "the body has more than one %q", m.key)
		}
		*seen = true
		if *dst, err = unquote(m.val); err != nil {
			return "", "", fhir.Errorf(http.StatusBadRequest, "structure", "%q must be a string", m.key)
		}
	}
	if !seenType {
		return "", "", fhir.Errorf(http.StatusBadRequest, "required", "the body has no resourceType")
	}
	return typ, id, nil
}

// subset returns the resource body with only the top-level elements keep
// accepts, plus resourceType, id and meta, and tags meta with tag (the
// SUBSETTED coding). Element order is preserved.
func subset(body []byte, keep func(string) bool, tag []byte) ([]byte, error) {
	ms, err := members(body)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + len(tag) + 16)
	buf.WriteByte('{')
	first, hasMeta := true, false
	for _, m := range ms {
		val := m.val
		switch m.key {
		case "resourceType", "id":
		case "meta":
			hasMeta = true
			if val, err = tagMeta(val, tag); err != nil {
				return nil, err
			}
		default:
			if !keep(m.key) {
				continue
			}
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		appendString(&buf, m.key)
		buf.WriteByte(':')
		buf.Write(val)
	}
	if !hasMeta {
		if !first {
			buf.WriteByte(',')
		}
		buf.WriteString(`"meta":{"tag":[`)
		buf.Write(tag)
		buf.WriteString(`]}`)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// tagMeta adds tag to meta.tag, keeping everything else in meta.
func tagMeta(meta, tag []byte) ([]byte, error) {
	ms, err := members(meta)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	tagged := false
	for i, m := range ms {
		if i > 0 {
			buf.WriteByte(',')
		}
		appendString(&buf, m.key)
		buf.WriteByte(':')
		if m.key != "tag" {
			buf.Write(m.val)
			continue
		}
		tagged = true
		arr := bytes.TrimSpace(m.val)
		if len(arr) < 2 || arr[0] != '[' {
			return nil, errNotObject
		}
		inner := bytes.TrimSpace(arr[1 : len(arr)-1])
		buf.WriteByte('[')
		if len(inner) > 0 {
			buf.Write(inner)
			buf.WriteByte(',')
		}
		buf.Write(tag)
		buf.WriteByte(']')
	}
	if !tagged {
		if len(ms) > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`"tag":[`)
		buf.Write(tag)
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// appendString writes s as a JSON string.
func appendString(buf *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	buf.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf.WriteString(s[start:i])
		switch c {
		case '"', '\\':
			buf.WriteByte('\\')
			buf.WriteByte(c)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			buf.WriteString(`\u00`)
			buf.WriteByte(hex[c>>4])
			buf.WriteByte(hex[c&0xf])
		}
		start = i + 1
	}
	buf.WriteString(s[start:])
	buf.WriteByte('"')
}

// withID returns the resource body with its id set to id (replaced or
// added after resourceType); everything else is kept byte for byte.
func withID(body []byte, id string) ([]byte, error) {
	ms, err := members(body)
	if err != nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", "the body is not a JSON object")
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + len(id) + 8)
	buf.WriteByte('{')
	first := true
	put := func(key string, val []byte) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		appendString(&buf, key)
		buf.WriteByte(':')
		buf.Write(val)
	}
	done := false
	for _, m := range ms {
		switch m.key {
		case "id":
			if done {
				continue
			}
			var v bytes.Buffer
			appendString(&v, id)
			put("id", v.Bytes())
			done = true
			continue
		}
		put(m.key, m.val)
		if m.key == "resourceType" && !done {
			var v bytes.Buffer
			appendString(&v, id)
			put("id", v.Bytes())
			done = true
		}
	}
	if !done {
		var v bytes.Buffer
		appendString(&v, id)
		put("id", v.Bytes())
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
