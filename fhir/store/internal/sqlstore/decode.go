package sqlstore

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// decodeValid decodes b, JSON already checked to be valid, to what
// encoding/json decodes it to in an any with UseNumber: map[string]any
// (of repeated names the last), []any, string, json.Number, bool, nil.
// It spares Parse a json.Decoder per member and its reflection; strings
// with escapes or invalid UTF-8 are left to encoding/json.
func decodeValid(b []byte) (any, error) {
	d := validDecoder{b: b}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	if d.space(); d.i != len(d.b) {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

var errBadJSON = errors.New("invalid JSON")

// validDecoder reads a value of b from i on.
type validDecoder struct {
	b []byte
	i int
}

func (d *validDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips white space and returns the byte there, 0 at the end.
func (d *validDecoder) next() byte {
	d.space()
	if d.i >= len(d.b) {
		return 0
	}
	return d.b[d.i]
}

func (d *validDecoder) value() (any, error) {
	switch c := d.next(); c {
	case '{':
		d.i++
		m := make(map[string]any)
		if d.next() == '}' {
			d.i++
			return m, nil
		}
		for {
			if d.next() != '"' {
				return nil, errBadJSON
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			if d.next() != ':' {
				return nil, errBadJSON
			}
			d.i++
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			m[k] = v
			switch d.next() {
			case ',':
				d.i++
			case '}':
				d.i++
				return m, nil
			default:
				return nil, errBadJSON
			}
		}
	case '[':
		d.i++
		a := []any{}
		if d.next() == ']' {
			d.i++
			return a, nil
		}
		for {
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			switch d.next() {
			case ',':
				d.i++
			case ']':
				d.i++
				return a, nil
			default:
				return nil, errBadJSON
			}
		}
	case '"':
		return d.str()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		start := d.i
		for d.i < len(d.b) {
			switch d.b[d.i] {
			case '-', '+', '.', 'e', 'E', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				d.i++
				continue
			}
			break
		}
		if d.i == start {
			return nil, errBadJSON
		}
		return json.Number(d.b[start:d.i]), nil
	}
}

func (d *validDecoder) literal(s string) error {
	if len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return errBadJSON
	}
	d.i += len(s)
	return nil
}

// str reads the string at i.
func (d *validDecoder) str() (string, error) {
	start := d.i
	plain := true
	i := start + 1
	for ; i < len(d.b); i++ {
		c := d.b[i]
		if c == '"' {
			break
		}
		if c == '\\' {
			plain = false
			i++
		} else if c >= utf8.RuneSelf {
			plain = false
		}
	}
	if i >= len(d.b) {
		return "", errBadJSON
	}
	d.i = i + 1
	raw := d.b[start+1 : i]
	if plain || (!hasByte(raw, '\\') && utf8.Valid(raw)) {
		return string(raw), nil
	}
	var s string
	err := json.Unmarshal(d.b[start:i+1], &s)
	return s, err
}

func hasByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// maxDepth is the deepest nesting of arrays and objects validJSON accepts,
// as json.Valid.
const maxDepth = 10000

// validJSON tells whether b is one JSON value, as json.Valid does (strings
// may hold any byte but control characters, as there), in one tight pass:
// json.Valid's state machine calls a function per byte, and a write checks
// its whole body.
func validJSON(b []byte) bool {
	v := validator{b: b}
	v.space()
	if !v.value() {
		return false
	}
	v.space()
	return v.i == len(v.b)
}

type validator struct {
	b     []byte
	i     int
	depth int
}

func (v *validator) space() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

// value checks the value at i, which follows white space.
func (v *validator) value() bool {
	if v.i >= len(v.b) {
		return false
	}
	switch v.b[v.i] {
	case '{':
		if v.depth++; v.depth > maxDepth {
			return false
		}
		v.i++
		v.space()
		if v.i < len(v.b) && v.b[v.i] == '}' {
			v.i++
			v.depth--
			return true
		}
		for {
			if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
				return false
			}
			v.space()
			if v.i >= len(v.b) || v.b[v.i] != ':' {
				return false
			}
			v.i++
			v.space()
			if !v.value() {
				return false
			}
			v.space()
			if v.i >= len(v.b) {
				return false
			}
			switch v.b[v.i] {
			case ',':
				v.i++
				v.space()
			case '}':
				v.i++
				v.depth--
				return true
			default:
				return false
			}
		}
	case '[':
		if v.depth++; v.depth > maxDepth {
			return false
		}
		v.i++
		v.space()
		if v.i < len(v.b) && v.b[v.i] == ']' {
			v.i++
			v.depth--
			return true
		}
		for {
			if !v.value() {
				return false
			}
			v.space()
			if v.i >= len(v.b) {
				return false
			}
			switch v.b[v.i] {
			case ',':
				v.i++
				v.space()
			case ']':
				v.i++
				v.depth--
				return true
			default:
				return false
			}
		}
	case '"':
		return v.str()
	case 't':
		return v.literal("true")
	case 'f':
		return v.literal("false")
	case 'n':
		return v.literal("null")
	default:
		return v.number()
	}
}

func (v *validator) literal(s string) bool {
	if len(v.b)-v.i < len(s) || string(v.b[v.i:v.i+len(s)]) != s {
		return false
	}
	v.i += len(s)
	return true
}

// str checks the string at i (its opening quote).
func (v *validator) str() bool {
	b := v.b
	for i := v.i + 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			v.i = i + 1
			return true
		case c == '\\':
			i++
			if i >= len(b) {
				return false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i <= 4 {
					return false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		case c < 0x20:
			return false
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at i.
func (v *validator) number() bool {
	b, i := v.b, v.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for ; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		for ; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	v.i = i
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
