package geboortezorg

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/schakel-nl/schakel/nl"
)

// Person is the mother or the child of a transfer.
type Person struct {
	BSN, Given, Family string
	BirthDate          string // YYYY-MM-DD
	Gender             string // FHIR administrative gender
}

// Name is the person's name as the document shows it.
func (p Person) Name() string { return p.Given + " " + p.Family }

// Spec describes a perinatal transfer (overdracht) to build.
type Spec struct {
	ID            string // document id (a UUID)
	Mother, Child Person
	// The midwife practice that writes the transfer and the midwife.
	PracticeURA, PracticeName string
	MidwifeUZI, MidwifeName   string
	Born                      time.Time // the moment of birth
	Date                      time.Time // the document's date
	Gravidity, Parity         int       // parity before this pregnancy
	DueDate                   string    // a terme datum, YYYY-MM-DD
	GestationDays             int       // pregnancy duration at birth
	BirthWeightGrams          int
	Apgar5                    int
	BloodLossML               int
	Home                      bool // born at home (else in hospital)
}

// Document builds the transfer as a FHIR STU3 document Bundle on the
// Nictiz Geboortezorg STU3 profiles: Composition (LOINC 57057-2), the
// mother (bc-Woman) and the child (bc-Child) linked by a RelatedPerson
// (bc-MotherOf), the pregnancy (zib-Pregnancy Condition) in a maternal
// record (bc-MaternalRecord EpisodeOfCare), the delivery (bc-DeliveryProcedure)
// and the birth (bc-Birth), and the key observations of pregnancy, delivery
// and child. docs/care-applications.md describes the shape.
func Document(s Spec) ([]byte, error) {
	if len(s.ID) != 36 {
		return nil, fmt.Errorf("document id %q: want a UUID", s.ID)
	}
	for _, p := range []Person{s.Mother, s.Child} {
		if err := nl.ValidateBSN(p.BSN); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name(), err)
		}
	}
	// Entries get urn:uuid ids derived from the document's.
	n := 0
	u := func() string {
		n++
		return fmt.Sprintf("urn:uuid:%s%04x", s.ID[:len(s.ID)-4], n)
	}
	mother, child, motherOf, org, midwife := u(), u(), u(), u(), u()
	pregnancy, record, delivery, birth := u(), u(), u(), u()
	born := s.Born.UTC().Format(time.RFC3339)
	ref := func(r string) map[string]any { return map[string]any{"reference": r} }
	meta := func(profiles ...string) map[string]any {
		return map[string]any{"profile": profiles}
	}
	cc := func(system, code, display string) map[string]any {
		return map[string]any{"coding": []any{map[string]any{"system": system, "code": code, "display": display}}}
	}
	patient := func(p Person, profile string) map[string]any {
		return map[string]any{"resourceType": "Patient", "meta": meta(ProfileNLCorePatient, profile),
			"identifier": []any{map[string]any{"system": nl.SystemBSN, "value": p.BSN}},
			"name":       []any{map[string]any{"family": p.Family, "given": []any{p.Given}}},
			"gender":     p.Gender, "birthDate": p.BirthDate}
	}
	var entries []any
	add := func(url string, res map[string]any) {
		entries = append(entries, map[string]any{"fullUrl": url, "resource": res})
	}

	m := patient(s.Mother, ProfileWoman)
	// bc-MotherOf: the mother's Patient links to the RelatedPerson that is
	// the child's mother.
	m["link"] = []any{map[string]any{"other": ref(motherOf), "type": "seealso"}}
	add(mother, m)
	add(child, patient(s.Child, ProfileChild))
	add(motherOf, map[string]any{"resourceType": "RelatedPerson", "meta": meta(ProfileMotherOf),
		"identifier": []any{map[string]any{"system": nl.SystemBSN, "value": s.Mother.BSN}},
		"patient":    ref(child), "relationship": cc(SystemRoleCode, RoleMother, "Mother"),
		"name": []any{map[string]any{"family": s.Mother.Family, "given": []any{s.Mother.Given}}}})
	add(org, map[string]any{"resourceType": "Organization", "meta": meta("http://fhir.nl/fhir/StructureDefinition/nl-core-organization"),
		"identifier": []any{map[string]any{"system": nl.SystemURA, "value": s.PracticeURA}}, "name": s.PracticeName,
		// RoleCodeNL (2.16.840.1.113883.2.4.15.1060) G3: verloskundigenpraktijk.
		"type": []any{cc("http://nictiz.nl/fhir/NamingSystem/organization-type", "G3", "Verloskundigenpraktijk")}})
	add(midwife, map[string]any{"resourceType": "Practitioner", "meta": meta("http://fhir.nl/fhir/StructureDefinition/nl-core-practitioner"),
		"identifier": []any{map[string]any{"system": "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers", "value": s.MidwifeUZI}},
		"name":       []any{map[string]any{"text": s.MidwifeName}}})
	add(pregnancy, map[string]any{"resourceType": "Condition", "meta": meta(ProfilePregnancy),
		"clinicalStatus": "inactive", "verificationStatus": "confirmed",
		"code":    cc(SystemSNOMED, CodePregnancy, "bevinding betreffende zwangerschap"),
		"subject": ref(mother), "context": ref(record), "abatementDateTime": born})
	add(record, map[string]any{"resourceType": "EpisodeOfCare", "meta": meta("http://fhir.nl/fhir/StructureDefinition/nl-core-episodeofcare", ProfileMaternalRecord),
		"status": "finished", "type": []any{cc(SystemSNOMED, CodeMaternalRecord, "observatie betreffende zwangerschap")},
		"diagnosis": []any{map[string]any{"condition": ref(pregnancy)}}, "patient": ref(mother),
		"managingOrganization": ref(org), "period": map[string]any{"end": s.Date.UTC().Format(time.RFC3339)}})
	procedure := func(profile, code, display, subject string) map[string]any {
		return map[string]any{"resourceType": "Procedure", "meta": meta(profile), "status": "completed",
			"category": cc(SystemSNOMED, "386637004", "obstetrische verrichting"), "code": cc(SystemSNOMED, code, display),
			"subject": ref(subject), "context": ref(record), "performedDateTime": born,
			"performer": []any{map[string]any{"actor": ref(midwife)}}, "reasonReference": []any{ref(pregnancy)}}
	}
	add(delivery, procedure(ProfileDelivery, CodeDelivery, "verlossing", mother))
	b := procedure(ProfileBirth, CodeBirth, "geboorte", child)
	b["partOf"] = []any{ref(delivery)}
	add(birth, b)

	var pregnancyObs, deliveryObs, childObs []any
	obs := func(list *[]any, profiles []string, focus, subject string, code map[string]any, value string, v any) {
		url := u()
		o := map[string]any{"resourceType": "Observation", "meta": meta(append([]string{ProfileNLCoreObservation}, profiles...)...),
			"status": "final", "code": code, "subject": ref(subject), "context": ref(record), "effectiveDateTime": born,
			"performer": []any{ref(midwife)}, value: v}
		if focus != "" {
			o["extension"] = []any{map[string]any{"url": ExtensionFocus, "valueReference": ref(focus)}}
		}
		add(url, o)
		*list = append(*list, ref(url))
	}
	qty := func(v int, unit string) map[string]any {
		return map[string]any{"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
	}
	// STU3 has no valueInteger: counts and scores are unitless quantities.
	count := func(v int) map[string]any { return map[string]any{"value": v} }
	obs(&pregnancyObs, []string{ProfilePregnancyObservation, "http://nictiz.nl/fhir/StructureDefinition/zib-Pregnancy-Gravidity"}, pregnancy, mother,
		cc(SystemLOINC, CodeGravidity, "Gravidity"), "valueQuantity", count(s.Gravidity))
	obs(&pregnancyObs, []string{ProfilePregnancyObservation, "http://nictiz.nl/fhir/StructureDefinition/zib-Pregnancy-Parity"}, pregnancy, mother,
		cc(SystemLOINC, CodeParity, "Parity"), "valueQuantity", count(s.Parity))
	obs(&pregnancyObs, []string{ProfilePregnancyObservation, "http://nictiz.nl/fhir/StructureDefinition/zib-Pregnancy-DueDate"}, pregnancy, mother,
		cc(SystemLOINC, CodeDueDate, "Deliv date Clin est"), "valueDateTime", s.DueDate)
	obs(&deliveryObs, []string{ProfilePregnancyObservation, "http://nictiz.nl/fhir/StructureDefinition/zib-Pregnancy-PregnancyDuration"}, pregnancy, mother,
		cc(SystemSNOMED, CodeGestation, "zwangerschapsduur"), "valueQuantity", qty(s.GestationDays, "d"))
	partus := cc(SystemSNOMED, "48782003", "spontane partus")
	obs(&deliveryObs, []string{ProfileBirthObservation}, birth, mother,
		cc(SystemSNOMED, CodeParturitionType, "type partus"), "valueCodeableConcept", partus)
	obs(&deliveryObs, []string{ProfileDeliveryObservation}, delivery, mother,
		cc(SystemSNOMED, CodeBloodLoss, "bloedverlies durante partu"), "valueQuantity", qty(s.BloodLossML, "mL"))
	place := cc(SystemSNOMED, "169813005", "thuisbevalling")
	if !s.Home {
		place = cc(SystemSNOMED, "22232009", "ziekenhuis")
	}
	obs(&deliveryObs, []string{ProfileDeliveryObservation}, delivery, mother,
		cc(SystemSNOMED, CodeBirthPlace, "werkelijke plaats baring"), "valueCodeableConcept", place)
	obs(&childObs, []string{ProfileChildObservation, "http://nictiz.nl/fhir/StructureDefinition/zib-BodyWeight"}, "", child,
		cc(SystemLOINC, CodeBirthWeight, "Birth weight Measured"), "valueQuantity", qty(s.BirthWeightGrams, "g"))
	obs(&childObs, []string{ProfileChildObservation, "http://nictiz.nl/fhir/StructureDefinition/zib-ApgarScore"}, "", child,
		cc(SystemLOINC, CodeApgar5, "5 minute Apgar Score"), "valueQuantity", count(s.Apgar5))

	section := func(title, text string, refs ...[]any) map[string]any {
		var entry []any
		for _, r := range refs {
			entry = append(entry, r...)
		}
		return map[string]any{"title": title, "text": map[string]any{"status": "generated",
			"div": `<div xmlns="http://www.w3.org/1999/xhtml"><p>` + escape(text) + `</p></div>`}, "entry": entry}
	}
	weeks := strconv.Itoa(s.GestationDays/7) + "+" + strconv.Itoa(s.GestationDays%7)
	comp := map[string]any{"resourceType": "Composition", "status": "final",
		"type":    cc(SystemLOINC, DocumentType, "Labor and delivery summary"),
		"subject": ref(mother), "date": s.Date.UTC().Format(time.RFC3339),
		"author": []any{ref(midwife)}, "title": Title, "custodian": ref(org),
		"section": []any{
			section("Zwangerschap", fmt.Sprintf("G%dP%d, a terme datum %s.", s.Gravidity, s.Parity, s.DueDate),
				[]any{ref(pregnancy), ref(record)}, pregnancyObs),
			section("Bevalling", fmt.Sprintf("Spontane partus op %s bij %s weken, bloedverlies %d ml.", s.Born.Format("2006-01-02 15:04"), weeks, s.BloodLossML),
				[]any{ref(delivery)}, deliveryObs),
			section("Kind", fmt.Sprintf("%s, geboortegewicht %d g, Apgar na 5 minuten %d.", s.Child.Name(), s.BirthWeightGrams, s.Apgar5),
				[]any{ref(child), ref(motherOf), ref(birth)}, childObs),
		}}
	entries = append([]any{map[string]any{"fullUrl": "urn:uuid:" + s.ID, "resource": comp}}, entries...)
	return json.Marshal(map[string]any{"resourceType": "Bundle", "type": "document",
		"identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:" + s.ID}, "entry": entries})
}

func escape(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			out = append(out, "&lt;"...)
		case '>':
			out = append(out, "&gt;"...)
		case '&':
			out = append(out, "&amp;"...)
		default:
			out = append(out, s[i])
		}
	}
	return string(out)
}

// Demo is the demo network's transfer: Sanne de Wit's second pregnancy,
// ended nine days before now by a spontaneous home birth of Noor at 40+2
// weeks, written by the midwife practice ura/name for the GP practice and
// the hospital. All data is invented; the BSNs are 9999 test numbers.
func Demo(id, practiceURA, practiceName string, now time.Time) Spec {
	born := time.Date(now.Year(), now.Month(), now.Day(), 4, 37, 0, 0, now.Location()).AddDate(0, 0, -9)
	const gestation = 40*7 + 2
	return Spec{ID: id,
		Mother:      Person{BSN: DemoMotherBSN, Given: "Sanne", Family: "de Wit", BirthDate: "1993-05-14", Gender: "female"},
		Child:       Person{BSN: DemoChildBSN, Given: "Noor", Family: "de Wit", BirthDate: born.Format("2006-01-02"), Gender: "female"},
		PracticeURA: practiceURA, PracticeName: practiceName, MidwifeUZI: "900000456", MidwifeName: "L. Bakker, verloskundige",
		Born: born, Date: now, Gravidity: 2, Parity: 1,
		DueDate:       born.AddDate(0, 0, 280-gestation).Format("2006-01-02"),
		GestationDays: gestation, BirthWeightGrams: 3480, Apgar5: 10, BloodLossML: 300, Home: true}
}

// The demo mother's and child's BSNs (9999 test range, 11-proef valid).
const (
	DemoMotherBSN = "999942104"
	DemoChildBSN  = "999942116"
)
