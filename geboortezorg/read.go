package geboortezorg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/schakel-nl/schakel/nl"
)

// Transfer is what a receiving system reads from a transfer.
type Transfer struct {
	DocumentID    string
	Date          string
	Practice      string // the custodian organisation's name
	PracticeURA   string
	Mother, Child Person
	Born          string // the birth procedure's time
	Observations  []Observation
}

// Observation is one key observation of the transfer.
type Observation struct {
	Subject string // "mother" or "child"
	Label   string
	Code    string // system|code
	Value   string
}

type reference struct {
	Reference string `json:"reference"`
}

type coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display"`
}

type codeable struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text"`
}

func (c codeable) has(system, code string) bool {
	return slices.ContainsFunc(c.Coding, func(cd coding) bool { return cd.System == system && cd.Code == code })
}

func (c codeable) String() string {
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	if c.Text != "" {
		return c.Text
	}
	if len(c.Coding) > 0 {
		return c.Coding[0].System + "|" + c.Coding[0].Code
	}
	return "(none)"
}

// resource holds the elements of the transfer's resources the check reads.
type resource struct {
	ResourceType string `json:"resourceType"`
	Meta         struct {
		Profile []string `json:"profile"`
	} `json:"meta"`
	Status     string `json:"status"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	// Name is a HumanName list (Patient, RelatedPerson) or a string
	// (Organization).
	Name      json.RawMessage `json:"name"`
	Gender    string          `json:"gender"`
	BirthDate string          `json:"birthDate"`
	Link      []struct {
		Other reference `json:"other"`
		Type  string    `json:"type"`
	} `json:"link"`
	Patient      *reference      `json:"patient"`
	Relationship json.RawMessage `json:"relationship"`
	Subject      *reference      `json:"subject"`
	Code         codeable        `json:"code"`
	PartOf       []reference     `json:"partOf"`
	Performed    string          `json:"performedDateTime"`
	Extension    []struct {
		URL            string     `json:"url"`
		ValueReference *reference `json:"valueReference"`
	} `json:"extension"`
	ValueQuantity *struct {
		Value json.Number `json:"value"`
		Unit  string      `json:"unit"`
	} `json:"valueQuantity"`
	ValueDateTime        string    `json:"valueDateTime"`
	ValueCodeableConcept *codeable `json:"valueCodeableConcept"`

	// Elements whose shape tells FHIR R4 from STU3.
	Encounter      json.RawMessage `json:"encounter"`
	ClinicalStatus json.RawMessage `json:"clinicalStatus"`
	ValueInteger   json.RawMessage `json:"valueInteger"`
}

func (r *resource) claims(profile string) bool { return slices.Contains(r.Meta.Profile, profile) }

func (r *resource) bsn() string {
	for _, id := range r.Identifier {
		if nl.CanonicalSystem(id.System) == nl.SystemBSN {
			return id.Value
		}
	}
	return ""
}

func (r *resource) person() Person {
	p := Person{BSN: r.bsn(), BirthDate: r.BirthDate, Gender: r.Gender}
	var names []struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Text   string   `json:"text"`
	}
	if json.Unmarshal(r.Name, &names) == nil && len(names) > 0 {
		p.Given, p.Family = strings.Join(names[0].Given, " "), names[0].Family
		if p.Family == "" {
			p.Family = names[0].Text
		}
	}
	return p
}

type composition struct {
	ResourceType string      `json:"resourceType"`
	Status       string      `json:"status"`
	Type         codeable    `json:"type"`
	Subject      *reference  `json:"subject"`
	Date         string      `json:"date"`
	Author       []reference `json:"author"`
	Title        string      `json:"title"`
	Custodian    *reference  `json:"custodian"`
	Section      []struct {
		Title string      `json:"title"`
		Entry []reference `json:"entry"`
	} `json:"section"`
}

// letterTypes are the Correspondentie letters: sent here they are the
// wrong care application.
var letterTypes = map[string]string{"18842-5": "discharge letter", "57133-1": "referral letter"}

// Read checks a transfer as its receiver must and returns what it says.
// Its error is a *fhir.Error (422) naming what is wrong; the mother's
// BSN is set as soon as it is known valid, so that a refusal is audited
// with her.
func Read(payload []byte) (Transfer, error) {
	var t Transfer
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Identifier   *struct{ System, Value string }
		Entry        []struct {
			FullURL  string          `json:"fullUrl"`
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(payload, &b); err != nil {
		return t, refuse("structure", "not a FHIR JSON Bundle: %s", jsonProblem(err))
	}
	if b.ResourceType != "Bundle" || b.Type != "document" {
		return t, refuse("invalid", "a perinatal transfer is a Bundle of type document")
	}
	if b.Identifier == nil || b.Identifier.Value == "" {
		return t, refuse("required", "Bundle.identifier (the document's id) is required")
	}
	t.DocumentID = b.Identifier.Value
	if len(b.Entry) == 0 {
		return t, refuse("required", "the document has no Composition")
	}
	byURL := make(map[string]*resource, len(b.Entry))
	byRel := map[string]*resource{} // "Type/id" of entries with a RESTful fullUrl
	var all []*resource
	for i, e := range b.Entry {
		if e.FullURL == "" || byURL[e.FullURL] != nil {
			return t, refuse("invalid", "entry %d: every entry needs a fullUrl of its own", i)
		}
		r := &resource{}
		dec := json.NewDecoder(bytes.NewReader(e.Resource))
		dec.UseNumber()
		if err := dec.Decode(r); err != nil && i > 0 {
			return t, refuse("structure", "entry %d (%s): %s", i, e.FullURL, jsonProblem(err))
		}
		byURL[e.FullURL] = r
		if rel, ok := restful(e.FullURL); ok {
			byRel[rel] = r
		}
		if i > 0 {
			all = append(all, r)
		}
	}
	var c composition
	if err := json.Unmarshal(b.Entry[0].Resource, &c); err != nil || c.ResourceType != "Composition" {
		return t, refuse("invalid", "the first entry of a document must be its Composition")
	}
	// resolve finds a reference's entry: by fullUrl, or a relative
	// reference by the RESTful fullUrl it resolves against (FHIR STU3
	// Bundle, "resolving references in bundles").
	resolve := func(ref *reference) *resource {
		if ref == nil {
			return nil
		}
		if r := byURL[ref.Reference]; r != nil {
			return r
		}
		return byRel[ref.Reference]
	}
	get := func(ref *reference, typ string) *resource {
		if r := resolve(ref); r != nil && r.ResourceType == typ {
			return r
		}
		return nil
	}

	// The mother first: a refusal of a transfer that names her validly
	// is audited with her.
	mother := get(c.Subject, "Patient")
	if mother == nil {
		return t, refuse("required", "Composition.subject must reference the mother's Patient in the document")
	}
	t.Mother = mother.person()
	if t.Mother.BSN == "" {
		return t, refuse("required", "the mother (Composition.subject) must be identified by BSN (%s)", nl.SystemBSN)
	}
	if err := nl.ValidateBSN(t.Mother.BSN); err != nil {
		bsn := t.Mother.BSN
		t.Mother.BSN = ""
		return t, refuse("value", "the mother's BSN %s: %v", bsn, err)
	}

	for _, r := range all {
		if err := version(r); err != nil {
			return t, err
		}
	}

	// The care application: a perinatal transfer, nothing else.
	if !c.Type.has(SystemLOINC, DocumentType) {
		for _, cd := range c.Type.Coding {
			if cd.System == SystemLOINC && letterTypes[cd.Code] != "" {
				return t, refuse("not-supported", "this is a %s (LOINC %s), care application correspondentie, not a perinatal transfer: Composition.type must be LOINC %s",
					letterTypes[cd.Code], cd.Code, DocumentType)
			}
		}
		return t, refuse("not-supported", "Composition.type %s is not the perinatal transfer: it must be LOINC %s (labor and delivery summary)",
			c.Type, DocumentType)
	}
	if c.Status != "final" && c.Status != "amended" {
		return t, refuse("invalid", "Composition.status must be final or amended, not %q", c.Status)
	}
	if c.Title == "" || c.Date == "" || len(c.Author) == 0 {
		return t, refuse("required", "Composition.title, Composition.date and Composition.author are required")
	}
	t.Date = c.Date
	org := get(c.Custodian, "Organization")
	if org == nil {
		return t, refuse("required", "Composition.custodian must reference the sending practice's Organization in the document")
	}
	for _, id := range org.Identifier {
		if nl.CanonicalSystem(id.System) == nl.SystemURA {
			t.PracticeURA = id.Value
		}
	}
	if nl.ValidateURA(t.PracticeURA) != nil {
		return t, refuse("required", "the custodian Organization must be identified by URA (%s)", nl.SystemURA)
	}
	_ = json.Unmarshal(org.Name, &t.Practice)
	for _, s := range c.Section {
		for _, e := range s.Entry {
			if resolve(&e) == nil {
				return t, refuse("invalid", "section %q references %s, which is not in the document", s.Title, e.Reference)
			}
		}
	}

	if !mother.claims(ProfileWoman) {
		return t, refuse("invalid", "the mother's Patient must claim profile %s; its meta.profile is %s", ProfileWoman, list(mother.Meta.Profile))
	}

	// The birth: its subject is the child, it is part of the delivery
	// whose subject is the mother.
	var birth *resource
	for _, r := range all {
		if r.ResourceType == "Procedure" && r.Code.has(SystemSNOMED, CodeBirth) {
			birth = r
			break
		}
	}
	if birth == nil {
		return t, refuse("required", "the document holds no birth (a Procedure with code SNOMED %s, profile %s)", CodeBirth, ProfileBirth)
	}
	if !birth.claims(ProfileBirth) {
		return t, refuse("invalid", "the birth Procedure must claim profile %s; its meta.profile is %s", ProfileBirth, list(birth.Meta.Profile))
	}
	child := get(birth.Subject, "Patient")
	if child == nil {
		return t, refuse("required", "the birth's subject must reference the child's Patient in the document")
	}
	if !child.claims(ProfileChild) {
		return t, refuse("invalid", "the child's Patient must claim profile %s; its meta.profile is %s", ProfileChild, list(child.Meta.Profile))
	}
	t.Child = child.person()
	t.Born = birth.Performed
	if t.Child.BSN == "" {
		return t, refuse("required", "the child must be identified by BSN (%s)", nl.SystemBSN)
	}
	if err := nl.ValidateBSN(t.Child.BSN); err != nil {
		return t, refuse("value", "the child's BSN %s: %v", t.Child.BSN, err)
	}
	if t.Child.BSN == t.Mother.BSN {
		return t, refuse("invalid", "mother and child carry the same BSN")
	}
	var delivery *resource
	if len(birth.PartOf) == 1 {
		delivery = get(&birth.PartOf[0], "Procedure")
	}
	if delivery == nil || !delivery.Code.has(SystemSNOMED, CodeDelivery) || !delivery.claims(ProfileDelivery) {
		return t, refuse("required", "the birth must be partOf the delivery: a Procedure in the document with code SNOMED %s and profile %s", CodeDelivery, ProfileDelivery)
	}
	if resolve(delivery.Subject) != mother {
		return t, refuse("invalid", "mother and child are not linked: the delivery's subject is not the mother (Composition.subject)")
	}
	// bc-MotherOf: a RelatedPerson of the child that is its mother, and
	// the mother's Patient.link to it.
	linked := false
	for _, l := range mother.Link {
		rp := resolve(&l.Other)
		if l.Type != "seealso" || rp == nil || rp.ResourceType != "RelatedPerson" || !rp.claims(ProfileMotherOf) {
			continue
		}
		var rel codeable
		if resolve(rp.Patient) == child && json.Unmarshal(rp.Relationship, &rel) == nil &&
			rel.has(SystemRoleCode, RoleMother) {
			linked = true
		}
	}
	if !linked {
		return t, refuse("invalid", "mother and child are not linked: the mother's Patient.link (type seealso) must reference a RelatedPerson (profile %s, relationship %s|%s) whose patient is the child",
			ProfileMotherOf, SystemRoleCode, RoleMother)
	}
	pregnancy := false
	for _, r := range all {
		if r.ResourceType == "Condition" && r.claims(ProfilePregnancy) && resolve(r.Subject) == mother {
			pregnancy = true
		}
	}
	if !pregnancy {
		return t, refuse("required", "the document holds no pregnancy of the mother (a Condition with profile %s)", ProfilePregnancy)
	}

	for _, r := range all {
		if r.ResourceType != "Observation" {
			continue
		}
		if !slices.ContainsFunc(observationProfiles, r.claims) {
			return t, refuse("invalid", "Observation %s claims none of the Geboortezorg observation profiles (%s); its meta.profile is %s",
				r.Code, strings.Join(observationProfiles, ", "), list(r.Meta.Profile))
		}
		if r.Status != "final" && r.Status != "amended" && r.Status != "corrected" {
			return t, refuse("invalid", "Observation %s: status must be final, amended or corrected, not %q", r.Code, r.Status)
		}
		var who string
		switch {
		case resolve(r.Subject) == mother:
			who = "mother"
		case resolve(r.Subject) == child:
			who = "child"
		default:
			return t, refuse("invalid", "Observation %s: its subject must be the mother or the child", r.Code)
		}
		if o, ok := key(r); ok {
			o.Subject = who
			t.Observations = append(t.Observations, o)
		}
	}
	if !slices.ContainsFunc(t.Observations, func(o Observation) bool { return o.Code == SystemLOINC+"|"+CodeBirthWeight && o.Subject == "child" }) {
		return t, refuse("required", "the document holds no birth weight of the child (Observation LOINC %s)", CodeBirthWeight)
	}
	return t, nil
}

// jsonProblem says what is wrong with a body without naming Go types.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("%s must not be a JSON %s", te.Field, te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("a JSON %s where an object is expected", te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	return "invalid JSON"
}

// restful returns "Type/id" of an absolute RESTful URL [base]/Type/id.
func restful(fullURL string) (string, bool) {
	if !strings.HasPrefix(fullURL, "http://") && !strings.HasPrefix(fullURL, "https://") {
		return "", false
	}
	parts := strings.Split(strings.TrimSuffix(fullURL, "/"), "/")
	if len(parts) < 5 || parts[len(parts)-2] == "" || parts[len(parts)-1] == "" {
		return "", false
	}
	return parts[len(parts)-2] + "/" + parts[len(parts)-1], true
}

func list(profiles []string) string {
	if len(profiles) == 0 {
		return "empty"
	}
	return strings.Join(profiles, ", ")
}

// keyObservations are the observations a receiving system shows.
var keyObservations = []struct{ system, code, label string }{
	{SystemLOINC, CodeGravidity, "gravidity"},
	{SystemLOINC, CodeParity, "parity (before this pregnancy)"},
	{SystemLOINC, CodeDueDate, "due date"},
	{SystemSNOMED, CodeGestation, "gestation at birth"},
	{SystemSNOMED, CodeParturitionType, "type of delivery"},
	{SystemSNOMED, CodeBloodLoss, "blood loss"},
	{SystemSNOMED, CodeBirthPlace, "place of birth"},
	{SystemLOINC, CodeBirthWeight, "birth weight"},
	{SystemLOINC, CodeApgar5, "Apgar score at 5 minutes"},
}

func key(r *resource) (Observation, bool) {
	for _, k := range keyObservations {
		if !r.Code.has(k.system, k.code) {
			continue
		}
		o := Observation{Label: k.label, Code: k.system + "|" + k.code}
		switch {
		case r.ValueQuantity != nil && k.code == CodeGestation && r.ValueQuantity.Unit == "d":
			if d, err := strconv.Atoi(r.ValueQuantity.Value.String()); err == nil {
				o.Value = fmt.Sprintf("%d+%d weeks", d/7, d%7)
			}
		case r.ValueQuantity != nil:
			o.Value = strings.TrimSpace(r.ValueQuantity.Value.String() + " " + r.ValueQuantity.Unit)
		case r.ValueDateTime != "":
			o.Value = r.ValueDateTime
		case r.ValueCodeableConcept != nil:
			o.Value = r.ValueCodeableConcept.String()
		}
		return o, true
	}
	return Observation{}, false
}
