package search

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schakel-nl/schakel/fhir/spec"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/nl"
)

// Paging limits.
const (
	DefaultCount = 50
	MaxCount     = 1000
)

// Special parameters kept as columns rather than index values.
const (
	ParamID          = "_id"
	ParamLastUpdated = "_lastUpdated"
)

// Query is a parsed search on one resource type.
type Query struct {
	Type string
	// Clauses must all match (repeated parameters AND).
	Clauses []Clause
	Count   int
	Offset  int
	Sort    []Sort
	// Includes are _include (Source is Type), RevIncludes are _revinclude.
	Includes    []Include
	RevIncludes []Include
	// SummaryCount is _summary=count: the total only.
	SummaryCount bool
	// Ignored lists parameters not understood (lenient mode).
	Ignored []string
}

// Clause is one parameter of a search; any of its Values may match (comma
// separated values OR).
type Clause struct {
	// Name is the parameter as written (with modifier and chain), for messages.
	Name string
	// Code is the parameter code: a search parameter of the type, or ParamID
	// or ParamLastUpdated (then Param is nil).
	Code  string
	Param *spec.SearchParam
	// Type is the parameter type (Token for _id, Date for _lastUpdated).
	Type spec.ParamType
	// Modifier is "", "not", "text", "exact", "contains", "below" or "missing".
	Modifier string
	// Missing is the value of :missing.
	Missing bool
	// Chain, when not empty, makes this a chained reference search: the
	// reference must point to a resource of one of the chains' types
	// matching that chain's clause. Values is empty then.
	Chain  []Chained
	Values []Value
}

// Chained is the chained part of a reference search on one target type.
type Chained struct {
	Type   string
	Clause Clause
}

// Prefix is a comparison prefix of a date, number or quantity value.
type Prefix string

// The comparison prefixes.
const (
	Eq Prefix = "eq"
	Ne Prefix = "ne"
	Gt Prefix = "gt"
	Lt Prefix = "lt"
	Ge Prefix = "ge"
	Le Prefix = "le"
	Sa Prefix = "sa"
	Eb Prefix = "eb"
	Ap Prefix = "ap"
)

// Value is one search value; which fields are set depends on the type.
type Value struct {
	Prefix Prefix
	// Token: System is canonical; HasSystem is set for "system|code" and
	// "|code" (then System is empty: no system). An empty Code matches any.
	// Quantity: System and Code (code or unit) of the unit.
	System    string
	HasSystem bool
	Code      string
	// Reference: RefType may be empty (any target type).
	RefType, RefID string
	// Date: the range of the value in Unix ms, inclusive.
	Low, High int64
	// String, URI and :text: Str (normalised for string default and
	// :contains and :text, raw for :exact and uri).
	Str string
	// Number, quantity: Num and the range its precision implies.
	Num, NumLow, NumHigh float64
}

// Sort is one _sort key; Code is a search parameter or ParamID/ParamLastUpdated.
type Sort struct {
	Code  string
	Type  spec.ParamType
	Param *spec.SearchParam
	Desc  bool
}

// Include is an _include (Source is the searched type) or _revinclude
// (Source is the including type, Param on Source points to the matches).
type Include struct {
	Source string
	Param  *spec.SearchParam
	// Target restricts the referenced type (third part of the value).
	Target string
}

// ParamError is an unknown or malformed search parameter; it wraps
// store.ErrInvalidSearch.
type ParamError struct {
	// Param is the parameter as written, e.g. "patient.identifier".
	Param  string
	Reason string
	// Unknown is set when the parameter is not defined for the type, or is
	// defined but not evaluated here (composite): the only errors lenient
	// mode skips. A malformed value, modifier or chain of a known
	// parameter is never skipped: ignoring it would widen the result.
	Unknown bool
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("%s: parameter %q: %s", store.ErrInvalidSearch, e.Param, e.Reason)
}

// Unwrap makes errors.Is(err, store.ErrInvalidSearch) hold.
func (e *ParamError) Unwrap() error { return store.ErrInvalidSearch }

// paramError reports a malformed parameter.
func paramError(name, format string, args ...any) error {
	return &ParamError{Param: name, Reason: fmt.Sprintf(format, args...)}
}

// resultValues are the result parameters another layer handles (or whose
// only value honoured is the default), with the values accepted; nil
// accepts any value (the HTTP layer checks _format and _elements).
var resultValues = map[string][]string{
	"_format":   nil,
	"_elements": nil,
	"_pretty":   {"true", "false"},
	// The total is always exact; what a client asks for is never less.
	"_total": {"none", "estimate", "accurate"},
	// Searching contained resources is not supported: only the default.
	"_contained":     {"false"},
	"_containedType": {"container"},
}

// singleValued are the result parameters that may be given once.
var singleValued = map[string]bool{
	"_count": true, "_offset": true, "_summary": true, "_total": true,
	"_contained": true, "_containedType": true, "_pretty": true, "_format": true,
}

// Parse parses the search parameters of a search on resource type typ.
// Malformed values, modifiers and chains of known parameters are always an
// error wrapping store.ErrInvalidSearch (a *ParamError naming the
// parameter). Unknown parameters are an error too with strict; otherwise
// they are skipped and listed in Query.Ignored.
func Parse(d *spec.Definitions, typ string, params url.Values, strict bool) (*Query, error) {
	if !d.IsResourceType(typ) {
		return nil, fmt.Errorf("%w: unknown resource type %q", store.ErrInvalidSearch, typ)
	}
	q := &Query{Type: typ, Count: DefaultCount}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if singleValued[k] && len(params[k]) > 1 {
			return nil, paramError(k, "may be given once")
		}
		for _, v := range params[k] {
			if err := q.parseParam(d, k, v); err != nil {
				var pe *ParamError
				if strict || !errors.As(err, &pe) || !pe.Unknown {
					return nil, err
				}
				if !slices.Contains(q.Ignored, k) {
					q.Ignored = append(q.Ignored, k)
				}
			}
		}
	}
	return q, nil
}

func (q *Query) parseParam(d *spec.Definitions, key, value string) error {
	base, modifier, hasModifier := strings.Cut(key, ":")
	if _, result := resultValues[base]; hasModifier && (result || singleValued[base] || base == "_sort" || base == "_include" || base == "_revinclude") {
		// Includes are one level deep: :iterate (:recurse in STU3) is refused
		// rather than answered with less than asked.
		return paramError(key, "modifier %q is not supported on %s", modifier, base)
	}
	switch base {
	case "_count":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return paramError(key, "not a non-negative integer")
		}
		q.Count = min(n, MaxCount)
		return nil
	case "_offset":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return paramError(key, "not a non-negative integer")
		}
		q.Offset = n
		return nil
	case "_summary":
		// Other _summary values shape the response, done by the HTTP layer.
		switch value {
		case "true", "text", "data", "count", "false":
		default:
			return paramError(key, "must be one of true, text, data, count, false")
		}
		q.SummaryCount = value == "count"
		return nil
	case "_sort":
		return q.parseSort(d, key, value)
	case "_include":
		inc, err := parseInclude(d, key, value)
		if err != nil {
			return err
		}
		if inc.Source != q.Type {
			return paramError(key, "%s is not the searched type %s", inc.Source, q.Type)
		}
		q.Includes = append(q.Includes, inc)
		return nil
	case "_revinclude":
		inc, err := parseInclude(d, key, value)
		if err != nil {
			return err
		}
		q.RevIncludes = append(q.RevIncludes, inc)
		return nil
	}
	if allowed, ok := resultValues[key]; ok {
		if allowed != nil && !slices.Contains(allowed, value) {
			if key == "_contained" || key == "_containedType" {
				return paramError(key, "only %s (the default) is supported", allowed[0])
			}
			return paramError(key, "must be one of %s", strings.Join(allowed, ", "))
		}
		return nil
	}
	c, err := parseClause(d, q.Type, key, value, 0)
	if err != nil {
		return err
	}
	q.Clauses = append(q.Clauses, c)
	return nil
}

func (q *Query) parseSort(d *spec.Definitions, key, value string) error {
	for _, f := range strings.Split(value, ",") {
		s := Sort{}
		if strings.HasPrefix(f, "-") {
			s.Desc, f = true, f[1:]
		}
		s.Code = f
		switch f {
		case ParamID:
			s.Type = spec.Token
		case ParamLastUpdated:
			s.Type = spec.Date
		default:
			p := d.SearchParam(q.Type, f)
			if p == nil {
				return paramError(key, "unknown sort parameter %q", f)
			}
			if p.Type == spec.Reference || p.Type == spec.Composite {
				return paramError(key, "cannot sort on %s parameter %q", p.Type, f)
			}
			s.Param, s.Type = p, p.Type
		}
		q.Sort = append(q.Sort, s)
	}
	return nil
}

func parseInclude(d *spec.Definitions, key, value string) (Include, error) {
	parts := strings.Split(value, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Include{}, paramError(key, "want Type:parameter[:targetType], got %q", value)
	}
	p := d.SearchParam(parts[0], parts[1])
	if p == nil || p.Type != spec.Reference {
		return Include{}, paramError(key, "%s:%s is not a reference parameter", parts[0], parts[1])
	}
	inc := Include{Source: parts[0], Param: p}
	if len(parts) == 3 {
		if !d.IsResourceType(parts[2]) {
			return Include{}, paramError(key, "unknown resource type %q", parts[2])
		}
		inc.Target = parts[2]
	}
	return inc, nil
}

// maxChain bounds chain depth (a.b.c.d...).
const maxChain = 3

func parseClause(d *spec.Definitions, typ, key, value string, depth int) (Clause, error) {
	name, chain, chained := strings.Cut(key, ".")
	code, modifier, _ := strings.Cut(name, ":")
	c := Clause{Name: key, Code: code, Modifier: modifier}
	switch code {
	case ParamID:
		c.Type = spec.Token
	case ParamLastUpdated:
		c.Type = spec.Date
	default:
		c.Param = d.SearchParam(typ, code)
		if c.Param == nil {
			return c, &ParamError{Param: key, Reason: "unknown search parameter for " + typ, Unknown: true}
		}
		c.Type = c.Param.Type
	}
	if c.Type == spec.Composite {
		// Known, but not evaluated here: skipped in lenient mode like an
		// unknown parameter, and said so.
		return c, &ParamError{Param: key, Reason: "composite parameters are not supported", Unknown: true}
	}
	if modifier == "missing" {
		if c.Param == nil {
			return c, paramError(key, ":missing does not apply to %s: every resource has one", code)
		}
		if chained {
			return c, paramError(key, ":missing cannot be chained")
		}
		switch value {
		case "true", "false":
			c.Missing = value == "true"
			return c, nil
		}
		return c, paramError(key, ":missing takes true or false")
	}
	if chained {
		if c.Type != spec.Reference {
			return c, paramError(key, "only reference parameters can be chained")
		}
		if depth >= maxChain {
			return c, paramError(key, "chain too long")
		}
		targets := c.Param.Targets
		if modifier != "" {
			if !d.IsResourceType(modifier) {
				return c, paramError(key, "unknown resource type %q", modifier)
			}
			targets = []string{modifier}
			c.Modifier = ""
		}
		// Targets without the chained parameter are skipped; a malformed
		// value is an error.
		var valueErr *ParamError
		for _, t := range targets {
			sub, err := parseClause(d, t, chain, value, depth+1)
			if err != nil {
				var pe *ParamError
				if !errors.As(err, &pe) {
					return c, err
				}
				if !pe.Unknown {
					valueErr = pe
				}
				continue
			}
			c.Chain = append(c.Chain, Chained{Type: t, Clause: sub})
		}
		if valueErr != nil {
			return c, paramError(key, "%s", valueErr.Reason)
		}
		if len(c.Chain) == 0 {
			return c, paramError(key, "%q is not a search parameter of %s", chain, strings.Join(targets, " or "))
		}
		return c, nil
	}
	if err := checkModifier(d, c); err != nil {
		return c, err
	}
	for _, v := range splitValues(value) {
		val, err := parseValue(c, v)
		if err != nil {
			return c, paramError(key, "%v", err)
		}
		c.Values = append(c.Values, val)
	}
	if len(c.Values) == 0 {
		return c, paramError(key, "empty value")
	}
	return c, nil
}

func checkModifier(d *spec.Definitions, c Clause) error {
	ok := c.Modifier == ""
	switch c.Type {
	case spec.Token:
		ok = ok || c.Modifier == "not" || (c.Modifier == "text" && c.Param != nil)
	case spec.String:
		ok = ok || c.Modifier == "exact" || c.Modifier == "contains"
	case spec.URI:
		ok = ok || c.Modifier == "below"
	case spec.Reference:
		// A type modifier restricts the target type.
		ok = ok || d.IsResourceType(c.Modifier)
	}
	if !ok {
		return paramError(c.Name, "modifier %q not supported on a %s parameter", c.Modifier, c.Type)
	}
	return nil
}

// splitValues splits at commas not escaped with a backslash and unescapes
// "\,", "\|", "\$" and "\\" in the parts.
func splitValues(s string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && strings.IndexByte(`,$|\`, s[i+1]) >= 0:
			// Keep "\|" escaped for the token splitter.
			if s[i+1] == '|' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[i+1])
			i++
		case c == ',':
			if b.Len() > 0 {
				out = append(out, b.String())
			}
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// cutPipe cuts at the first "|" not escaped with a backslash.
func cutPipe(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == '|' {
			return unescapePipe(s[:i]), s[i+1:], true
		}
	}
	return unescapePipe(s), "", false
}

func unescapePipe(s string) string { return strings.ReplaceAll(s, `\|`, "|") }

func parsePrefix(s string) (Prefix, string) {
	if len(s) > 2 {
		switch p := Prefix(s[:2]); p {
		case Eq, Ne, Gt, Lt, Ge, Le, Sa, Eb, Ap:
			return p, s[2:]
		}
	}
	return Eq, s
}

func parseValue(c Clause, s string) (Value, error) {
	var v Value
	switch c.Type {
	case spec.Token:
		if c.Modifier == "text" {
			v.Str = Normalize(unescapePipe(s))
			return v, nil
		}
		system, code, found := cutPipe(s)
		if found {
			v.HasSystem, v.System, v.Code = true, nl.CanonicalSystem(system), unescapePipe(code)
		} else {
			v.Code = system
		}
		if v.Code == "" && v.System == "" {
			return v, fmt.Errorf("empty token")
		}
		if c.Code == ParamID && (v.HasSystem || !validID(v.Code)) {
			return v, fmt.Errorf("%q is not a resource id", s)
		}
	case spec.Reference:
		if c.Param != nil && isTypeModifier(c.Modifier) {
			v.RefType = c.Modifier
		}
		if t, id, ok := ParseReference(s); ok {
			if v.RefType != "" && v.RefType != t {
				return v, fmt.Errorf("reference %q is not a %s", s, v.RefType)
			}
			v.RefType, v.RefID = t, id
		} else if s != "" && !strings.ContainsAny(s, "/#:") {
			v.RefID = s
		} else {
			return v, fmt.Errorf("invalid reference %q", s)
		}
	case spec.Date:
		v.Prefix, s = parsePrefix(s)
		lo, hi, err := ParseDateRange(s)
		if err != nil {
			return v, err
		}
		v.Low, v.High = lo, hi
		if v.Prefix == Ap {
			// Approximately: 10% of the distance to now, at least a day.
			mid := time.UnixMilli(lo)
			slack := time.Since(mid).Abs() / 10
			slack = max(slack, 24*time.Hour)
			v.Low, v.High = lo-slack.Milliseconds(), hi+slack.Milliseconds()
		}
	case spec.String:
		if c.Modifier == "exact" {
			v.Str = s
		} else {
			v.Str = Normalize(s)
		}
		if v.Str == "" {
			return v, fmt.Errorf("empty string")
		}
	case spec.URI:
		v.Str = s
	case spec.Number, spec.Quantity:
		v.Prefix, s = parsePrefix(s)
		num, unit, _ := cutPipe(s)
		n, lo, hi, err := parseNumber(num)
		if err != nil {
			return v, err
		}
		v.Num, v.NumLow, v.NumHigh = n, lo, hi
		if v.Prefix == Ap {
			slack := 0.1 * abs(n)
			v.NumLow, v.NumHigh = n-slack, n+slack
		}
		if c.Type == spec.Quantity && unit != "" {
			system, code, found := cutPipe(unit)
			if found {
				v.System, v.Code = system, code
			} else {
				v.Code = system
			}
		} else if unit != "" {
			return v, fmt.Errorf("a number has no unit")
		}
	default:
		return v, fmt.Errorf("%s parameters are not supported", c.Type)
	}
	return v, nil
}

// isTypeModifier reports whether a reference modifier names a type (starts upper case).
func isTypeModifier(m string) bool { return m != "" && m[0] >= 'A' && m[0] <= 'Z' }

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// validID reports whether s is a FHIR id: [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
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
