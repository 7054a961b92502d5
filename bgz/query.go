package bgz

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/nl"
)

// OperationLastN is the only operation a BgZ search uses.
const OperationLastN = "$lastn"

// Errors returned by ParseQuery, Normalize and Match.
var (
	ErrInvalidQuery = errors.New("invalid search")
	ErrNotAllowed   = errors.New("search is not one of the BgZ queries")
)

// ParseQuery splits a search relative to the FHIR base ("Condition?...",
// "Observation/$lastn?...", an optional leading '/') into its resource type,
// its operation ("" or "$lastn") and its decoded parameters. Anything else —
// a read, an absolute URL, another operation, a fragment, a malformed escape
// or a ';' separator — is refused with ErrInvalidQuery.
func ParseQuery(q string) (resourceType string, operation string, params url.Values, err error) {
	if strings.ContainsRune(q, '#') {
		return "", "", nil, fmt.Errorf("%w: fragment not allowed", ErrInvalidQuery)
	}
	path, rawQuery, _ := strings.Cut(strings.TrimPrefix(q, "/"), "?")
	segments := strings.Split(path, "/")
	if len(segments) > 2 {
		return "", "", nil, fmt.Errorf("%w: path %q is not a type-level search", ErrInvalidQuery, path)
	}
	resourceType = segments[0]
	if !isResourceType(resourceType) {
		return "", "", nil, fmt.Errorf("%w: %q is not a resource type", ErrInvalidQuery, resourceType)
	}
	if len(segments) == 2 {
		op, err := url.PathUnescape(segments[1])
		if err != nil || op != OperationLastN {
			return "", "", nil, fmt.Errorf("%w: operation %q not supported", ErrInvalidQuery, segments[1])
		}
		operation = op
	}
	params, err = url.ParseQuery(rawQuery)
	if err != nil {
		return "", "", nil, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	if _, ok := params[""]; ok {
		return "", "", nil, fmt.Errorf("%w: parameter without a name", ErrInvalidQuery)
	}
	return resourceType, operation, params, nil
}

// Normalize returns the canonical form of a search: type, operation, then
// the parameters sorted by name and value and escaped as Query escapes them.
// Within a search parameter's comma-separated alternatives (FHIR OR), the
// alternatives are sorted and known naming systems given in OID form are
// written as their URI (SPEC §3), so that two spellings of the same search
// compare equal. Result parameters (those starting with '_', like _sort)
// are kept as written, since their order can matter.
func Normalize(q string) (string, error) {
	resourceType, operation, params, err := ParseQuery(q)
	if err != nil {
		return "", err
	}
	return canonical(resourceType, operation, params), nil
}

// Match returns the block whose search for the patient with the given BSN
// is the request, in any spelling Normalize treats as equal, optionally with
// the ProvenanceRevinclude parameter SPEC §5 allows every BgZ search to add.
// It returns ErrNotAllowed when the request is no BgZ search for that BSN.
func Match(request, bsn string) (Block, error) { return MatchIn(blocks, request, bsn) }

// MatchIn is Match against another set of blocks (another version's BgZ
// query set), with the same spellings treated as equal.
func MatchIn(set []Block, request, bsn string) (Block, error) {
	resourceType, operation, params, err := ParseQuery(request)
	if err != nil {
		return Block{}, err
	}
	if rev := params["_revinclude"]; slices.Contains(rev, "Provenance:target") {
		params["_revinclude"] = slices.DeleteFunc(slices.Clone(rev), func(v string) bool { return v == "Provenance:target" })
		if len(params["_revinclude"]) == 0 {
			delete(params, "_revinclude")
		}
	}
	want := canonical(resourceType, operation, params)
	path := resourceType
	if operation != "" {
		path += "/" + operation
	}
	for _, b := range set {
		if !strings.HasPrefix(b.Template, path+"?") {
			continue // cheap check first: only same-type searches can match
		}
		got, err := Normalize(b.Query(bsn))
		if err != nil {
			// A BSN that breaks a search cannot be matched by any request.
			return Block{}, fmt.Errorf("%w: %w", ErrNotAllowed, err)
		}
		if got == want {
			return b, nil
		}
	}
	return Block{}, ErrNotAllowed
}

func canonical(resourceType, operation string, params url.Values) string {
	var sb strings.Builder
	sb.WriteString(resourceType)
	if operation != "" {
		sb.WriteByte('/')
		sb.WriteString(operation)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	sep := byte('?')
	for _, k := range keys {
		values := make([]string, 0, len(params[k]))
		for _, v := range params[k] {
			values = append(values, canonicalValue(k, v))
		}
		slices.Sort(values)
		for _, v := range values {
			sb.WriteByte(sep)
			sep = '&'
			sb.WriteString(escape(k))
			sb.WriteByte('=')
			sb.WriteString(escape(v))
		}
	}
	return sb.String()
}

// canonicalValue sorts the OR-alternatives of a search parameter value and
// writes known OID systems of token values as their URI.
func canonicalValue(key, value string) string {
	if strings.HasPrefix(key, "_") {
		return value
	}
	alternatives := splitUnescaped(value, ',')
	for i, alt := range alternatives {
		if system, code, ok := strings.Cut(alt, "|"); ok {
			alternatives[i] = nl.CanonicalSystem(system) + "|" + code
		}
	}
	slices.Sort(alternatives)
	return strings.Join(slices.Compact(alternatives), ",")
}

// splitUnescaped splits s at each sep not preceded by the FHIR escape '\'.
func splitUnescaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // skip the escaped character
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func isResourceType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
