// Package search is the storage-independent half of FHIR search: it extracts
// the index values of every search parameter from a resource (on write), and
// parses a search request into a Query a backend turns into its own query
// language. The backends (fhir/store/sqlite, fhir/store/postgres) share it.
package search

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Open ends of date ranges, in Unix milliseconds.
const (
	MinTime int64 = math.MinInt64
	MaxTime int64 = math.MaxInt64
)

// Normalize prepares a string for default (case- and accent-insensitive)
// string search: accents stripped, lower case, whitespace collapsed.
func Normalize(s string) string {
	if isASCII(s) {
		// Nothing to decompose or strip: the transformation chain (which
		// allocates its buffers on every call) would return s unchanged.
		return strings.Join(strings.Fields(strings.ToLower(s)), " ")
	}
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.Join(strings.Fields(strings.ToLower(out)), " ")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// ParseDateRange parses a FHIR date, dateTime or instant and returns the
// range of instants it covers, in Unix milliseconds (inclusive): "2020" is
// the whole year. Values without a time zone are read as UTC.
func ParseDateRange(s string) (low, high int64, err error) {
	var layout string
	var step func(time.Time) time.Time
	switch {
	case len(s) == 4:
		layout, step = "2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }
	case len(s) == 7:
		layout, step = "2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	case len(s) == 10:
		layout, step = "2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	case len(s) > 10 && s[10] == 'T':
		return parseDateTimeRange(s)
	default:
		return 0, 0, fmt.Errorf("invalid date %q", s)
	}
	t, err := time.ParseInLocation(layout, s, time.UTC)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid date %q", s)
	}
	return t.UnixMilli(), step(t).UnixMilli() - 1, nil
}

func parseDateTimeRange(s string) (low, high int64, err error) {
	rest := s[11:]
	// Split the time zone off to find the precision of the time.
	zone := ""
	if i := strings.IndexAny(rest, "Z+-"); i >= 0 {
		rest, zone = rest[:i], rest[i:]
	}
	var prec time.Duration
	layout := "2006-01-02T"
	switch {
	case len(rest) == 5:
		layout += "15:04"
		prec = time.Minute
	case len(rest) == 8:
		layout += "15:04:05"
		prec = time.Second
	case len(rest) > 9 && rest[8] == '.':
		layout += "15:04:05." + strings.Repeat("9", len(rest)-9)
		prec = time.Millisecond
	default:
		return 0, 0, fmt.Errorf("invalid dateTime %q", s)
	}
	loc := time.UTC
	if zone != "" {
		layout += "Z07:00"
	}
	t, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid dateTime %q", s)
	}
	t = t.Truncate(time.Millisecond)
	return t.UnixMilli(), t.Add(prec).UnixMilli() - 1, nil
}

// parseNumber parses a decimal and returns the range its precision implies:
// "100" is [99.5, 100.5), "1.50" is [1.495, 1.505).
func parseNumber(s string) (v, lo, hi float64, err error) {
	v, err = strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, 0, 0, fmt.Errorf("invalid number %q", s)
	}
	if strings.ContainsAny(s, "eE") {
		return v, v, v, nil
	}
	decimals := 0
	if i := strings.IndexByte(s, '.'); i >= 0 {
		decimals = len(s) - i - 1
	}
	half := 0.5 * math.Pow10(-decimals)
	return v, v - half, v + half, nil
}
