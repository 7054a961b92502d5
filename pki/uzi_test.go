package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"slices"
	"testing"
)

var testID = UZIServerID{UZI: "900012345", URA: "12345678", AGB: "87654321"}

func TestUZIServerIDString(t *testing.T) {
	want := "2.16.528.1.1007.99.2110-1-900012345-S-12345678-00.000-87654321"
	if got := testID.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestUZIOtherNameRoundTrip(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	pair, err := ca.IssueUZIServer(ServerCertRequest{ID: testID, CommonName: "Huisartsenpraktijk Test"})
	if err != nil {
		t.Fatal(err)
	}
	// Parse the DER afresh so nothing depends on the issuer's in-memory copy.
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseUZIServerID(cert)
	if err != nil {
		t.Fatal(err)
	}
	if got != testID {
		t.Fatalf("ParseUZIServerID = %+v, want %+v", got, testID)
	}
	if cert.Subject.SerialNumber != testID.UZI {
		t.Errorf("subject serialNumber = %q, want %q", cert.Subject.SerialNumber, testID.UZI)
	}
	if !slices.Equal(cert.DNSNames, []string{"localhost"}) {
		t.Errorf("DNSNames = %v", cert.DNSNames)
	}
	if len(cert.IPAddresses) != 2 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", cert.IPAddresses)
	}
	// crypto/x509 must still be able to verify the chain and the names in
	// our hand-built SAN.
	_, err = cert.Verify(x509.VerifyOptions{
		DNSName:   "127.0.0.1",
		Roots:     CertPool(ca.Cert),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestIssueWithoutUZIIdentity(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	pair, err := ca.IssueWithoutUZIIdentity(ServerCertRequest{CommonName: "anonymous"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseUZIServerID(pair.Leaf); !errors.Is(err, ErrNoUZIIdentity) {
		t.Fatalf("err = %v, want ErrNoUZIIdentity", err)
	}
}

// otherName builds a GeneralName otherName with the given type and raw
// (already encoded) value, which is wrapped in [0] EXPLICIT when explicit.
func otherName(t *testing.T, typeID asn1.ObjectIdentifier, value []byte, explicit bool) asn1.RawValue {
	t.Helper()
	oid, err := asn1.Marshal(typeID)
	if err != nil {
		t.Fatal(err)
	}
	if explicit {
		value, err = asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: value})
		if err != nil {
			t.Fatal(err)
		}
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, value...)}
}

func ia5(t *testing.T, s string) []byte {
	t.Helper()
	b, err := asn1.MarshalWithParams(s, "ia5")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sanOf(t *testing.T, names ...asn1.RawValue) []byte {
	t.Helper()
	b, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func certWithSAN(san []byte, subjectSerial string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{SerialNumber: subjectSerial}}
	if san != nil {
		c.Extensions = []pkix.Extension{{Id: oidSubjectAltName, Value: san}}
	}
	return c
}

func TestParseUZIServerIDMalformed(t *testing.T) {
	uzi := func(t *testing.T, v string) asn1.RawValue { return otherName(t, oidUZIOtherName, ia5(t, v), true) }
	dns := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagDNSName, Bytes: []byte("localhost")}
	utf8, _ := asn1.MarshalWithParams(testID.String(), "utf8")

	tests := []struct {
		name    string
		san     func(t *testing.T) []byte
		serial  string
		wantErr error
	}{
		{"no SAN extension", func(t *testing.T) []byte { return nil }, "", ErrNoUZIIdentity},
		{"only dNSName", func(t *testing.T) []byte { return sanOf(t, dns) }, "", ErrNoUZIIdentity},
		{"other otherName type", func(t *testing.T) []byte {
			return sanOf(t, otherName(t, asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}, ia5(t, testID.String()), true))
		}, "", ErrNoUZIIdentity},
		{"not DER", func(t *testing.T) []byte { return []byte{0x30, 0x05, 0x01} }, "", ErrMalformedUZIIdentity},
		{"trailing data", func(t *testing.T) []byte { return append(sanOf(t, uzi(t, testID.String())), 0x00) }, "", ErrMalformedUZIIdentity},
		{"UTF8String value", func(t *testing.T) []byte { return sanOf(t, otherName(t, oidUZIOtherName, utf8, true)) }, "", ErrMalformedUZIIdentity},
		{"value not explicitly tagged", func(t *testing.T) []byte {
			return sanOf(t, otherName(t, oidUZIOtherName, ia5(t, testID.String()), false))
		}, "", ErrMalformedUZIIdentity},
		{"primitive otherName", func(t *testing.T) []byte {
			return sanOf(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: []byte{1, 2}})
		}, "", ErrMalformedUZIIdentity},
		{"two identities", func(t *testing.T) []byte { return sanOf(t, uzi(t, testID.String()), uzi(t, testID.String())) }, "", ErrMalformedUZIIdentity},
		{"wrong policy OID", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1003.1.3.5.5.2-1-900012345-S-12345678-00.000-87654321"))
		}, "", ErrMalformedUZIIdentity},
		{"wrong version", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-2-900012345-S-12345678-00.000-87654321"))
		}, "", ErrMalformedUZIIdentity},
		{"person card type", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-1-900012345-Z-12345678-01.015-87654321"))
		}, "", ErrMalformedUZIIdentity},
		{"server type with role code", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-1-900012345-S-12345678-01.015-87654321"))
		}, "", ErrMalformedUZIIdentity},
		{"URA seven digits", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-1-900012345-S-1234567-00.000-87654321"))
		}, "", ErrMalformedUZIIdentity},
		{"URA not digits", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-1-900012345-S-1234567X-00.000-87654321"))
		}, "", ErrMalformedUZIIdentity},
		{"empty UZI number", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-1--S-12345678-00.000-87654321"))
		}, "", ErrMalformedUZIIdentity},
		{"AGB too short", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-1-900012345-S-12345678-00.000-123"))
		}, "", ErrMalformedUZIIdentity},
		{"missing field", func(t *testing.T) []byte {
			return sanOf(t, uzi(t, "2.16.528.1.1007.99.2110-1-900012345-S-12345678-00.000"))
		}, "", ErrMalformedUZIIdentity},
		{"extra field", func(t *testing.T) []byte { return sanOf(t, uzi(t, testID.String()+"-1")) }, "", ErrMalformedUZIIdentity},
		{"subject serialNumber differs", func(t *testing.T) []byte { return sanOf(t, uzi(t, testID.String())) }, "111", ErrMalformedUZIIdentity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseUZIServerID(certWithSAN(tc.san(t), tc.serial))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}

	t.Run("well-formed, among other names", func(t *testing.T) {
		got, err := ParseUZIServerID(certWithSAN(sanOf(t, dns, uzi(t, testID.String())), testID.UZI))
		if err != nil || got != testID {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
}

func TestIssueRejectsInvalidID(t *testing.T) {
	ca := newTestCA(t, "dev CA")
	for _, id := range []UZIServerID{
		{UZI: "1", URA: "1234567", AGB: "12345678"},
		{UZI: "1-2", URA: "12345678", AGB: "12345678"},
		{UZI: "1", URA: "12345678", AGB: ""},
	} {
		if _, err := ca.IssueUZIServer(ServerCertRequest{ID: id}); !errors.Is(err, ErrMalformedUZIIdentity) {
			t.Errorf("IssueUZIServer(%+v) err = %v, want ErrMalformedUZIIdentity", id, err)
		}
	}
}
