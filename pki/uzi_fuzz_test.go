package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

var fuzzID = UZIServerID{UZI: "900000001", URA: "11111111", AGB: "00000001"}

// FuzzUZIOtherNames feeds arbitrary subjectAltName extension values to the
// otherName reader that crypto/x509 has no counterpart for. The seed corpus
// is in testdata/fuzz/FuzzUZIOtherNames; run with
// go test -fuzz=FuzzUZIOtherNames ./pki.
func FuzzUZIOtherNames(f *testing.F) {
	san, err := marshalSAN(&fuzzID, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(san)
	f.Fuzz(func(t *testing.T, der []byte) {
		values, err := uziOtherNames(der)
		if err != nil {
			if !errors.Is(err, ErrMalformedUZIIdentity) {
				t.Fatalf("error %v is not ErrMalformedUZIIdentity", err)
			}
			return
		}
		for _, v := range values {
			if !isIA5(v) {
				t.Fatalf("returned non-IA5 value %q", v)
			}
			id, err := parseUZIServerValue(v)
			if err != nil {
				if !errors.Is(err, ErrMalformedUZIIdentity) {
					t.Fatalf("error %v is not ErrMalformedUZIIdentity", err)
				}
				continue
			}
			// An accepted identity is valid, is written the way it was read,
			// and survives being issued again.
			if id.Validate() != nil || id.String() != v {
				t.Fatalf("value %q read as %+v", v, id)
			}
			again, err := marshalSAN(&id, nil, nil)
			if err != nil {
				t.Fatalf("marshalSAN(%+v): %v", id, err)
			}
			if got, err := uziOtherNames(again); err != nil || !slices.Equal(got, []string{v}) {
				t.Fatalf("round trip of %q: %q, %v", v, got, err)
			}
		}
	})
}

// FuzzParseUZIServerID feeds arbitrary certificates (DER) that crypto/x509
// parses to ParseUZIServerID, the identity every peer is known by. The seed
// corpus is in testdata/fuzz/FuzzParseUZIServerID.
func FuzzParseUZIServerID(f *testing.F) {
	ca, err := NewCA("Schakel fuzz CA", time.Time{}, time.Time{})
	if err != nil {
		f.Fatal(err)
	}
	for _, issue := range []func(ServerCertRequest) (tls.Certificate, error){ca.IssueUZIServer, ca.IssueWithoutUZIIdentity} {
		c, err := issue(ServerCertRequest{ID: fuzzID})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.Certificate[0])
	}
	f.Add(ca.Cert.Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := ParseUZIServerID(cert)
		if err != nil {
			if !errors.Is(err, ErrNoUZIIdentity) && !errors.Is(err, ErrMalformedUZIIdentity) {
				t.Fatalf("error %v is neither ErrNoUZIIdentity nor ErrMalformedUZIIdentity", err)
			}
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("accepted identity %+v: %v", id, err)
		}
		if sn := cert.Subject.SerialNumber; sn != "" && sn != id.UZI {
			t.Fatalf("accepted UZI %q with subject serialNumber %q", id.UZI, sn)
		}
		// Exactly one otherName in all subjectAltName extensions says it.
		var values []string
		for _, ext := range cert.Extensions {
			if ext.Id.Equal(oidSubjectAltName) {
				v, err := uziOtherNames(ext.Value)
				if err != nil {
					t.Fatalf("accepted a certificate with a malformed subjectAltName: %v", err)
				}
				values = append(values, v...)
			}
		}
		if !slices.Equal(values, []string{id.String()}) {
			t.Fatalf("accepted %+v from otherNames %q", id, values)
		}
	})
}
