// Package nl holds the Dutch healthcare identifiers Twiin relies on: the
// naming systems of BSN, URA, UZI and AGB, and their validity rules.
package nl

import (
	"errors"
	"fmt"
	"strings"
)

// Naming systems (FHIR URIs) of the identifiers in SPEC §3.
const (
	SystemBSN     = "http://fhir.nl/fhir/NamingSystem/bsn"
	SystemURA     = "http://fhir.nl/fhir/NamingSystem/ura"
	SystemUZIPers = "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers"
	SystemUZISys  = "http://fhir.nl/fhir/NamingSystem/uzi-nr-sys"
	SystemUZIRole = "http://fhir.nl/fhir/NamingSystem/uzi-rolcode"
	SystemAGB     = "http://fhir.nl/fhir/NamingSystem/agb-z"
)

// OIDs of the same systems, as they appear in certificates, XACML and CDA.
const (
	OIDBSN     = "2.16.840.1.113883.2.4.6.3"
	OIDURA     = "2.16.528.1.1007.3.3"
	OIDUZIPers = "2.16.528.1.1007.3.1"
	OIDUZISys  = "2.16.528.1.1007.3.2"
	OIDUZIRole = "2.16.840.1.113883.2.4.15.111"
	OIDAGB     = "2.16.840.1.113883.2.4.6.1"
)

var oidToSystem = map[string]string{
	OIDBSN:     SystemBSN,
	OIDURA:     SystemURA,
	OIDUZIPers: SystemUZIPers,
	OIDUZISys:  SystemUZISys,
	OIDUZIRole: SystemUZIRole,
	OIDAGB:     SystemAGB,
}

// CanonicalSystem maps the OID form of a known naming system
// ("urn:oid:2.16.840.1.113883.2.4.6.3" or the bare OID) to its URI form, so
// that both forms compare equal on input. Other systems are returned unchanged.
func CanonicalSystem(system string) string {
	if s, ok := oidToSystem[strings.TrimPrefix(system, "urn:oid:")]; ok {
		return s
	}
	return system
}

// Errors returned by the validators.
var (
	ErrInvalidBSN = errors.New("invalid BSN")
	ErrInvalidURA = errors.New("invalid URA")
	ErrInvalidUZI = errors.New("invalid UZI number")
	ErrInvalidAGB = errors.New("invalid AGB code")
)

// ValidateBSN checks that bsn is nine digits passing the 11-proef: the digits
// weighted 9..2 and the last one -1 sum to a multiple of 11 (and not to zero).
func ValidateBSN(bsn string) error {
	if len(bsn) != 9 {
		return fmt.Errorf("%w: %d digits, want 9", ErrInvalidBSN, len(bsn))
	}
	sum := 0
	for i := 0; i < 9; i++ {
		c := bsn[i]
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: not all digits", ErrInvalidBSN)
		}
		w := 9 - i
		if i == 8 {
			w = -1
		}
		sum += w * int(c-'0')
	}
	if sum == 0 || sum%11 != 0 {
		return fmt.Errorf("%w: fails the 11-proef", ErrInvalidBSN)
	}
	return nil
}

// ValidateURA checks the form of an URA number: eight digits.
func ValidateURA(ura string) error {
	if len(ura) != 8 {
		return fmt.Errorf("%w: %q is not 8 digits", ErrInvalidURA, ura)
	}
	for i := 0; i < len(ura); i++ {
		if ura[i] < '0' || ura[i] > '9' {
			return fmt.Errorf("%w: %q is not 8 digits", ErrInvalidURA, ura)
		}
	}
	return nil
}

// ValidateUZI checks the form of an UZI number (of a person or a system):
// nine digits, as the UZI register issues them.
func ValidateUZI(uzi string) error {
	if !digits(uzi, 9) {
		return fmt.Errorf("%w: %q is not 9 digits", ErrInvalidUZI, uzi)
	}
	return nil
}

// ValidateAGB checks the form of an AGB code: eight digits.
func ValidateAGB(agb string) error {
	if !digits(agb, 8) {
		return fmt.Errorf("%w: %q is not 8 digits", ErrInvalidAGB, agb)
	}
	return nil
}

// ValidateIdentifier checks value by the rule of its naming system (URI or
// OID form) when the system is one of BSN, URA, UZI or AGB; values of other
// systems pass.
func ValidateIdentifier(system, value string) error {
	switch CanonicalSystem(system) {
	case SystemBSN:
		return ValidateBSN(value)
	case SystemURA:
		return ValidateURA(value)
	case SystemUZIPers, SystemUZISys:
		return ValidateUZI(value)
	case SystemAGB:
		return ValidateAGB(value)
	}
	return nil
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// BSNCheckDigit returns the ninth digit that makes the eight given digits a
// valid BSN, and false when no digit does (the remainder would be 10).
func BSNCheckDigit(first8 string) (byte, bool) {
	if len(first8) != 8 {
		return 0, false
	}
	sum := 0
	for i := 0; i < 8; i++ {
		sum += (9 - i) * int(first8[i]-'0')
	}
	d := sum % 11
	if d == 10 {
		return 0, false
	}
	return byte('0' + d), true
}
