package nl

import (
	"errors"
	"testing"
)

func TestValidateBSN(t *testing.T) {
	tests := []struct {
		bsn string
		ok  bool
	}{
		{"999909587", true}, // Nictiz test patient A
		{"999911259", true},
		{"111222333", true},
		{"999909588", false},
		{"12345678", false},
		{"1234567890", false},
		{"99990958a", false},
		{"000000000", false},
	}
	for _, tt := range tests {
		err := ValidateBSN(tt.bsn)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateBSN(%q) = %v, want ok=%v", tt.bsn, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidBSN) {
			t.Errorf("ValidateBSN(%q) error %v does not wrap ErrInvalidBSN", tt.bsn, err)
		}
	}
}

func TestBSNCheckDigit(t *testing.T) {
	d, ok := BSNCheckDigit("99990958")
	if !ok || d != '7' {
		t.Fatalf("BSNCheckDigit = %c %v, want 7 true", d, ok)
	}
}

func TestCanonicalSystem(t *testing.T) {
	for in, want := range map[string]string{
		"urn:oid:2.16.840.1.113883.2.4.6.3": SystemBSN,
		"2.16.528.1.1007.3.3":               SystemURA,
		SystemBSN:                           SystemBSN,
		"http://loinc.org":                  "http://loinc.org",
	} {
		if got := CanonicalSystem(in); got != want {
			t.Errorf("CanonicalSystem(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateURA(t *testing.T) {
	if err := ValidateURA("00001234"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"1234", "0000123x", "000012345"} {
		if ValidateURA(bad) == nil {
			t.Errorf("ValidateURA(%q) accepted", bad)
		}
	}
}

func TestPatient(t *testing.T) {
	for _, tc := range []struct {
		body, bsn, born string
		ok              bool
	}{
		{`{"resourceType":"Patient","birthDate":"1970-03-01","identifier":[{"system":"urn:oid:2.16.840.1.113883.2.4.6.3","value":"999911120"}]}`, "999911120", "1970-03-01", true},
		{`{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":"x"},{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911120"}]}`, "999911120", "", true},
		{`{"resourceType":"Patient"}`, "", "", true},
		{`{"resourceType":"Practitioner","birthDate":"1970-03-01"}`, "", "", false},
		{`not json`, "", "", false},
	} {
		bsn, born, ok := Patient([]byte(tc.body))
		if bsn != tc.bsn || born != tc.born || ok != tc.ok {
			t.Errorf("Patient(%s) = %q, %q, %v; want %q, %q, %v", tc.body, bsn, born, ok, tc.bsn, tc.born, tc.ok)
		}
	}
}

func TestValidateIdentifier(t *testing.T) {
	for _, tc := range []struct {
		system, value string
		ok            bool
	}{
		{SystemBSN, "999911120", true},
		{SystemBSN, "999911121", false},
		{"urn:oid:" + OIDBSN, "123456789", false},
		{SystemURA, "90000001", true},
		{"urn:oid:" + OIDURA, "9000001", false},
		{SystemUZISys, "900000011", true},
		{SystemUZIPers, "90000001x", false},
		{SystemUZIPers, "9000000111", false},
		{SystemAGB, "01234567", true},
		{"urn:oid:" + OIDAGB, "0123456", false},
		{"https://ehr.example/ids", "anything at all", true},
	} {
		if err := ValidateIdentifier(tc.system, tc.value); (err == nil) != tc.ok {
			t.Errorf("ValidateIdentifier(%s, %q) = %v, want ok %v", tc.system, tc.value, err, tc.ok)
		}
	}
}
