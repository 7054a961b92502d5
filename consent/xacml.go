package consent

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/schakel-nl/schakel/nl"
)

// Namespaces of the closed question (SPEC §9).
const (
	nsSOAP    = "http://www.w3.org/2003/05/soap-envelope"
	nsWSA     = "http://www.w3.org/2005/08/addressing"
	nsQuery   = "urn:oasis:names:tc:xacml:3.0:profile:saml2.0:v2:schema:protocol:wd-14"
	nsXACMLSA = "urn:oasis:names:tc:xacml:3.0:profile:saml2.0:v2:schema:assertion:wd-14"
	nsXACML   = "urn:oasis:names:tc:xacml:3.0:core:schema:wd-17"
	nsHL7     = "urn:hl7-org:v3"
	nsSAMLP   = "urn:oasis:names:tc:SAML:2.0:protocol"
	nsSAML    = "urn:oasis:names:tc:SAML:2.0:assertion"

	// ActionQuery and ActionResponse are the WS-Addressing actions.
	ActionQuery    = "XACMLAuthorizationDecisionQueryRequest"
	ActionResponse = "XACMLAuthorizationDecisionQueryResponse"
	wsaAnonymous   = "http://www.w3.org/2005/08/addressing/anonymous"
	wsaFaultAction = "http://www.w3.org/2005/08/addressing/fault"

	// ClosedQuestionPath is where the closed question is asked.
	ClosedQuestionPath = "/geslotenautorisatievraag/xacml3"

	dataTypeII = "urn:hl7-org:v3#II"
	dataTypeCV = "urn:hl7-org:v3#CV"

	catResource    = "urn:oasis:names:tc:xacml:3.0:attribute-category:resource"
	catAction      = "urn:oasis:names:tc:xacml:3.0:attribute-category:action"
	catSubject     = "urn:oasis:names:tc:xacml:1.0:subject-category:access-subject"
	catEnvironment = "urn:oasis:names:tc:xacml:3.0:attribute-category:environment"

	oidFacilityType = "2.16.840.1.113883.2.4.15.1060"
	oidEventCode    = "2.16.840.1.113883.2.4.3.111.5.10.1"
	oidPurposeOfUse = "2.16.840.1.113883.1.11.20448"

	// XACML status codes (XACML 3.0 core §B.8).
	statusOK               = "urn:oasis:names:tc:xacml:1.0:status:ok"
	statusMissingAttribute = "urn:oasis:names:tc:xacml:1.0:status:missing-attribute"
	statusSyntaxError      = "urn:oasis:names:tc:xacml:1.0:status:syntax-error"
	statusProcessingError  = "urn:oasis:names:tc:xacml:1.0:status:processing-error"

	samlSuccess = "urn:oasis:names:tc:SAML:2.0:status:Success"
)

// attrSpec is one attribute of the closed question.
type attrSpec struct {
	category, id, dataType, oid string // oid: II root or CV codeSystem
	get                         func(*Question) *string
}

// attrSpecs are exactly the attributes of SPEC §9, in wire order.
var attrSpecs = []attrSpec{
	{catResource, "urn:oasis:names:tc:xacml:2.0:resource:resource-id", dataTypeII, nl.OIDBSN,
		func(q *Question) *string { return &q.PatientBSN }},
	{catResource, "urn:ihe:iti:appc:2016:document-entry:healthcare-facility-type-code", dataTypeCV, oidFacilityType,
		func(q *Question) *string { return &q.DataHolderType }},
	{catResource, "urn:ihe:iti:appc:2016:author-institution:id", dataTypeII, nl.OIDURA,
		func(q *Question) *string { return &q.DataHolderURA }},
	{catAction, "urn:ihe:iti:appc:2016:document-entry:event-code", dataTypeCV, oidEventCode, nil},
	{catSubject, "urn:oasis:names:tc:xacml:2.0:subject:role", dataTypeCV, nl.OIDUZIRole,
		func(q *Question) *string { return &q.RequesterRole }},
	{catSubject, "urn:ihe:iti:xua:2017:subject:provider-identifier", dataTypeII, nl.OIDUZIPers,
		func(q *Question) *string { return &q.RequesterUZI }},
	{catSubject, "urn:nl:otv:names:tc:1.0:subject:provider-institution", dataTypeII, nl.OIDURA,
		func(q *Question) *string { return &q.RequesterURA }},
	{catSubject, "urn:nl:otv:names:tc:1.0:subject:consulting-healthcare-facility-type-code", dataTypeCV, oidFacilityType,
		func(q *Question) *string { return &q.RequesterType }},
	{catEnvironment, "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", dataTypeCV, oidPurposeOfUse,
		func(q *Question) *string { return &q.Purpose }},
}

var categoryIDs = map[string]string{catResource: "resource", catAction: "action", catSubject: "subject", catEnvironment: "environment"}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) //nolint:errcheck // strings.Builder does not fail
	return b.String()
}

// buildQuery renders the SOAP request of a closed question (q normalized).
func buildQuery(q Question, messageID, to string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<soap:Envelope xmlns:soap="` + nsSOAP + `" xmlns:wsa="` + nsWSA + `" xmlns:xacml-samlp="` + nsQuery + `">`)
	b.WriteString(`<soap:Header><wsa:Action>` + ActionQuery + `</wsa:Action>`)
	b.WriteString(`<wsa:MessageID>` + esc(messageID) + `</wsa:MessageID>`)
	b.WriteString(`<wsa:ReplyTo><wsa:Address>` + wsaAnonymous + `</wsa:Address></wsa:ReplyTo>`)
	b.WriteString(`<wsa:To>` + esc(to) + `</wsa:To></soap:Header>`)
	b.WriteString(`<soap:Body><xacml-samlp:XACMLAuthzDecisionQuery>`)
	b.WriteString(`<Request xmlns="` + nsXACML + `" CombinedDecision="false" ReturnPolicyIdList="false">`)
	cat := ""
	for _, a := range attrSpecs {
		if a.category != cat {
			if cat != "" {
				b.WriteString(`</Attributes>`)
			}
			cat = a.category
			b.WriteString(`<Attributes Category="` + cat + `">`)
		}
		b.WriteString(`<Attribute AttributeId="` + a.id + `" IncludeInResult="false"><AttributeValue DataType="` + a.dataType + `">`)
		v := EventCodeTreatmentData
		if a.get != nil {
			v = *a.get(&q)
		}
		if a.dataType == dataTypeII {
			b.WriteString(`<InstanceIdentifier xmlns="` + nsHL7 + `" root="` + a.oid + `" extension="` + esc(v) + `"/>`)
		} else {
			b.WriteString(`<CodedValue xmlns="` + nsHL7 + `" code="` + esc(v) + `" codeSystem="` + a.oid + `"/>`)
		}
		b.WriteString(`</AttributeValue></Attribute>`)
	}
	b.WriteString(`</Attributes></Request></xacml-samlp:XACMLAuthzDecisionQuery></soap:Body></soap:Envelope>`)
	return b.Bytes()
}

// soapFault is a request the server refuses without deciding: answered with
// a SOAP 1.2 Fault.
type soapFault struct {
	code    string // Sender | Receiver
	subcode string // qualified, e.g. wsa:ActionNotSupported; may be empty
	reason  string // safe to show the peer
}

func (f *soapFault) Error() string { return "SOAP fault " + f.code + ": " + f.reason }

func senderFault(subcode, format string, a ...any) *soapFault {
	return &soapFault{code: "Sender", subcode: subcode, reason: fmt.Sprintf(format, a...)}
}

// indeterminate is a well-formed question the service cannot decide on:
// answered with Decision Indeterminate and an XACML status code.
type indeterminate struct {
	status  string
	message string
}

func (e *indeterminate) Error() string { return "indeterminate: " + e.message }

// maxXMLDepth bounds element nesting; the closed question is 8 deep.
const maxXMLDepth = 32

// checkSafeXML refuses what encoding/xml would let through but a strict
// parser must not: DOCTYPE and other directives (entity declarations, XXE),
// processing instructions other than the XML declaration, and deep nesting.
// It also makes sure the document is well-formed, with one root element.
func checkSafeXML(body []byte) error {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	depth, roots := 0, 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return errors.New("DOCTYPE and other XML directives are refused")
		case xml.ProcInst:
			if t.Target != "xml" {
				return errors.New("XML processing instructions are refused")
			}
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
			if depth > maxXMLDepth {
				return errors.New("XML nested too deeply")
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text outside the root element")
			}
		}
	}
	if roots != 1 || depth != 0 {
		return errors.New("not well-formed XML: want exactly one root element")
	}
	// RawToken does not check that end tags match; a full pass does.
	d = xml.NewDecoder(bytes.NewReader(body))
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("not well-formed XML: %w", err)
		}
	}
}

type wireRequest struct {
	XMLName xml.Name `xml:"http://www.w3.org/2003/05/soap-envelope Envelope"`
	Header  *struct {
		Action    []string `xml:"http://www.w3.org/2005/08/addressing Action"`
		MessageID []string `xml:"http://www.w3.org/2005/08/addressing MessageID"`
		To        []string `xml:"http://www.w3.org/2005/08/addressing To"`
	} `xml:"http://www.w3.org/2003/05/soap-envelope Header"`
	Body *struct {
		Queries []struct {
			Requests []wireXACMLRequest `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 Request"`
			Other    []anyElement       `xml:",any"`
		} `xml:"urn:oasis:names:tc:xacml:3.0:profile:saml2.0:v2:schema:protocol:wd-14 XACMLAuthzDecisionQuery"`
		Other []anyElement `xml:",any"`
	} `xml:"http://www.w3.org/2003/05/soap-envelope Body"`
}

type anyElement struct {
	XMLName xml.Name
}

type wireXACMLRequest struct {
	CombinedDecision string `xml:"CombinedDecision,attr"`
	Attributes       []struct {
		Category  string `xml:"Category,attr"`
		Attribute []struct {
			ID     string `xml:"AttributeId,attr"`
			Values []struct {
				DataType string `xml:"DataType,attr"`
				II       []struct {
					Root      string `xml:"root,attr"`
					Extension string `xml:"extension,attr"`
				} `xml:"urn:hl7-org:v3 InstanceIdentifier"`
				CV []struct {
					Code       string `xml:"code,attr"`
					CodeSystem string `xml:"codeSystem,attr"`
				} `xml:"urn:hl7-org:v3 CodedValue"`
				Other []anyElement `xml:",any"`
				Text  string       `xml:",chardata"`
			} `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 AttributeValue"`
		} `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 Attribute"`
	} `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 Attributes"`
}

// parseQuery reads a closed question. It returns the request's MessageID
// (when there is one) with either the question, a *soapFault for a request
// that is not a closed question at all, or an *indeterminate for a closed
// question whose attributes are missing, malformed or unsupported.
func parseQuery(body []byte) (messageID string, q Question, err error) {
	if err := checkSafeXML(body); err != nil {
		return "", q, senderFault("", "%s", err.Error())
	}
	var env wireRequest
	if err := xml.Unmarshal(body, &env); err != nil {
		return "", q, senderFault("", "not a SOAP 1.2 envelope")
	}
	if env.Header == nil {
		return "", q, senderFault("wsa:MessageAddressingHeaderRequired", "SOAP Header with WS-Addressing is required")
	}
	if len(env.Header.MessageID) != 1 || !strings.HasPrefix(strings.TrimSpace(env.Header.MessageID[0]), "urn:uuid:") {
		return "", q, senderFault("wsa:MessageAddressingHeaderRequired", "exactly one wsa:MessageID (urn:uuid:...) is required")
	}
	messageID = strings.TrimSpace(env.Header.MessageID[0])
	if _, err := uuid.Parse(strings.TrimPrefix(messageID, "urn:uuid:")); err != nil {
		return "", q, senderFault("wsa:InvalidAddressingHeader", "wsa:MessageID is not a urn:uuid")
	}
	if len(env.Header.Action) != 1 || strings.TrimSpace(env.Header.Action[0]) != ActionQuery {
		return messageID, q, senderFault("wsa:ActionNotSupported", "wsa:Action must be %s", ActionQuery)
	}
	if env.Body == nil || len(env.Body.Queries) != 1 || len(env.Body.Other) != 0 {
		return messageID, q, senderFault("", "the SOAP Body must hold exactly one XACMLAuthzDecisionQuery")
	}
	query := env.Body.Queries[0]
	if len(query.Requests) != 1 {
		return messageID, q, senderFault("", "XACMLAuthzDecisionQuery must hold exactly one XACML 3.0 Request")
	}
	q, ind := questionFrom(query.Requests[0])
	if ind != nil {
		return messageID, Question{}, ind
	}
	return messageID, q, nil
}

// questionFrom checks the attributes of an XACML Request against attrSpecs.
func questionFrom(req wireXACMLRequest) (Question, *indeterminate) {
	var q Question
	if strings.TrimSpace(req.CombinedDecision) == "true" {
		return q, &indeterminate{statusSyntaxError, "CombinedDecision is not supported"}
	}
	type seen struct {
		category string
		count    int
		value    string
		err      string
	}
	found := make(map[string]*seen, len(attrSpecs))
	specs := make(map[string]attrSpec, len(attrSpecs))
	for _, a := range attrSpecs {
		specs[a.id] = a
	}
	for _, attrs := range req.Attributes {
		for _, at := range attrs.Attribute {
			spec, known := specs[at.ID]
			if !known {
				continue // other attributes (e.g. subject:mandated) do not change the decision
			}
			s := found[at.ID]
			if s == nil {
				s = &seen{category: attrs.Category}
				found[at.ID] = s
			}
			s.count++
			if attrs.Category != spec.category {
				s.err = "is in the wrong category"
				continue
			}
			if len(at.Values) != 1 {
				s.err = "must have exactly one AttributeValue"
				continue
			}
			v := at.Values[0]
			if v.DataType != spec.dataType || len(v.Other) != 0 || strings.TrimSpace(v.Text) != "" {
				s.err = "must have DataType " + spec.dataType
				continue
			}
			switch spec.dataType {
			case dataTypeII:
				if len(v.II) != 1 || len(v.CV) != 0 {
					s.err = "must hold one hl7:InstanceIdentifier"
				} else if v.II[0].Root != spec.oid {
					s.err = "must have root " + spec.oid
				} else {
					s.value = v.II[0].Extension
				}
			case dataTypeCV:
				if len(v.CV) != 1 || len(v.II) != 0 {
					s.err = "must hold one hl7:CodedValue"
				} else if v.CV[0].CodeSystem != spec.oid {
					s.err = "must have codeSystem " + spec.oid
				} else {
					s.value = v.CV[0].Code
				}
			}
			if s.err == "" && !validCode(s.value) {
				s.err = "has a missing or malformed value"
			}
		}
	}
	for _, spec := range attrSpecs {
		s := found[spec.id]
		switch {
		case s == nil:
			return q, &indeterminate{statusMissingAttribute, "missing attribute " + spec.id}
		case s.count != 1:
			return q, &indeterminate{statusSyntaxError, "attribute " + spec.id + " occurs more than once"}
		case s.err != "":
			return q, &indeterminate{statusSyntaxError, "attribute " + spec.id + " " + s.err}
		}
		if spec.get == nil {
			if s.value != EventCodeTreatmentData {
				return q, &indeterminate{statusProcessingError, "only event code " + EventCodeTreatmentData + " (treatment data) is supported"}
			}
			continue
		}
		*spec.get(&q) = s.value
	}
	if q.Purpose != PurposeTreatment {
		return q, &indeterminate{statusProcessingError, "only purpose of use " + PurposeTreatment + " is supported"}
	}
	if _, err := q.Normalize(); err != nil {
		return q, &indeterminate{statusSyntaxError, publicReason(err)}
	}
	return q, nil
}

// buildResponse renders the SOAP answer: a SAML Response with an assertion
// holding the XACMLAuthzDecisionStatement around the XACML Response.
func buildResponse(relatesTo, issuer string, d Decision, status, message string, now time.Time) []byte {
	instant := now.UTC().Format(time.RFC3339)
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<soap:Envelope xmlns:soap="` + nsSOAP + `" xmlns:wsa="` + nsWSA + `">`)
	b.WriteString(`<soap:Header><wsa:Action>` + ActionResponse + `</wsa:Action>`)
	b.WriteString(`<wsa:MessageID>urn:uuid:` + uuid.NewString() + `</wsa:MessageID>`)
	if relatesTo != "" {
		b.WriteString(`<wsa:RelatesTo>` + esc(relatesTo) + `</wsa:RelatesTo>`)
	}
	b.WriteString(`<wsa:To>` + wsaAnonymous + `</wsa:To></soap:Header><soap:Body>`)
	b.WriteString(`<samlp:Response xmlns:samlp="` + nsSAMLP + `" xmlns:saml="` + nsSAML + `" ID="_` + uuid.NewString() +
		`" Version="2.0" IssueInstant="` + instant + `"`)
	if relatesTo != "" {
		b.WriteString(` InResponseTo="` + esc(relatesTo) + `"`)
	}
	b.WriteString(`><saml:Issuer>` + esc(issuer) + `</saml:Issuer>`)
	b.WriteString(`<samlp:Status><samlp:StatusCode Value="` + samlSuccess + `"/></samlp:Status>`)
	b.WriteString(`<saml:Assertion ID="_` + uuid.NewString() + `" Version="2.0" IssueInstant="` + instant + `">`)
	b.WriteString(`<saml:Issuer>` + esc(issuer) + `</saml:Issuer>`)
	b.WriteString(`<xacml-saml:XACMLAuthzDecisionStatement xmlns:xacml-saml="` + nsXACMLSA + `">`)
	b.WriteString(`<Response xmlns="` + nsXACML + `"><Result><Decision>` + string(d) + `</Decision>`)
	b.WriteString(`<Status><StatusCode Value="` + status + `"/>`)
	if message != "" {
		b.WriteString(`<StatusMessage>` + esc(message) + `</StatusMessage>`)
	}
	b.WriteString(`</Status></Result></Response></xacml-saml:XACMLAuthzDecisionStatement></saml:Assertion>`)
	b.WriteString(`</samlp:Response></soap:Body></soap:Envelope>`)
	return b.Bytes()
}

// buildFault renders a SOAP 1.2 Fault.
func buildFault(relatesTo string, f *soapFault) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<soap:Envelope xmlns:soap="` + nsSOAP + `" xmlns:wsa="` + nsWSA + `">`)
	b.WriteString(`<soap:Header><wsa:Action>` + wsaFaultAction + `</wsa:Action>`)
	b.WriteString(`<wsa:MessageID>urn:uuid:` + uuid.NewString() + `</wsa:MessageID>`)
	if relatesTo != "" {
		b.WriteString(`<wsa:RelatesTo>` + esc(relatesTo) + `</wsa:RelatesTo>`)
	}
	b.WriteString(`</soap:Header><soap:Body><soap:Fault><soap:Code><soap:Value>soap:` + f.code + `</soap:Value>`)
	if f.subcode != "" {
		b.WriteString(`<soap:Subcode><soap:Value>` + f.subcode + `</soap:Value></soap:Subcode>`)
	}
	b.WriteString(`</soap:Code><soap:Reason><soap:Text xml:lang="en">` + esc(f.reason) + `</soap:Text></soap:Reason>`)
	b.WriteString(`</soap:Fault></soap:Body></soap:Envelope>`)
	return b.Bytes()
}

type wireResult struct {
	Decision []string `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 Decision"`
	Status   []struct {
		StatusCode struct {
			Value string `xml:"Value,attr"`
		} `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 StatusCode"`
		Message string `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 StatusMessage"`
	} `xml:"urn:oasis:names:tc:xacml:3.0:core:schema:wd-17 Status"`
}

type wireFault struct {
	Code struct {
		Value string `xml:"http://www.w3.org/2003/05/soap-envelope Value"`
	} `xml:"http://www.w3.org/2003/05/soap-envelope Code"`
	Reason struct {
		Text []string `xml:"http://www.w3.org/2003/05/soap-envelope Text"`
	} `xml:"http://www.w3.org/2003/05/soap-envelope Reason"`
}

// answer is a parsed closed-question answer.
type answer struct {
	decision  Decision
	status    string
	message   string
	relatesTo string
}

// parseResponse reads the answer to a closed question: a SOAP 1.2 envelope
// with exactly one XACML Response/Result/Decision anywhere in its Body
// (bare, or inside a SAML Response/Assertion/XACMLAuthzDecisionStatement).
// A Fault, a SAML status other than Success, or anything malformed is an
// error.
func parseResponse(body []byte) (answer, error) {
	var a answer
	if err := checkSafeXML(body); err != nil {
		return a, err
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	var stack []xml.Name
	var results []wireResult
	inBody := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a, fmt.Errorf("malformed answer: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && t.Name != (xml.Name{Space: nsSOAP, Local: "Envelope"}) {
				return a, fmt.Errorf("answer is not a SOAP 1.2 envelope but {%s}%s", t.Name.Space, t.Name.Local)
			}
			parent := xml.Name{}
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			switch {
			case len(stack) == 1 && t.Name == xml.Name{Space: nsSOAP, Local: "Body"}:
				inBody = true
			case len(stack) == 2 && parent.Space == nsSOAP && parent.Local == "Header" && t.Name == xml.Name{Space: nsWSA, Local: "RelatesTo"}:
				var v string
				if err := d.DecodeElement(&v, &t); err != nil {
					return a, fmt.Errorf("malformed wsa:RelatesTo: %w", err)
				}
				a.relatesTo = strings.TrimSpace(v)
				continue
			case inBody && t.Name == xml.Name{Space: nsSOAP, Local: "Fault"}:
				var f wireFault
				if err := d.DecodeElement(&f, &t); err != nil {
					return a, fmt.Errorf("malformed SOAP fault: %w", err)
				}
				return a, fmt.Errorf("SOAP fault %s: %s", f.Code.Value, strings.Join(f.Reason.Text, "; "))
			case inBody && t.Name == xml.Name{Space: nsSAMLP, Local: "StatusCode"} && parent == xml.Name{Space: nsSAMLP, Local: "Status"} &&
				len(stack) >= 2 && stack[len(stack)-2] == xml.Name{Space: nsSAMLP, Local: "Response"}:
				for _, at := range t.Attr {
					if at.Name.Local == "Value" && at.Value != samlSuccess {
						return a, fmt.Errorf("SAML status %s", at.Value)
					}
				}
			case inBody && t.Name == xml.Name{Space: nsXACML, Local: "Result"} && parent == xml.Name{Space: nsXACML, Local: "Response"}:
				var r wireResult
				if err := d.DecodeElement(&r, &t); err != nil {
					return a, fmt.Errorf("malformed XACML Result: %w", err)
				}
				results = append(results, r)
				continue
			}
			stack = append(stack, t.Name)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	if len(results) != 1 {
		return a, fmt.Errorf("answer holds %d XACML Results, want 1", len(results))
	}
	r := results[0]
	if len(r.Decision) != 1 {
		return a, errors.New("XACML Result must hold exactly one Decision")
	}
	dec, ok := parseDecision(strings.TrimSpace(r.Decision[0]))
	if !ok {
		return a, fmt.Errorf("unknown XACML Decision %q", r.Decision[0])
	}
	a.decision = dec
	if len(r.Status) > 0 {
		a.status = r.Status[0].StatusCode.Value
		a.message = r.Status[0].Message
	}
	// A Permit must come with status ok: any other status means the service
	// did not really decide, and nothing but a clean Permit grants access.
	if dec == DecisionPermit && a.status != "" && a.status != statusOK {
		return a, fmt.Errorf("Permit with XACML status %s", a.status)
	}
	return a, nil
}
