package rest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/rest"
)

func TestSelectVersion(t *testing.T) {
	both := []fhir.Version{fhir.STU3, fhir.R4}
	for _, tc := range []struct {
		name, url, accept, contentType string
		want                           fhir.Version
		status                         int
		says                           string
	}{
		{name: "nothing named: the default", want: fhir.STU3},
		{name: "plain JSON", accept: "application/fhir+json", want: fhir.STU3},
		{name: "Accept 4.0", accept: "application/fhir+json; fhirVersion=4.0", want: fhir.R4},
		{name: "Accept 4.0.1 in XML", accept: "application/fhir+xml;fhirVersion=4.0.1", want: fhir.R4},
		{name: "Accept 3.0", accept: "application/fhir+json; fhirVersion=3.0", want: fhir.STU3},
		{name: "Accept both, R4 preferred", accept: "application/fhir+json; fhirVersion=3.0; q=0.5, application/fhir+json; fhirVersion=4.0", want: fhir.R4},
		{name: "_format wins over Accept", url: "?_format=" + "application/fhir%2Bjson%3BfhirVersion%3D4.0", accept: "application/fhir+json; fhirVersion=3.0", want: fhir.R4},
		{name: "Content-Type 4.0", contentType: "application/fhir+json; fhirVersion=4.0", want: fhir.R4},
		{name: "Content-Type 4.0, Accept any version", contentType: "application/fhir+json; fhirVersion=4.0", accept: "application/fhir+json", want: fhir.R4},
		{name: "Content-Type and Accept disagree", contentType: "application/fhir+json; fhirVersion=4.0", accept: "application/fhir+json; fhirVersion=3.0",
			status: http.StatusNotAcceptable, says: "fhirVersion 4.0"},
		{name: "Content-Type of an unserved version", contentType: "application/fhir+json; fhirVersion=5.0", status: http.StatusUnsupportedMediaType, says: "fhirVersion 5.0"},
		{name: "Accept of an unserved version", accept: "application/fhir+json; fhirVersion=1.0", status: http.StatusNotAcceptable, says: "fhirVersion 1.0"},
		{name: "an unserved version beside any", accept: "application/fhir+json; fhirVersion=5.0, */*;q=0.1", want: fhir.STU3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/fhir"+tc.url, nil)
			if tc.accept != "" {
				r.Header.Set("Accept", tc.accept)
			}
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			got, err := rest.SelectVersion(r, both, fhir.STU3)
			if tc.status != 0 {
				fe := fhir.AsError(err)
				if fe == nil || fe.Status != tc.status || !strings.Contains(fe.Issues[0].Diagnostics, tc.says) {
					t.Fatalf("got %v %v, want %d naming %q", got, err, tc.status, tc.says)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
}

// A versioned endpoint refuses a format of the other version, naming both.
func TestWrongVersionNamed(t *testing.T) {
	for _, v := range versions {
		o := newOpServer(t, v)
		other := map[fhir.Version]string{fhir.STU3: "4.0", fhir.R4: "3.0"}[v]
		code, _, body := o.do(http.MethodGet, "Patient/p1", "", "Accept", "application/fhir+json; fhirVersion="+other)
		if code != http.StatusNotAcceptable || !strings.Contains(body, "fhirVersion "+other+" is not served") || !strings.Contains(body, v.MimeVersion()) {
			t.Errorf("%s, Accept %s: %d %s", v, other, code, body)
		}
		code, _, body = o.do(http.MethodPut, "Patient/p2", `{"resourceType":"Patient","id":"p2"}`, "Content-Type", "application/fhir+json; fhirVersion="+other)
		if code != http.StatusUnsupportedMediaType || !strings.Contains(body, other) {
			t.Errorf("%s, Content-Type %s: %d %s", v, other, code, body)
		}
	}
}
