package localization

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/localization/index"
	"github.com/schakel-nl/schakel/localization/oprf"
	"github.com/schakel-nl/schakel/nl"
)

// Systems and extensions of the wire format. The custodian extension is the
// one of the generic-functions localization List profile; the others are
// Schakel's, because its pseudonyms are not NVI pseudonyms.
const (
	// SystemPseudonym names a Schakel index pseudonym: "<key id>:<base64url>".
	SystemPseudonym = "https://schakel.dev/fhir/NamingSystem/localization-pseudonym"
	// ExtCustodian carries the data holder's URA on a localization List.
	ExtCustodian = "http://minvws.github.io/generiekefuncties-docs/StructureDefinition/nl-gf-localization-custodian"
	// ExtSourceType carries the data holder's provider type on a List.
	ExtSourceType = "https://schakel.dev/fhir/StructureDefinition/localization-source-type"
	// SystemSourceType is the code system of provider types: the Vektis /
	// UZI organisation type list (e.g. Z3 hospital), the one Mitz's closed
	// question uses for the facility type.
	SystemSourceType = "urn:oid:2.16.840.1.113883.2.4.15.1060"
	// SystemListEmptyReason: a localization List is empty by design.
	SystemListEmptyReason = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
)

// pseudonymDomain separates this use of the OPRF key from any other.
const pseudonymDomain = "schakel/localization/bsn/v1"

// Pseudonym is a patient's identity in one index: the OPRF output of the BSN
// under the index's key, with that key's ID.
type Pseudonym struct {
	KeyID string
	Value []byte
}

// String is the wire form, "<key id>:<base64url value>".
func (p Pseudonym) String() string {
	return p.KeyID + ":" + base64.RawURLEncoding.EncodeToString(p.Value)
}

// ParsePseudonym reads the wire form.
func ParsePseudonym(s string) (Pseudonym, error) {
	kid, val, ok := strings.Cut(s, ":")
	if !ok || kid == "" || len(kid) > 64 {
		return Pseudonym{}, errors.New("pseudonym is not <key id>:<value>")
	}
	b, err := base64.RawURLEncoding.DecodeString(val)
	if err != nil || len(b) != index.PseudonymSize {
		return Pseudonym{}, fmt.Errorf("pseudonym value is not %d base64url bytes", index.PseudonymSize)
	}
	return Pseudonym{KeyID: kid, Value: b}, nil
}

// JSON shapes (FHIR R4), only the elements this service reads or writes.
type (
	identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value,omitempty"`
	}
	coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code,omitempty"`
		Display string `json:"display,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	reference struct {
		Reference  string      `json:"reference,omitempty"`
		Type       string      `json:"type,omitempty"`
		Identifier *identifier `json:"identifier,omitempty"`
	}
	extension struct {
		URL            string     `json:"url"`
		ValueReference *reference `json:"valueReference,omitempty"`
		ValueCoding    *coding    `json:"valueCoding,omitempty"`
		ValueString    *string    `json:"valueString,omitempty"`
	}
	meta struct {
		LastUpdated string `json:"lastUpdated,omitempty"`
	}
	listResource struct {
		ResourceType string           `json:"resourceType"`
		ID           string           `json:"id,omitempty"`
		Meta         *meta            `json:"meta,omitempty"`
		Extension    []extension      `json:"extension,omitempty"`
		Status       string           `json:"status"`
		Mode         string           `json:"mode"`
		Code         *codeableConcept `json:"code,omitempty"`
		Subject      *reference       `json:"subject,omitempty"`
		Date         string           `json:"date,omitempty"`
		Source       *reference       `json:"source,omitempty"`
		EmptyReason  *codeableConcept `json:"emptyReason,omitempty"`
	}
	parameter struct {
		Name              string      `json:"name"`
		ValueString       *string     `json:"valueString,omitempty"`
		ValueCode         *string     `json:"valueCode,omitempty"`
		ValueBase64Binary *string     `json:"valueBase64Binary,omitempty"`
		ValueCoding       *coding     `json:"valueCoding,omitempty"`
		ValueIdentifier   *identifier `json:"valueIdentifier,omitempty"`
	}
	parameters struct {
		ResourceType string      `json:"resourceType"`
		Parameter    []parameter `json:"parameter"`
	}
	organization struct {
		ResourceType string            `json:"resourceType"`
		ID           string            `json:"id"`
		Identifier   []identifier      `json:"identifier"`
		Extension    []extension       `json:"extension,omitempty"`
		Type         []codeableConcept `json:"type,omitempty"`
	}
	bundleEntry struct {
		FullURL  string          `json:"fullUrl,omitempty"`
		Resource json.RawMessage `json:"resource"`
		Search   *struct {
			Mode string `json:"mode"`
		} `json:"search,omitempty"`
	}
	bundle struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Timestamp    string        `json:"timestamp,omitempty"`
		Total        *int          `json:"total,omitempty"`
		Entry        []bundleEntry `json:"entry"`
	}
)

// invalid is a 400 with code invalid at expression.
func invalid(expr, format string, args ...any) *fhir.Error {
	e := fhir.Errorf(http.StatusBadRequest, "invalid", format, args...)
	if expr != "" {
		e.Issues[0].Expression = []string{expr}
	}
	return e
}

// decodeResource parses body as one JSON object of resourceType want.
func decodeResource(body []byte, want string, v any) error {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return invalid("", "the body is not a JSON resource")
	}
	if head.ResourceType != want {
		return invalid("resourceType", "expected a %s resource, got %q", want, head.ResourceType)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return invalid(want+"."+te.Field, "%s.%s has the wrong JSON type", want, te.Field)
		}
		return invalid("", "malformed %s", want)
	}
	return nil
}

// registration is what a List create asks for.
type registration struct {
	HolderURA   string
	CareContext index.Coding
	SourceType  string
	Pseudonym   Pseudonym
}

// parseList validates a localization List for create.
func parseList(l *listResource) (registration, error) {
	var reg registration
	if l.Status != "current" {
		return reg, invalid("List.status", "List.status must be current")
	}
	if l.Mode != "working" {
		return reg, invalid("List.mode", "List.mode must be working")
	}
	var custodians, types int
	for _, ext := range l.Extension {
		switch ext.URL {
		case ExtCustodian:
			custodians++
			if ext.ValueReference == nil || ext.ValueReference.Identifier == nil ||
				nl.CanonicalSystem(ext.ValueReference.Identifier.System) != nl.SystemURA {
				return reg, invalid("List.extension('custodian')", "the custodian must be an identifier of system %s", nl.SystemURA)
			}
			reg.HolderURA = ext.ValueReference.Identifier.Value
			if err := nl.ValidateURA(reg.HolderURA); err != nil {
				return reg, invalid("List.extension('custodian')", "the custodian is not a valid URA")
			}
		case ExtSourceType:
			types++
			if ext.ValueCoding == nil || !validCode(ext.ValueCoding.Code) ||
				(ext.ValueCoding.System != "" && ext.ValueCoding.System != SystemSourceType) {
				return reg, invalid("List.extension('source-type')", "the source type must be a code of system %s", SystemSourceType)
			}
			reg.SourceType = ext.ValueCoding.Code
		}
	}
	if custodians != 1 {
		return reg, invalid("List.extension('custodian')", "a localization List needs exactly one custodian extension, found %d", custodians)
	}
	if types != 1 {
		return reg, invalid("List.extension('source-type')", "a localization List needs exactly one source-type extension (%s), found %d", ExtSourceType, types)
	}
	cc, err := singleCoding(l.Code, "List.code")
	if err != nil {
		return reg, err
	}
	reg.CareContext = cc
	if l.Subject == nil || l.Subject.Identifier == nil || l.Subject.Identifier.System != SystemPseudonym {
		return reg, invalid("List.subject.identifier", "the subject must be an identifier of system %s (never a BSN)", SystemPseudonym)
	}
	p, err := ParsePseudonym(l.Subject.Identifier.Value)
	if err != nil {
		return reg, invalid("List.subject.identifier.value", "%v", err)
	}
	reg.Pseudonym = p
	return reg, nil
}

// singleCoding reads a CodeableConcept that must hold one coding with system
// and code.
func singleCoding(cc *codeableConcept, expr string) (index.Coding, error) {
	if cc == nil || len(cc.Coding) != 1 {
		return index.Coding{}, invalid(expr, "%s must hold exactly one coding", expr)
	}
	c := cc.Coding[0]
	if c.System == "" || !validCode(c.Code) || len(c.System) > 256 {
		return index.Coding{}, invalid(expr, "%s needs a system and a code", expr)
	}
	return index.Coding{System: c.System, Code: c.Code}, nil
}

// validCode: a FHIR code (no leading/trailing or double whitespace), at most
// 128 characters.
func validCode(s string) bool {
	return s != "" && len(s) <= 128 && strings.TrimSpace(s) == s && !strings.Contains(s, "  ")
}

// listJSON renders an entry. The subject is left out: a response never
// carries a patient identifier.
func listJSON(e index.Entry) []byte {
	l := listResource{
		ResourceType: "List",
		ID:           e.ID,
		Meta:         &meta{LastUpdated: e.Created.UTC().Format("2006-01-02T15:04:05.000000Z07:00")},
		Extension: []extension{
			{URL: ExtCustodian, ValueReference: &reference{Type: "Organization", Identifier: &identifier{System: nl.SystemURA, Value: e.HolderURA}}},
			{URL: ExtSourceType, ValueCoding: &coding{System: SystemSourceType, Code: e.SourceType}},
		},
		Status:      "current",
		Mode:        "working",
		Code:        &codeableConcept{Coding: []coding{{System: e.CareContext.System, Code: e.CareContext.Code}}},
		Date:        e.Created.UTC().Format("2006-01-02T15:04:05Z07:00"),
		EmptyReason: &codeableConcept{Coding: []coding{{System: SystemListEmptyReason, Code: "withheld"}}},
	}
	if e.Device != "" {
		l.Source = &reference{Type: "Device", Identifier: &identifier{System: nl.SystemUZISys, Value: e.Device}}
	}
	b, _ := json.Marshal(l)
	return b
}

// localizeRequest is the content of a $localize Parameters resource.
type localizeRequest struct {
	Pseudonym    Pseudonym
	RequesterURA string
	CareContext  index.Coding
	SourceTypes  []string
	// Binding is the patient binding hits are to carry (PatientBinding);
	// empty: the requester asked for no hits.
	Binding string
}

// parseLocalize validates $localize parameters. Both names the NVI has used
// for the provider-type filter are accepted.
func parseLocalize(p *parameters) (localizeRequest, error) {
	var req localizeRequest
	var seenPseudonym, seenRequester, seenCC bool
	for i, par := range p.Parameter {
		expr := fmt.Sprintf("Parameters.parameter[%d]", i)
		switch par.Name {
		case "pseudonym":
			if seenPseudonym || par.ValueString == nil {
				return req, invalid(expr, "pseudonym must occur once, as valueString")
			}
			seenPseudonym = true
			ps, err := ParsePseudonym(*par.ValueString)
			if err != nil {
				return req, invalid(expr, "%v", err)
			}
			req.Pseudonym = ps
		case "requester":
			if seenRequester || par.ValueIdentifier == nil || nl.CanonicalSystem(par.ValueIdentifier.System) != nl.SystemURA {
				return req, invalid(expr, "requester must occur once, as valueIdentifier of system %s", nl.SystemURA)
			}
			seenRequester = true
			if err := nl.ValidateURA(par.ValueIdentifier.Value); err != nil {
				return req, invalid(expr, "requester is not a valid URA")
			}
			req.RequesterURA = par.ValueIdentifier.Value
		case "careContext":
			if seenCC || par.ValueCoding == nil {
				return req, invalid(expr, "careContext must occur once, as valueCoding")
			}
			seenCC = true
			cc, err := singleCoding(&codeableConcept{Coding: []coding{*par.ValueCoding}}, expr)
			if err != nil {
				return req, err
			}
			req.CareContext = cc
		case "patientBinding":
			if req.Binding != "" || par.ValueString == nil {
				return req, invalid(expr, "patientBinding must occur once, as valueString")
			}
			if b, err := base64.RawURLEncoding.DecodeString(*par.ValueString); err != nil || len(b) != sha256.Size {
				return req, invalid(expr, "patientBinding must be %d bytes, base64url without padding", sha256.Size)
			}
			req.Binding = *par.ValueString
		case "sourceType", "filterOrgType":
			if par.ValueCode == nil || !validCode(*par.ValueCode) {
				return req, invalid(expr, "%s must be a valueCode", par.Name)
			}
			if len(req.SourceTypes) >= 32 {
				return req, invalid(expr, "at most 32 provider types")
			}
			if !slices.Contains(req.SourceTypes, *par.ValueCode) {
				req.SourceTypes = append(req.SourceTypes, *par.ValueCode)
			}
		default:
			return req, invalid(expr, "unknown parameter %q", par.Name)
		}
	}
	switch {
	case !seenPseudonym:
		return req, invalid("Parameters", "the pseudonym parameter is required")
	case !seenRequester:
		return req, invalid("Parameters", "the requester parameter (URA) is required")
	case !seenCC:
		return req, invalid("Parameters", "the careContext parameter is required")
	}
	return req, nil
}

// organizationsBundle renders the answer of $localize: one Organization per
// holder URA, its provider types as Organization.type, and any warnings as
// an OperationOutcome entry (search.mode outcome).
func organizationsBundle(holders []index.Holder, hits map[string]string, warnings []fhir.Issue, now string) []byte {
	b := bundle{ResourceType: "Bundle", Type: "searchset", Timestamp: now, Entry: []bundleEntry{}}
	var orgs []organization
	for _, h := range holders {
		if n := len(orgs); n > 0 && orgs[n-1].ID == h.URA {
			orgs[n-1].Type = append(orgs[n-1].Type, codeableConcept{Coding: []coding{{System: SystemSourceType, Code: h.SourceType}}})
			continue
		}
		orgs = append(orgs, organization{
			ResourceType: "Organization", ID: h.URA,
			Identifier: []identifier{{System: nl.SystemURA, Value: h.URA}},
			Type:       []codeableConcept{{Coding: []coding{{System: SystemSourceType, Code: h.SourceType}}}},
		})
	}
	for _, o := range orgs {
		if hit, ok := hits[o.ID]; ok {
			o.Extension = []extension{{URL: ExtHit, ValueString: &hit}}
		}
		raw, _ := json.Marshal(o)
		b.Entry = append(b.Entry, bundleEntry{FullURL: "Organization/" + o.ID, Resource: raw, Search: &struct {
			Mode string `json:"mode"`
		}{"match"}})
	}
	total := len(orgs)
	b.Total = &total
	if len(warnings) > 0 {
		b.Entry = append(b.Entry, bundleEntry{Resource: fhir.OperationOutcome(warnings...), Search: &struct {
			Mode string `json:"mode"`
		}{"outcome"}})
	}
	out, _ := json.Marshal(b)
	return out
}

// parseEvaluate reads the $oprf-evaluate input.
func parseEvaluate(p *parameters) ([]byte, error) {
	if len(p.Parameter) != 1 || p.Parameter[0].Name != "blindedElement" || p.Parameter[0].ValueBase64Binary == nil {
		return nil, invalid("Parameters", "expected exactly one parameter blindedElement (valueBase64Binary)")
	}
	el, err := base64.StdEncoding.DecodeString(*p.Parameter[0].ValueBase64Binary)
	if err != nil || len(el) != oprf.ElementSize {
		return nil, invalid("Parameters.parameter[0]", "blindedElement must be %d bytes, base64", oprf.ElementSize)
	}
	return el, nil
}
