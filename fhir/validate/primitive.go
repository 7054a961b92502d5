package validate

import (
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The value patterns of the FHIR primitive types (from the specification's
// datatype definitions; identical in STU3 and R4 unless noted).
var (
	datePattern     = `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?`
	timePattern     = `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?`
	zonePattern     = `(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))`
	dateRe          = regexp.MustCompile(`^` + datePattern + `$`)
	dateTimeRe      = regexp.MustCompile(`^` + datePattern + `(T` + timePattern + zonePattern + `)?$`)
	instantRe       = regexp.MustCompile(`^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T` + timePattern + zonePattern + `$`)
	timeRe          = regexp.MustCompile(`^` + timePattern + `$`)
	codeRe          = regexp.MustCompile(`^[^\s]+( [^\s]+)*$`)
	oidRe           = regexp.MustCompile(`^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$`)
	uuidRe          = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	integerRe       = regexp.MustCompile(`^-?([0]|([1-9][0-9]*))$`)
	decimalRe       = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	maxStringLength = 1 << 20 // "strings SHALL NOT exceed 1 MB"
)

// IsID reports whether s is a FHIR id: [A-Za-z0-9\-\.]{1,64}.
func IsID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Primitive checks the JSON value of a primitive of FHIR type typ (as
// decoded with json.Decoder.UseNumber) and returns what is wrong, or "".
func Primitive(typ string, val any) string {
	switch JSONKind(typ) {
	case "boolean":
		if _, ok := val.(bool); !ok {
			return "must be a JSON boolean (true or false)"
		}
		return ""
	case "number":
		n, ok := val.(json.Number)
		if !ok {
			return "must be a JSON number"
		}
		return number(typ, string(n))
	}
	s, ok := val.(string)
	if !ok {
		return "must be a JSON string"
	}
	return PrimitiveString(typ, s)
}

func number(typ, s string) string {
	if typ == "decimal" {
		if !decimalRe.MatchString(s) {
			return "is not a decimal"
		}
		return ""
	}
	if !integerRe.MatchString(s) {
		return "is not an integer"
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return "is out of the 32-bit integer range"
	}
	switch {
	case typ == "positiveInt" && n < 1:
		return "must be 1 or more"
	case typ == "unsignedInt" && n < 0:
		return "must be 0 or more"
	}
	return ""
}

// PrimitiveString checks the lexical form s of a primitive of type typ: the
// JSON string of string-like types, the XML value attribute of all types.
func PrimitiveString(typ, s string) string {
	switch JSONKind(typ) {
	case "boolean":
		if s != "true" && s != "false" {
			return "must be true or false"
		}
		return ""
	case "number":
		return number(typ, s)
	}
	if s == "" {
		return "must not be empty (leave the element out instead)"
	}
	if len(s) > maxStringLength {
		return "exceeds 1 MB"
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	// Every value must be writable as XML too (XML 1.0 Char), whatever its
	// type: codes and URIs included, or a resource stored as JSON could not
	// be served as XML.
	if i := strings.IndexFunc(s, func(r rune) bool { return !xmlChar(r) }); i >= 0 {
		if s[i] < 0x20 {
			return "contains control characters"
		}
		return "contains a character XML cannot carry (U+FFFE or U+FFFF)"
	}
	switch typ {
	case "date":
		if !dateRe.MatchString(s) || !calendar(s) {
			return "is not a date (YYYY, YYYY-MM or YYYY-MM-DD)"
		}
	case "dateTime":
		if !dateTimeRe.MatchString(s) || !calendar(s) {
			return "is not a dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz)"
		}
	case "instant":
		if !instantRe.MatchString(s) || !calendar(s) {
			return "is not an instant (YYYY-MM-DDThh:mm:ss.sss+zz:zz)"
		}
	case "time":
		if !timeRe.MatchString(s) {
			return "is not a time (hh:mm:ss)"
		}
	case "code":
		if !codeRe.MatchString(s) {
			return "is not a code (no leading, trailing or double whitespace)"
		}
	case "id":
		if !IsID(s) {
			return "is not an id (1-64 of A-Z a-z 0-9 - .)"
		}
	case "uri", "url", "canonical":
		if strings.ContainsAny(s, " \t\r\n") {
			return "is not a URI (it contains whitespace)"
		}
	case "oid":
		if !oidRe.MatchString(s) {
			return "is not an OID (urn:oid:1.2.3)"
		}
	case "uuid":
		if !uuidRe.MatchString(s) {
			return "is not a UUID (urn:uuid:… in lower case)"
		}
	case "base64Binary":
		if _, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), "")); err != nil {
			return "is not base64"
		}
	case "xhtml":
		if !strings.HasPrefix(s, "<div") {
			return "is not an XHTML <div>"
		}
		return xhtmlProblem(s)
	}
	return ""
}

// xmlChar reports whether XML 1.0 can carry r (its Char production).
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// calendar reports whether the date part of a date, dateTime or instant is
// a day that exists (the patterns allow 31 February).
func calendar(s string) bool {
	if len(s) < 10 {
		return true
	}
	_, err := time.Parse("2006-01-02", s[:10])
	return err == nil
}

const (
	xhtmlNamespace = "http://www.w3.org/1999/xhtml"
	xmlNamespace   = "http://www.w3.org/XML/1998/namespace"
	maxXHTMLDepth  = 100
)

// xhtmlProblem checks a narrative the way the XML encoder writes it: one
// well-formed <div> in the XHTML namespace, only XHTML elements, attributes
// unqualified or xml:*, no declarations. What passes here is servable as XML.
func xhtmlProblem(s string) string {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "is not well-formed XHTML"
		}
		switch t := tok.(type) {
		case xml.Directive, xml.ProcInst:
			return "may not hold declarations or processing instructions"
		case xml.StartElement:
			if depth == 0 {
				if roots++; roots > 1 || t.Name.Local != "div" {
					return "is not one XHTML <div>"
				}
			}
			if depth++; depth > maxXHTMLDepth {
				return "nests too deeply"
			}
			if t.Name.Space != xhtmlNamespace {
				return "may only hold XHTML elements"
			}
			for _, a := range t.Attr {
				if a.Name.Space != "" && a.Name.Space != "xmlns" && a.Name.Space != xmlNamespace {
					return "has an attribute in another namespace"
				}
				if !allXMLChars(a.Value) {
					return "refers to a character XML cannot carry"
				}
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.Trim(string(t), " \t\r\n") != "" {
				return "is not one XHTML <div>"
			}
			if !allXMLChars(string(t)) {
				return "refers to a character XML cannot carry"
			}
		}
	}
	if roots != 1 {
		return "is not one XHTML <div>"
	}
	return ""
}

func allXMLChars(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !xmlChar(r) })
}
