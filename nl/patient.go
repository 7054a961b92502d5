package nl

import "encoding/json"

// Patient reads who a FHIR Patient resource (JSON, STU3 or R4) is: its BSN
// (the first identifier in the BSN naming system, URI or OID form) and its
// birth date as given (a FHIR date). ok is false when body is not a
// Patient; a Patient without them has empty ones.
func Patient(body []byte) (bsn, birthDate string, ok bool) {
	var p struct {
		ResourceType string
		BirthDate    string
		Identifier   []struct{ System, Value string }
	}
	if json.Unmarshal(body, &p) != nil || p.ResourceType != "Patient" {
		return "", "", false
	}
	for _, id := range p.Identifier {
		if CanonicalSystem(id.System) == SystemBSN {
			bsn = id.Value
			break
		}
	}
	return bsn, p.BirthDate, true
}
