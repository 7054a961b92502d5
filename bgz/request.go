package bgz

import (
	"net/url"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/nl"
)

// PagingParams are the parameters a data holder's own next links add to a
// search; a request with them is still the search it pages through.
var PagingParams = []string{"_count", "_offset", "_format"}

// ShapingParams are the result parameters that only narrow how each match
// is shown (_summary, _elements) or laid out (_pretty); a request with
// them is still the search it shapes, and returns no more than it.
var ShapingParams = []string{"_summary", "_elements", "_pretty"}

// SearchOf rebuilds a received search as a relative URL without its paging
// and shaping parameters, for Normalize and Match.
func SearchOf(resourceType, operation string, params url.Values) string {
	p := url.Values{}
	for k, v := range params {
		if !slices.Contains(PagingParams, k) && !slices.Contains(ShapingParams, k) {
			p[k] = v
		}
	}
	path := resourceType
	if operation != "" {
		path += "/" + operation
	}
	return path + "?" + p.Encode()
}

// patientParams are the parameters a BgZ search names its patient in.
var patientParams = []string{"patient.identifier", "identifier", "beneficiary.identifier"}

// PatientBSN returns the one patient a search names by BSN (in either the
// URI or the OID form of the BSN system); false when it names none, more
// than one, or an invalid BSN.
func PatientBSN(params url.Values) (string, bool) {
	bsn := ""
	for _, p := range patientParams {
		for _, v := range params[p] {
			sys, val, ok := strings.Cut(v, "|")
			if !ok || nl.CanonicalSystem(sys) != nl.SystemBSN || nl.ValidateBSN(val) != nil {
				return "", false
			}
			if bsn != "" && bsn != val {
				return "", false
			}
			bsn = val
		}
	}
	return bsn, bsn != ""
}
