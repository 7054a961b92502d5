package xml

import (
	"bytes"
	stdxml "encoding/xml"
	"fmt"
	"unicode/utf8"
)

var sprintf = fmt.Sprintf

// writeXHTML writes the XHTML element start and everything up to its end
// tag (read through next) to w, with the XHTML namespace declared on start.
// Elements must be XHTML; attributes unqualified or xml:*; comments are
// dropped. The same canonical form is produced from XML and from the
// JSON string, so narratives survive round trips unchanged.
func writeXHTML(w *bytes.Buffer, start stdxml.StartElement, next func() (stdxml.Token, error), loc string) error {
	open := false // a start tag waits for its ">" or "/>"
	closeOpen := func() {
		if open {
			w.WriteByte('>')
			open = false
		}
	}
	writeStart := func(t stdxml.StartElement, root bool) error {
		if t.Name.Space != XHTMLNamespace {
			return errorf(loc, "the narrative may only hold XHTML elements, not <%s>", clip(t.Name.Local))
		}
		w.WriteByte('<')
		w.WriteString(t.Name.Local)
		if root {
			w.WriteString(` xmlns="` + XHTMLNamespace + `"`)
		}
		for _, a := range t.Attr {
			switch {
			case ignorableNS(a):
				continue
			case a.Name.Space == "":
				w.WriteByte(' ')
			case a.Name.Space == xmlNamespace:
				w.WriteString(" xml:")
			default:
				return errorf(loc, "the narrative has an attribute %q in another namespace", clip(a.Name.Local))
			}
			w.WriteString(a.Name.Local)
			w.WriteString(`="`)
			if err := escape(w, a.Value, true); err != nil {
				return errorf(loc, "%s", err.Error())
			}
			w.WriteByte('"')
		}
		open = true
		return nil
	}
	if err := writeStart(start, true); err != nil {
		return err
	}
	for level := 1; level > 0; {
		tok, err := next()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case stdxml.StartElement:
			closeOpen()
			if err := writeStart(t, false); err != nil {
				return err
			}
			level++
		case stdxml.EndElement:
			if open {
				w.WriteString("/>")
				open = false
			} else {
				w.WriteString("</")
				w.WriteString(t.Name.Local)
				w.WriteByte('>')
			}
			level--
		case stdxml.CharData:
			closeOpen()
			if err := escape(w, string(t), false); err != nil {
				return errorf(loc, "%s", err.Error())
			}
		}
	}
	return nil
}

// ignorableNS is a namespace declaration attribute.
func ignorableNS(a stdxml.Attr) bool {
	return a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns")
}

// escape writes s as XML text (attr false) or as an attribute value in
// double quotes (attr true). White space other than the space is written as
// character references in attributes, where XML would normalise it away.
// Characters XML cannot carry are an error, not silently replaced.
func escape(w *bytes.Buffer, s string, attr bool) error {
	last := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == '&':
			esc = "&amp;"
		case r == '<':
			esc = "&lt;"
		case r == '>':
			esc = "&gt;"
		case r == '"' && attr:
			esc = "&quot;"
		case r == '\n' && attr:
			esc = "&#xA;"
		case r == '\t' && attr:
			esc = "&#x9;"
		case r == '\r':
			esc = "&#xD;"
		case !xmlChar(r) || (r == utf8.RuneError && size == 1):
			return fmt.Errorf("the text holds a character XML cannot carry (U+%04X)", r)
		default:
			i += size
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(esc)
		i += size
		last = i
	}
	w.WriteString(s[last:])
	return nil
}

// xmlChar reports whether r is a Char of XML 1.0.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// quoted returns s as a JSON string. Unlike encoding/json it leaves <, >
// and & alone: narratives stay readable.
func quoted(s string) []byte {
	var b bytes.Buffer
	b.Grow(len(s) + 2)
	quote(&b, s)
	return b.Bytes()
}

func quote(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
