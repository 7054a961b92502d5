package notifiedpull

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/schakel-nl/schakel/nl"
)

// The FHIR uuid and oid data types (RFC 4122 in lower-case hex, ITU-T X.660).
var (
	uuidURN = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	oidURN  = regexp.MustCompile(`^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$`)
)

// maxAuthBaseLength bounds the authorization base a sender may set.
const maxAuthBaseLength = 512

// checkTaskURI checks a Task identifier or groupIdentifier value of system
// urn:ietf:rfc:3986: the agreement uses urn:uuid: (and urn:oid:) URIs.
func checkTaskURI(value string) error {
	switch {
	case strings.HasPrefix(value, "urn:uuid:"):
		if !uuidURN.MatchString(value) {
			return errors.New("a urn:uuid: identifier must hold an RFC 4122 UUID in lower-case hex (8-4-4-4-12)")
		}
	case strings.HasPrefix(value, "urn:oid:"):
		if !oidURN.MatchString(value) {
			return errors.New("a urn:oid: identifier must hold an OID (digits separated by dots, no leading zeros)")
		}
	default:
		return fmt.Errorf("an identifier of system %s must be a urn:uuid: or urn:oid: URI", SystemRFC3986)
	}
	return nil
}

// checkIdentifier checks value by the syntax of its system: Task URIs, and
// BSN, URA, UZI and AGB by the nl rules. Other systems are not the agreement's.
func checkIdentifier(system, value string) error {
	if system == SystemRFC3986 {
		return checkTaskURI(value)
	}
	if err := nl.ValidateIdentifier(system, value); err != nil {
		return fmt.Errorf("not a valid identifier of system %s: %w", nl.CanonicalSystem(system), err)
	}
	return nil
}

// checkAuthBase checks the syntax of an authorization base: it travels as a
// form parameter and is compared as given, so visible ASCII only, bounded.
func checkAuthBase(s string) error {
	if len(s) > maxAuthBaseLength {
		return fmt.Errorf("the authorization base exceeds %d characters", maxAuthBaseLength)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return errors.New("the authorization base may hold visible ASCII characters only (no spaces or control characters)")
		}
	}
	return nil
}
