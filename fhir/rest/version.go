package rest

import (
	"mime"
	"net/http"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
)

// SelectVersion picks the FHIR version of a request on a base that serves
// several (FHIR R4 §3.1.0.1.9 / http.html#version-parameter): the
// fhirVersion parameter of its Content-Type when it sends a body, else of
// the media ranges in _format or Accept, highest quality first; def when
// none names a version. A named version that is not served, or an Accept
// that excludes the body's version, is refused: 415 for the Content-Type,
// 406 for Accept, with an OperationOutcome naming the versions.
func SelectVersion(r *http.Request, served []fhir.Version, def fhir.Version) (fhir.Version, error) {
	names := func() string {
		out := make([]string, len(served))
		for i, v := range served {
			out[i] = v.MimeVersion() + " (" + strings.ToUpper(string(v)) + ")"
		}
		return strings.Join(out, " and ")
	}
	isServed := func(v fhir.Version) bool {
		for _, s := range served {
			if s == v {
				return true
			}
		}
		return false
	}
	var body fhir.Version
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if _, params, err := mime.ParseMediaType(ct); err == nil {
			if raw, ok := params["fhirversion"]; ok {
				v, err := fhir.ParseVersion(raw)
				if err != nil || !isServed(v) {
					return "", fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "fhirVersion %s is not served here; this base serves fhirVersion %s", clip(raw), names())
				}
				body = v
			}
		}
	}
	ranges := r.URL.Query().Get("_format")
	if ranges == "" {
		ranges = r.Header.Get("Accept")
	}
	// The versions the client accepts; any when a range names none.
	accepted := map[fhir.Version]float64{}
	anyVersion, named := false, []string{}
	for rest := ranges; rest != ""; {
		var rng string
		rng, rest, _ = strings.Cut(rest, ",")
		_, params, _ := strings.Cut(rng, ";")
		q := quality(params)
		if q <= 0 || strings.TrimSpace(rng) == "" {
			continue
		}
		raw, ok := fhirVersionParam(params)
		if !ok {
			anyVersion = true
			continue
		}
		v, err := fhir.ParseVersion(raw)
		if err != nil || !isServed(v) {
			named = append(named, raw)
			continue
		}
		accepted[v] = max(accepted[v], q)
	}
	switch {
	case body != "":
		if anyVersion || len(accepted) == 0 && len(named) == 0 || accepted[body] > 0 {
			return body, nil
		}
		return "", fhir.Errorf(http.StatusNotAcceptable, "not-supported", "the body is fhirVersion %s, but Accept asks for another version; one request has one version", body.MimeVersion())
	case len(accepted) > 0:
		best, bestQ := fhir.Version(""), -1.0
		for _, v := range served { // served order breaks ties
			if q, ok := accepted[v]; ok && q > bestQ {
				best, bestQ = v, q
			}
		}
		return best, nil
	case len(named) > 0 && !anyVersion:
		return "", fhir.Errorf(http.StatusNotAcceptable, "not-supported", "fhirVersion %s is not served here; this base serves fhirVersion %s", clip(strings.Join(named, ", ")), names())
	}
	return def, nil
}

// fhirVersionParam is the fhirVersion parameter of a media range's
// parameters.
func fhirVersionParam(params string) (string, bool) {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, val, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "fhirVersion") {
			return strings.Trim(strings.TrimSpace(val), `"`), true
		}
	}
	return "", false
}
