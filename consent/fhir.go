package consent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/schakel-nl/schakel/nl"
)

// FHIR (R4) systems and URLs of the consent resources and Mitz subscriptions.
const (
	systemConsentScope   = "http://terminology.hl7.org/CodeSystem/consentscope"
	systemDataCategory   = "http://fhir.nl/otv/CodeSystem/gegevenscategorie"
	systemParticipation  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemActReason      = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	systemActReasonSTU3  = "http://hl7.org/fhir/v3/ActReason" // as Mitz writes it
	systemFacilityType   = "http://nictiz.nl/fhir/NamingSystem/organization-type"
	roleCustodian        = "CST"  // the data holder
	roleRecipient        = "IRCP" // the requester
	extBirthDate         = "http://fhir.nl/StructureDefinition/Patient.birthDate"
	extGatewaySystem     = "http://fhir.nl/StructureDefinition/GatewaySystem"
	extSourceSystem      = "http://fhir.nl/StructureDefinition/SourceSystem"
	mimeFHIRJSON         = "application/fhir+json"
	subscriptionReason   = "OTV"
	subscriptionCriteria = "Consent?"

	// SubscriptionPath is where subscriptions are created.
	SubscriptionPath = "/abonnementen/fhir"
)

// facilityTypeSystem reports whether s names the facility-type code system.
func facilityTypeSystem(s string) bool {
	return s == systemFacilityType || strings.TrimPrefix(s, "urn:oid:") == oidFacilityType
}

// ---- FHIR JSON shapes (only the elements used; R4) ----

type coding struct {
	System string `json:"system,omitempty"`
	Code   string `json:"code,omitempty"`
}

type codeableConcept struct {
	Coding []coding `json:"coding,omitempty"`
}

type identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
}

type period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

type consentActor struct {
	Role      codeableConcept `json:"role"`
	Reference reference       `json:"reference"`
}

type containedResource struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Identifier   []identifier      `json:"identifier,omitempty"`
	Type         []codeableConcept `json:"type,omitempty"` // Organization
	Code         []codeableConcept `json:"code,omitempty"` // PractitionerRole
}

type consentResource struct {
	ResourceType string              `json:"resourceType"`
	ID           string              `json:"id,omitempty"`
	Meta         json.RawMessage     `json:"meta,omitempty"`
	Text         json.RawMessage     `json:"text,omitempty"`
	Identifier   json.RawMessage     `json:"identifier,omitempty"`
	Contained    []containedResource `json:"contained,omitempty"`
	Status       string              `json:"status"`
	Scope        *codeableConcept    `json:"scope,omitempty"`
	Category     []codeableConcept   `json:"category,omitempty"`
	Patient      *reference          `json:"patient,omitempty"`
	DateTime     string              `json:"dateTime,omitempty"`
	Provision    *struct {
		Type    string         `json:"type,omitempty"`
		Period  *period        `json:"period,omitempty"`
		Actor   []consentActor `json:"actor,omitempty"`
		Purpose []coding       `json:"purpose,omitempty"`
	} `json:"provision,omitempty"`
}

// consentJSON renders r as an R4 Consent: provision.type permit|deny, the
// data holder as custodian (CST) and the requester as recipient (IRCP),
// both contained Organizations (URA and/or facility type), the requester's
// role as a contained PractitionerRole.
func consentJSON(r Registration, now time.Time) consentResource {
	c := consentResource{
		ResourceType: "Consent",
		ID:           r.ID,
		Status:       "active",
		Scope:        &codeableConcept{Coding: []coding{{System: systemConsentScope, Code: "patient-privacy"}}},
		Category:     []codeableConcept{{Coding: []coding{{System: systemDataCategory, Code: EventCodeTreatmentData}}}},
		Patient:      &reference{Identifier: &identifier{System: nl.SystemBSN, Value: r.PatientBSN}},
	}
	if !r.inForce(now) {
		c.Status = "inactive"
	}
	if !r.Created.IsZero() {
		c.DateTime = r.Created.UTC().Format(time.RFC3339Nano)
	}
	c.Provision = &struct {
		Type    string         `json:"type,omitempty"`
		Period  *period        `json:"period,omitempty"`
		Actor   []consentActor `json:"actor,omitempty"`
		Purpose []coding       `json:"purpose,omitempty"`
	}{Type: string(r.Effect), Purpose: []coding{{System: systemActReason, Code: r.Purpose}}}
	if !r.ValidFrom.IsZero() || !r.ValidUntil.IsZero() {
		p := &period{}
		if !r.ValidFrom.IsZero() {
			p.Start = r.ValidFrom.UTC().Format(time.RFC3339Nano)
		}
		if !r.ValidUntil.IsZero() {
			p.End = r.ValidUntil.UTC().Format(time.RFC3339Nano)
		}
		c.Provision.Period = p
	}
	org := func(id, ura, typ string) containedResource {
		o := containedResource{ResourceType: "Organization", ID: id}
		if ura != "" {
			o.Identifier = []identifier{{System: nl.SystemURA, Value: ura}}
		}
		if typ != "" {
			o.Type = []codeableConcept{{Coding: []coding{{System: systemFacilityType, Code: typ}}}}
		}
		return o
	}
	actor := func(role, ref string) consentActor {
		return consentActor{Role: codeableConcept{Coding: []coding{{System: systemParticipation, Code: role}}}, Reference: reference{Reference: "#" + ref}}
	}
	c.Contained = append(c.Contained, org("holder", r.HolderURA, r.HolderType))
	c.Provision.Actor = append(c.Provision.Actor, actor(roleCustodian, "holder"))
	if r.RequesterURA != "" || r.RequesterType != "" {
		c.Contained = append(c.Contained, org("requester", r.RequesterURA, r.RequesterType))
		c.Provision.Actor = append(c.Provision.Actor, actor(roleRecipient, "requester"))
	}
	if r.RequesterRole != "" {
		c.Contained = append(c.Contained, containedResource{ResourceType: "PractitionerRole", ID: "requester-role",
			Code: []codeableConcept{{Coding: []coding{{System: nl.SystemUZIRole, Code: r.RequesterRole}}}}})
		c.Provision.Actor = append(c.Provision.Actor, actor(roleRecipient, "requester-role"))
	}
	return c
}

// errInvalidResource: a FHIR resource is malformed or does not fit the
// profile; its message is safe to show the peer.
var errInvalidResource = errors.New("invalid resource")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errInvalidResource, fmt.Sprintf(format, a...))
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalid("malformed JSON: %s", jsonReason(err))
	}
	if d.More() {
		return invalid("trailing data after the resource")
	}
	return nil
}

// jsonReason keeps a JSON error message short and free of Go type names.
func jsonReason(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("wrong type at %q", ute.Field)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	return msg
}

// parseTime accepts FHIR date and dateTime values.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not a FHIR date or dateTime: %q", s)
}

// registrationFromConsent maps an R4 Consent (the shape consentJSON writes)
// to a registration. requireActive refuses status other than active (a
// portal registers consents in force); notifications also carry inactive
// ones.
func registrationFromConsent(c consentResource, requireActive bool) (Registration, error) {
	var r Registration
	if c.ResourceType != "Consent" {
		return r, invalid("resourceType must be Consent")
	}
	switch c.Status {
	case "active":
	case "inactive", "rejected":
		if requireActive {
			return r, invalid("Consent.status must be active; withdraw a consent with DELETE")
		}
		r.Revoked = time.Unix(0, 0).UTC()
	default:
		return r, invalid("Consent.status %q is not supported", c.Status)
	}
	r.ID = c.ID
	for _, cat := range c.Category {
		for _, cd := range cat.Coding {
			if cd.System == systemDataCategory && cd.Code != EventCodeTreatmentData {
				return r, invalid("only data category %s (treatment data) is supported", EventCodeTreatmentData)
			}
		}
	}
	if c.Patient == nil || c.Patient.Identifier == nil || nl.CanonicalSystem(c.Patient.Identifier.System) != nl.SystemBSN {
		return r, invalid("Consent.patient.identifier must be a BSN")
	}
	r.PatientBSN = c.Patient.Identifier.Value
	if c.Provision == nil {
		return r, invalid("Consent.provision is required")
	}
	r.Effect = Effect(c.Provision.Type)
	if p := c.Provision.Period; p != nil {
		var err error
		if p.Start != "" {
			if r.ValidFrom, err = parseTime(p.Start); err != nil {
				return r, invalid("Consent.provision.period.start: %s", err)
			}
		}
		if p.End != "" {
			if r.ValidUntil, err = parseTime(p.End); err != nil {
				return r, invalid("Consent.provision.period.end: %s", err)
			}
		}
	}
	switch len(c.Provision.Purpose) {
	case 0:
	case 1:
		pu := c.Provision.Purpose[0]
		if pu.System != systemActReason && pu.System != systemActReasonSTU3 && strings.TrimPrefix(pu.System, "urn:oid:") != oidPurposeOfUse {
			return r, invalid("Consent.provision.purpose must be an ActReason code")
		}
		r.Purpose = pu.Code
	default:
		return r, invalid("Consent.provision.purpose must have one coding")
	}
	contained := make(map[string]containedResource, len(c.Contained))
	for _, cr := range c.Contained {
		contained["#"+cr.ID] = cr
	}
	holders := 0
	for _, a := range c.Provision.Actor {
		role := ""
		for _, cd := range a.Role.Coding {
			if cd.System == systemParticipation {
				role = cd.Code
			}
		}
		cr, ok := contained[a.Reference.Reference]
		if !ok {
			return r, invalid("Consent.provision.actor must reference a contained resource")
		}
		ura, typ, code, err := containedParty(cr)
		if err != nil {
			return r, err
		}
		switch {
		case role == roleCustodian && cr.ResourceType == "Organization":
			holders++
			r.HolderURA, r.HolderType = ura, typ
		case role == roleRecipient && cr.ResourceType == "Organization":
			r.RequesterURA, r.RequesterType = ura, typ
		case role == roleRecipient && cr.ResourceType == "PractitionerRole":
			r.RequesterRole = code
		default:
			return r, invalid("Consent.provision.actor: role %q with a %s is not supported", role, cr.ResourceType)
		}
	}
	if holders != 1 {
		return r, invalid("Consent.provision.actor must name exactly one data holder (role CST)")
	}
	return r, nil
}

// containedParty reads the URA, facility type (Organization) or UZI role
// code (PractitionerRole) of a contained resource.
func containedParty(cr containedResource) (ura, typ, role string, err error) {
	for _, id := range cr.Identifier {
		if nl.CanonicalSystem(id.System) == nl.SystemURA {
			ura = id.Value
		}
	}
	for _, t := range cr.Type {
		for _, cd := range t.Coding {
			if facilityTypeSystem(cd.System) {
				typ = cd.Code
			}
		}
	}
	for _, t := range cr.Code {
		for _, cd := range t.Coding {
			if nl.CanonicalSystem(cd.System) == nl.SystemUZIRole {
				role = cd.Code
			}
		}
	}
	switch cr.ResourceType {
	case "Organization":
		if ura == "" && typ == "" {
			return "", "", "", invalid("a contained Organization needs an URA identifier or a facility type")
		}
	case "PractitionerRole":
		if role == "" {
			return "", "", "", invalid("a contained PractitionerRole needs an UZI role code")
		}
	default:
		return "", "", "", invalid("contained %s is not supported", cr.ResourceType)
	}
	return ura, typ, role, nil
}

// ---- Subscriptions ----

type extension struct {
	URL       string `json:"url"`
	ValueDate string `json:"valueDate,omitempty"`
	ValueOid  string `json:"valueOid,omitempty"`
}

type subscriptionResource struct {
	ResourceType string          `json:"resourceType"`
	ID           string          `json:"id,omitempty"`
	Meta         json.RawMessage `json:"meta,omitempty"`
	Text         json.RawMessage `json:"text,omitempty"`
	Extension    []extension     `json:"extension,omitempty"`
	Status       string          `json:"status"`
	Reason       string          `json:"reason"`
	Criteria     string          `json:"criteria"`
	End          string          `json:"end,omitempty"`
	Error        string          `json:"error,omitempty"`
	Channel      struct {
		Type     string   `json:"type"`
		Endpoint string   `json:"endpoint,omitempty"`
		Payload  string   `json:"payload,omitempty"`
		Header   []string `json:"header,omitempty"`
	} `json:"channel"`
}

var (
	oidValue  = regexp.MustCompile(`^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$`)
	dateValue = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
)

// errUnsupportedPayload: the subscriber asked for a notification format the
// service cannot send.
var errUnsupportedPayload = errors.New("unsupported payload")

// parseSubscription validates a Mitz subscription (FHIR R4 JSON) and
// returns what the store keeps.
func parseSubscription(body []byte) (Subscription, error) {
	var s Subscription
	var res subscriptionResource
	if err := decodeStrict(body, &res); err != nil {
		return s, err
	}
	if res.ResourceType != "Subscription" {
		return s, invalid("resourceType must be Subscription")
	}
	if res.Status != "requested" {
		return s, invalid("Subscription.status must be requested")
	}
	if res.Reason != subscriptionReason {
		return s, invalid("Subscription.reason must be %s", subscriptionReason)
	}
	rest, ok := strings.CutPrefix(res.Criteria, subscriptionCriteria)
	if !ok {
		return s, invalid("Subscription.criteria must start with %s", subscriptionCriteria)
	}
	params, err := url.ParseQuery(rest)
	if err != nil {
		return s, invalid("Subscription.criteria is not a valid query")
	}
	for k, v := range params {
		switch k {
		case "_query", "patientid", "providerid", "providertype":
			if len(v) != 1 {
				return s, invalid("Subscription.criteria: %s must occur once", k)
			}
		default:
			return s, invalid("Subscription.criteria: parameter %s is not supported", k)
		}
	}
	if params.Get("_query") != "otv" {
		return s, invalid("Subscription.criteria must have _query=otv")
	}
	s.PatientBSN, s.ProviderURA, s.ProviderType = params.Get("patientid"), params.Get("providerid"), params.Get("providertype")
	if nl.ValidateBSN(s.PatientBSN) != nil {
		return s, invalid("Subscription.criteria: patientid must be a valid BSN")
	}
	if nl.ValidateURA(s.ProviderURA) != nil {
		return s, invalid("Subscription.criteria: providerid must be an URA (8 digits)")
	}
	if !validCode(s.ProviderType) {
		return s, invalid("Subscription.criteria: providertype must be a facility type code")
	}
	if res.Channel.Type != "rest-hook" {
		return s, invalid("Subscription.channel.type must be rest-hook")
	}
	u, err := url.Parse(res.Channel.Endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return s, invalid("Subscription.channel.endpoint must be an absolute https URL")
	}
	s.Endpoint = u.String()
	if len(res.Channel.Header) > 0 {
		return s, invalid("Subscription.channel.header is not supported: notifications are authenticated by mTLS")
	}
	payload, _, _ := strings.Cut(res.Channel.Payload, ";")
	switch strings.TrimSpace(payload) {
	case "", mimeFHIRJSON:
		s.Payload = mimeFHIRJSON
	default:
		return s, fmt.Errorf("%w: notifications are sent as %s only", errUnsupportedPayload, mimeFHIRJSON)
	}
	seen := map[string]bool{}
	for _, e := range res.Extension {
		if seen[e.URL] {
			return s, invalid("extension %s occurs more than once", e.URL)
		}
		seen[e.URL] = true
		switch e.URL {
		case extBirthDate:
			if !dateValue.MatchString(e.ValueDate) || e.ValueOid != "" {
				return s, invalid("extension %s needs a valueDate (YYYY-MM-DD)", e.URL)
			}
			if _, err := time.Parse("2006-01-02", e.ValueDate); err != nil {
				return s, invalid("extension %s needs a valid date", e.URL)
			}
			s.BirthDate = e.ValueDate
		case extGatewaySystem, extSourceSystem:
			if !oidValue.MatchString(e.ValueOid) || e.ValueDate != "" {
				return s, invalid("extension %s needs a valueOid (urn:oid:...)", e.URL)
			}
			if e.URL == extGatewaySystem {
				s.GatewaySystem = e.ValueOid
			} else {
				s.SourceSystem = e.ValueOid
			}
		default:
			return s, invalid("extension %s is not supported", e.URL)
		}
	}
	return s, nil
}

// subscriptionJSON renders a stored subscription (status active).
func subscriptionJSON(s Subscription) subscriptionResource {
	var res subscriptionResource
	res.ResourceType, res.ID, res.Status, res.Reason = "Subscription", s.ID, "active", subscriptionReason
	res.Criteria = subscriptionCriteria + criteriaQuery(s.PatientBSN, s.ProviderURA, s.ProviderType)
	res.Channel.Type, res.Channel.Endpoint, res.Channel.Payload = "rest-hook", s.Endpoint, s.Payload
	if s.BirthDate != "" {
		res.Extension = append(res.Extension, extension{URL: extBirthDate, ValueDate: s.BirthDate})
	}
	if s.GatewaySystem != "" {
		res.Extension = append(res.Extension, extension{URL: extGatewaySystem, ValueOid: s.GatewaySystem})
	}
	if s.SourceSystem != "" {
		res.Extension = append(res.Extension, extension{URL: extSourceSystem, ValueOid: s.SourceSystem})
	}
	return res
}

// criteriaQuery is the query of Subscription.criteria, in Mitz's order.
func criteriaQuery(bsn, ura, typ string) string {
	return "_query=otv&patientid=" + url.QueryEscape(bsn) + "&providerid=" + url.QueryEscape(ura) +
		"&providertype=" + url.QueryEscape(typ)
}

// ---- Notifications ----

type bundleEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
}

type bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Type         string        `json:"type"`
	Timestamp    string        `json:"timestamp,omitempty"`
	Entry        []bundleEntry `json:"entry"`
}

// notificationBundle renders what a subscriber is told when a consent of its
// patient changes: as Mitz does, a transaction Bundle with one Consent per
// registration in force that concerns the subscriber (none left means the
// patient no longer consents), and the Patient.
func notificationBundle(sub Subscription, regs []Registration, now time.Time) ([]byte, error) {
	b := bundle{ResourceType: "Bundle", ID: uuid.NewString(), Type: "transaction", Timestamp: now.UTC().Format(time.RFC3339Nano)}
	add := func(typ string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		e := bundleEntry{FullURL: "urn:uuid:" + uuid.NewString(), Resource: raw}
		e.Request.Method, e.Request.URL = "POST", typ
		b.Entry = append(b.Entry, e)
		return nil
	}
	for _, r := range regs {
		if err := add("Consent", consentJSON(r, now)); err != nil {
			return nil, err
		}
	}
	patient := map[string]any{
		"resourceType": "Patient",
		"identifier":   []identifier{{System: nl.SystemBSN, Value: sub.PatientBSN}},
	}
	if sub.BirthDate != "" {
		patient["birthDate"] = sub.BirthDate
	}
	if err := add("Patient", patient); err != nil {
		return nil, err
	}
	return json.Marshal(b)
}

// Notice is what a consent notification tells a subscriber: the patient and
// the registrations that now concern it.
type Notice struct {
	PatientBSN    string
	Registrations []Registration
}

// ParseNotice reads a consent notification Bundle (as the Server sends it)
// at a subscriber's rest-hook endpoint. Consents that are no longer in force
// come back with Revoked set.
func ParseNotice(body []byte) (Notice, error) {
	var n Notice
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return n, invalid("malformed JSON: %s", jsonReason(err))
	}
	if b.ResourceType != "Bundle" {
		return n, invalid("a notification must be a Bundle")
	}
	for _, e := range b.Entry {
		var head struct {
			ResourceType string       `json:"resourceType"`
			Identifier   []identifier `json:"identifier"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			return n, invalid("malformed entry: %s", jsonReason(err))
		}
		switch head.ResourceType {
		case "Consent":
			var c consentResource
			if err := json.Unmarshal(e.Resource, &c); err != nil {
				return n, invalid("malformed Consent: %s", jsonReason(err))
			}
			r, err := registrationFromConsent(c, false)
			if err != nil {
				return n, err
			}
			n.Registrations = append(n.Registrations, r)
		case "Patient":
			for _, id := range head.Identifier {
				if nl.CanonicalSystem(id.System) == nl.SystemBSN {
					n.PatientBSN = id.Value
				}
			}
		}
	}
	if nl.ValidateBSN(n.PatientBSN) != nil {
		return n, invalid("the notification names no valid patient BSN")
	}
	for _, r := range n.Registrations {
		if r.PatientBSN != n.PatientBSN {
			return n, invalid("a Consent is about another patient than the notification")
		}
	}
	return n, nil
}

// PermitsHolder reports whether the notice leaves the data holder (URA and
// facility type) with consent in force at t for at least one requester:
// whether Evaluate permits the requester some permit registration names
// (its requester scope, asking of this holder). A holder without it has no
// consent left to make the patient's data consultable, so its holding at
// the referral index should be withdrawn.
func (n Notice) PermitsHolder(holderURA, holderType string, t time.Time) bool {
	regs := make([]Registration, len(n.Registrations))
	for i, r := range n.Registrations {
		if r.Purpose == "" {
			r.Purpose = PurposeTreatment // as Validate defaults it
		}
		regs[i] = r
	}
	for _, p := range regs {
		if p.Effect != Permit {
			continue
		}
		q := Question{PatientBSN: n.PatientBSN, DataHolderURA: holderURA, DataHolderType: holderType,
			RequesterURA: p.RequesterURA, RequesterType: p.RequesterType, RequesterRole: p.RequesterRole, Purpose: PurposeTreatment}
		if Evaluate(regs, q, t) == DecisionPermit {
			return true
		}
	}
	return false
}
