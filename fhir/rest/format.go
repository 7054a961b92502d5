package rest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	fhirxml "github.com/schakel-nl/schakel/fhir/xml"
)

// codec is a wire format of FHIR resources. Inside the server every resource
// is FHIR JSON; a codec converts at the edge.
type codec interface {
	// contentType is the Content-Type of responses for FHIR version v.
	contentType(v fhir.Version) string
	// encode converts a FHIR JSON document to this format.
	encode(v fhir.Version, doc []byte) ([]byte, error)
	// decode converts a request body in this format to FHIR JSON.
	decode(v fhir.Version, body []byte) ([]byte, error)
}

// jsonCodec is FHIR JSON: both conversions are the identity.
type jsonCodec struct{}

func (jsonCodec) contentType(v fhir.Version) string {
	if v == fhir.R4 {
		return "application/fhir+json; fhirVersion=4.0; charset=utf-8"
	}
	return "application/fhir+json; fhirVersion=3.0; charset=utf-8"
}

func (jsonCodec) encode(_ fhir.Version, doc []byte) ([]byte, error)  { return doc, nil }
func (jsonCodec) decode(_ fhir.Version, body []byte) ([]byte, error) { return body, nil }

// xmlCodec is FHIR XML, converted from and to JSON by fhir/xml.
type xmlCodec struct{}

func (xmlCodec) contentType(v fhir.Version) string {
	if v == fhir.R4 {
		return "application/fhir+xml; fhirVersion=4.0; charset=utf-8"
	}
	return "application/fhir+xml; fhirVersion=3.0; charset=utf-8"
}

func (xmlCodec) encode(v fhir.Version, doc []byte) ([]byte, error) {
	out, err := fhirxml.Encode(v, doc)
	if err != nil {
		// What the server produced did not convert: an internal failure.
		return nil, fmt.Errorf("rest: encode XML: %w", err)
	}
	return out, nil
}

func (xmlCodec) decode(v fhir.Version, body []byte) ([]byte, error) {
	out, err := fhirxml.Decode(v, body)
	if err != nil {
		e := fhir.Errorf(http.StatusBadRequest, "structure", "the body is not valid FHIR XML: %s", err.Error())
		e.Cause = err
		return nil, e
	}
	return out, nil
}

// codecs are the supported formats by mime type (lower case, no parameters).
var codecs = map[string]codec{
	"application/fhir+json": jsonCodec{},
	"application/json+fhir": jsonCodec{}, // the DSTU2 name, still sent by STU3 clients
	"application/json":      jsonCodec{},
	"application/fhir+xml":  xmlCodec{},
	"application/xml+fhir":  xmlCodec{}, // the DSTU2 name
	"application/xml":       xmlCodec{},
	"text/xml":              xmlCodec{},
}

// formatNames are the short _format values.
var formatNames = map[string]string{
	"json": "application/fhir+json",
	"xml":  "application/fhir+xml",
}

// notYet are the FHIR formats we know of but do not serve, with the name to
// show in the OperationOutcome.
var notYet = map[string]string{
	"ttl":         "RDF Turtle",
	"text/turtle": "RDF Turtle",
}

// negotiate picks the response format from _format (which wins, as the spec
// says) or else the Accept header.
func negotiate(accept, format string, v fhir.Version) (codec, error) {
	if format != "" {
		mt, params, _ := strings.Cut(format, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if full, ok := formatNames[mt]; ok {
			mt = full
		}
		c, ok := codecs[mt]
		if ok && versionMatches(params, v) {
			return c, nil
		}
		if ok {
			return nil, wrongVersion(params, v)
		}
		return nil, notAcceptable(mt)
	}
	if accept == "" {
		return jsonCodec{}, nil
	}
	var (
		best      codec
		bestQ     = -1.0
		unserved  string
		otherVer  string // the parameters of a range skipped for its fhirVersion
		remaining = accept
	)
	for remaining != "" {
		var rng string
		rng, remaining, _ = strings.Cut(remaining, ",")
		mt, params, _ := strings.Cut(rng, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		q := quality(params)
		if q <= 0 || mt == "" {
			continue
		}
		c, ok := codecs[mt]
		switch {
		case ok:
			if !versionMatches(params, v) {
				otherVer = params
				continue
			}
		case mt == "*/*" || mt == "application/*":
			c = jsonCodec{}
		default:
			if unserved == "" {
				unserved = mt
			}
			continue
		}
		if q > bestQ {
			best, bestQ = c, q
		}
	}
	if best == nil {
		if otherVer != "" && unserved == "" {
			return nil, wrongVersion(otherVer, v)
		}
		return nil, notAcceptable(unserved)
	}
	return best, nil
}

// quality returns the q parameter of a media range's parameters (1 when
// absent or malformed).
func quality(params string) float64 {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, val, _ := strings.Cut(p, "=")
		if strings.TrimSpace(k) == "q" {
			if q, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				return q
			}
		}
	}
	return 1
}

// versionMatches reports whether a fhirVersion media type parameter, when
// present, names version v.
func versionMatches(params string, v fhir.Version) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, val, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "fhirVersion") {
			got, err := fhir.ParseVersion(strings.Trim(strings.TrimSpace(val), `"`))
			return err == nil && got == v
		}
	}
	return true
}

// wrongVersion is the 406 for a format asked in another FHIR version.
func wrongVersion(params string, v fhir.Version) error {
	raw, _ := fhirVersionParam(params)
	return fhir.Errorf(http.StatusNotAcceptable, "not-supported", "fhirVersion %s is not served on this endpoint; it serves fhirVersion %s (%s)", clip(raw), v.MimeVersion(), strings.ToUpper(string(v)))
}

func notAcceptable(mt string) error {
	if name, ok := notYet[mt]; ok {
		return fhir.Errorf(http.StatusNotAcceptable, "not-supported", "%s is not supported on this endpoint; ask for application/fhir+json or application/fhir+xml", name)
	}
	return fhir.Errorf(http.StatusNotAcceptable, "not-supported", "no acceptable format is served; ask for application/fhir+json or application/fhir+xml (fhirVersion as this endpoint)")
}
