// Package pki is Schakel's public-key infrastructure: UZI-style server
// certificate identities, a development CA that issues them, JWT signing keys,
// and the one place that builds every tls.Config of the project.
package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/schakel-nl/schakel/nl"
)

// UZIServerOIDPrefix opens the otherName value of an UZI server certificate
// (SPEC §3). It names the issuing certificate policy, so only this one is
// accepted: a value under another policy is not a Schakel UZI identity.
const UZIServerOIDPrefix = "2.16.528.1.1007.99.2110"

var (
	// oidSubjectAltName is the subjectAltName extension (RFC 5280 §4.2.1.6).
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidUZIOtherName is the otherName type-id UZI certificates use for
	// their identity string.
	oidUZIOtherName = asn1.ObjectIdentifier{2, 5, 5, 5}
)

// GeneralName tags (RFC 5280 §4.2.1.6), context-specific.
const (
	tagOtherName = 0
	tagDNSName   = 2
	tagIPAddress = 7
)

// Errors about a certificate's UZI identity; test with errors.Is.
var (
	// ErrNoUZIIdentity: the certificate carries no otherName 2.5.5.5.
	ErrNoUZIIdentity = errors.New("pki: certificate has no UZI server identity (otherName 2.5.5.5)")
	// ErrMalformedUZIIdentity: there is an identity, but it is not valid.
	ErrMalformedUZIIdentity = errors.New("pki: malformed UZI server identity")
	// ErrNoVerifiedPeer: the connection has no verified peer certificate.
	ErrNoVerifiedPeer = errors.New("pki: connection has no verified peer certificate")
)

// UZIServerID is the identity an UZI server certificate asserts: the system's
// UZI number, the care provider's URA and its AGB code.
type UZIServerID struct {
	UZI string
	URA string
	AGB string
}

// String returns the otherName value,
// 2.16.528.1.1007.99.2110-1-<UZI>-S-<URA>-00.000-<AGB>.
func (id UZIServerID) String() string {
	return UZIServerOIDPrefix + "-1-" + id.UZI + "-S-" + id.URA + "-00.000-" + id.AGB
}

// Validate checks the parts: UZI number digits, URA eight digits, AGB eight
// digits. None may contain '-', which would make String ambiguous.
func (id UZIServerID) Validate() error {
	if !allDigits(id.UZI) {
		return fmt.Errorf("%w: UZI number %q is not all digits", ErrMalformedUZIIdentity, id.UZI)
	}
	if err := nl.ValidateURA(id.URA); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedUZIIdentity, err)
	}
	if len(id.AGB) != 8 || !allDigits(id.AGB) {
		return fmt.Errorf("%w: AGB code %q is not 8 digits", ErrMalformedUZIIdentity, id.AGB)
	}
	return nil
}

// parseUZIServerValue parses and validates an otherName value.
func parseUZIServerValue(v string) (UZIServerID, error) {
	parts := strings.Split(v, "-")
	if len(parts) != 7 {
		return UZIServerID{}, fmt.Errorf("%w: %q does not have 7 dash-separated fields", ErrMalformedUZIIdentity, v)
	}
	switch {
	case parts[0] != UZIServerOIDPrefix:
		return UZIServerID{}, fmt.Errorf("%w: policy OID %q, want %s", ErrMalformedUZIIdentity, parts[0], UZIServerOIDPrefix)
	case parts[1] != "1":
		return UZIServerID{}, fmt.Errorf("%w: version %q, want 1", ErrMalformedUZIIdentity, parts[1])
	case parts[3] != "S":
		return UZIServerID{}, fmt.Errorf("%w: card type %q, want S (server)", ErrMalformedUZIIdentity, parts[3])
	case parts[5] != "00.000":
		return UZIServerID{}, fmt.Errorf("%w: role code %q, want 00.000 for a server", ErrMalformedUZIIdentity, parts[5])
	}
	id := UZIServerID{UZI: parts[2], URA: parts[4], AGB: parts[6]}
	if err := id.Validate(); err != nil {
		return UZIServerID{}, err
	}
	return id, nil
}

// ParseUZIServerID reads the UZI server identity from the certificate's raw
// subjectAltName, because crypto/x509 drops otherName entries. It requires
// exactly one otherName 2.5.5.5 and, when the subject has a serialNumber,
// that it equals the UZI number.
func ParseUZIServerID(cert *x509.Certificate) (UZIServerID, error) {
	if cert == nil {
		return UZIServerID{}, ErrNoUZIIdentity
	}
	var values []string
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		v, err := uziOtherNames(ext.Value)
		if err != nil {
			return UZIServerID{}, err
		}
		values = append(values, v...)
	}
	switch len(values) {
	case 0:
		return UZIServerID{}, ErrNoUZIIdentity
	case 1:
	default:
		// Two identities in one certificate leave it unclear whom we talk to.
		return UZIServerID{}, fmt.Errorf("%w: %d otherName 2.5.5.5 entries, want 1", ErrMalformedUZIIdentity, len(values))
	}
	id, err := parseUZIServerValue(values[0])
	if err != nil {
		return UZIServerID{}, err
	}
	if sn := cert.Subject.SerialNumber; sn != "" && sn != id.UZI {
		return UZIServerID{}, fmt.Errorf("%w: subject serialNumber %q differs from UZI number %q", ErrMalformedUZIIdentity, sn, id.UZI)
	}
	return id, nil
}

// uziOtherNames returns the values of all otherName 2.5.5.5 entries in a DER
// GeneralNames; other kinds of names are skipped.
func uziOtherNames(der []byte) ([]string, error) {
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &names)
	if err != nil {
		return nil, fmt.Errorf("%w: subjectAltName: %v", ErrMalformedUZIIdentity, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: subjectAltName: trailing data", ErrMalformedUZIIdentity)
	}
	var out []string
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || n.Tag != tagOtherName {
			continue
		}
		if !n.IsCompound {
			return nil, fmt.Errorf("%w: otherName is not constructed", ErrMalformedUZIIdentity)
		}
		// OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY },
		// with the SEQUENCE tag replaced by the implicit [0].
		var typeID asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(n.Bytes, &typeID)
		if err != nil {
			return nil, fmt.Errorf("%w: otherName type-id: %v", ErrMalformedUZIIdentity, err)
		}
		if !typeID.Equal(oidUZIOtherName) {
			continue
		}
		var explicit asn1.RawValue
		rest, err = asn1.Unmarshal(rest, &explicit)
		if err != nil {
			return nil, fmt.Errorf("%w: otherName value: %v", ErrMalformedUZIIdentity, err)
		}
		if len(rest) != 0 || explicit.Class != asn1.ClassContextSpecific || explicit.Tag != 0 || !explicit.IsCompound {
			return nil, fmt.Errorf("%w: otherName value is not [0] EXPLICIT", ErrMalformedUZIIdentity)
		}
		var str asn1.RawValue
		rest, err = asn1.Unmarshal(explicit.Bytes, &str)
		if err != nil {
			return nil, fmt.Errorf("%w: otherName value: %v", ErrMalformedUZIIdentity, err)
		}
		if len(rest) != 0 || str.Class != asn1.ClassUniversal || str.Tag != asn1.TagIA5String {
			return nil, fmt.Errorf("%w: otherName value is not an IA5String", ErrMalformedUZIIdentity)
		}
		if !isIA5(string(str.Bytes)) {
			return nil, fmt.Errorf("%w: otherName value has non-IA5 characters", ErrMalformedUZIIdentity)
		}
		out = append(out, string(str.Bytes))
	}
	return out, nil
}

// marshalSAN builds a subjectAltName extension value: the UZI otherName (when
// id is non-nil), then the dNSNames and iPAddresses.
func marshalSAN(id *UZIServerID, dnsNames []string, ips []net.IP) ([]byte, error) {
	var names []asn1.RawValue
	if id != nil {
		value, err := asn1.MarshalWithParams(id.String(), "ia5")
		if err != nil {
			return nil, fmt.Errorf("pki: encode UZI identity: %w", err)
		}
		typeID, err := asn1.Marshal(oidUZIOtherName)
		if err != nil {
			return nil, err
		}
		explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: value})
		if err != nil {
			return nil, err
		}
		names = append(names, asn1.RawValue{
			Class: asn1.ClassContextSpecific, Tag: tagOtherName, IsCompound: true,
			Bytes: append(typeID, explicit...),
		})
	}
	for _, d := range dnsNames {
		if d == "" || !isIA5(d) {
			return nil, fmt.Errorf("pki: DNS name %q is not ASCII", d)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagDNSName, Bytes: []byte(d)})
	}
	for _, ip := range ips {
		b := ip.To4()
		if b == nil {
			b = ip.To16()
		}
		if b == nil {
			return nil, fmt.Errorf("pki: invalid IP address %v", ip)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagIPAddress, Bytes: b})
	}
	return asn1.Marshal(names)
}

// PeerURA returns the URA of the verified peer's leaf certificate. Only
// VerifiedChains count: PeerCertificates of an unverified peer prove nothing.
func PeerURA(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", ErrNoVerifiedPeer
	}
	id, err := ParseUZIServerID(cs.VerifiedChains[0][0])
	if err != nil {
		return "", err
	}
	return id.URA, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
