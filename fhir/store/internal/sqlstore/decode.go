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
