package notifiedpull

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/schakel-nl/schakel/fhir"
)

// searchEntry is one entry of a searchset Bundle as a pull keeps it: its
// fullUrl, its resource byte for byte as answered, and its search mode.
type searchEntry struct {
	FullURL  string
	Resource json.RawMessage
	Mode     string
}

// searchPage is what a pull reads of one searchset Bundle.
type searchPage struct {
	ResourceType string
	Entries      []searchEntry
	Next         string // the last link with relation next
}

var errNotSearchset = errors.New("answer is not a searchset Bundle")

// parseSearchPage reads a search answer: the body is checked to be valid
// JSON once, then walked for the few members a pull uses, without decoding
// the resources (each stays a slice of body). Members are matched as
// encoding/json matches a struct's fields (the last of equal names wins,
// case-insensitively).
func parseSearchPage(body []byte) (searchPage, error) {
	var p searchPage
	if !fhir.ValidJSON(body) {
		return p, errNotSearchset
	}
	if isNull(bytes.TrimSpace(body)) {
		return p, nil // no Bundle, as encoding/json reads it
	}
	ok, err := eachMember(body, func(name, v []byte) error {
		var err error
		switch {
		case bytes.EqualFold(name, []byte("resourceType")):
			p.ResourceType, err = jsonString(v)
		case bytes.EqualFold(name, []byte("link")):
			p.Next, err = nextLink(v)
		case bytes.EqualFold(name, []byte("entry")):
			p.Entries, err = searchEntries(v)
		}
		return err
	})
	if !ok || err != nil {
		return searchPage{}, errNotSearchset
	}
	return p, nil
}

// nextLink is the URL of the last link with relation next.
func nextLink(v []byte) (string, error) {
	next := ""
	return next, elements(v, func(l []byte) error {
		var rel, u string
		err := members(l, func(name, v []byte) error {
			var err error
			switch {
			case bytes.EqualFold(name, []byte("relation")):
				rel, err = jsonString(v)
			case bytes.EqualFold(name, []byte("url")):
				u, err = jsonString(v)
			}
			return err
		})
		if rel == "next" {
			next = u
		}
		return err
	})
}

func searchEntries(v []byte) ([]searchEntry, error) {
	out := make([]searchEntry, 0, bytes.Count(v, []byte(`"fullUrl"`)))
	err := elements(v, func(r []byte) error {
		var e searchEntry
		err := members(r, func(name, v []byte) error {
			var err error
			switch {
			case bytes.EqualFold(name, []byte("fullUrl")):
				e.FullURL, err = jsonString(v)
			case bytes.EqualFold(name, []byte("resource")):
				e.Resource = v
			case bytes.EqualFold(name, []byte("search")):
				e.Mode = ""
				err = members(v, func(name, v []byte) error {
					if bytes.EqualFold(name, []byte("mode")) {
						var err error
						e.Mode, err = jsonString(v)
						return err
					}
					return nil
				})
			}
			return err
		})
		out = append(out, e)
		return err
	})
	return out, err
}

var errShape = errors.New("unexpected JSON shape")

// members walks an object (null is none).
func members(v []byte, fn func(name, value []byte) error) error {
	if isNull(v) {
		return nil
	}
	ok, err := eachMember(v, fn)
	if !ok {
		return errShape
	}
	return err
}

// elements walks an array (null is none).
func elements(v []byte, fn func(value []byte) error) error {
	if isNull(v) {
		return nil
	}
	ok, err := eachElement(v, fn)
	if !ok {
		return errShape
	}
	return err
}

func isNull(v []byte) bool { return string(v) == "null" }

// jsonString decodes a JSON string (null is ""), without the decoder for
// the common string that holds no escapes.
func jsonString(v []byte) (string, error) {
	if isNull(v) {
		return "", nil
	}
	if len(v) < 2 || v[0] != '"' {
		return "", errShape
	}
	if s := v[1 : len(v)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return string(s), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}
